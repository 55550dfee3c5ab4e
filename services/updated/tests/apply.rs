//! The whole apply path of cairn-updated, run as a normal process against files: a fake
//! sysfs + /dev whose "partitions" are regular files, a temp ESP, a tiny HTTP server thread
//! serving a repository made with cairn_update types (signed with a key generated here), and
//! a fake cairn-init that records the reboot. `Upgrade` needs uid 0, so these run as root
//! and fail loudly otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_control::{
    BackendError, InitBackend, LogLine, PowerAction, ServiceStatus, UpdateClient, UpdateStatus,
};
use cairn_update::index::{Index, IndexEntry};
use cairn_update::keys::SigningKey;
use cairn_update::manifest::{self, Manifest, RootImage, UkiFile, Verity};
use cairn_updated::slots::write_fake_block;

const MIB: usize = 1 << 20;
const SLOT_SECTORS: u64 = 16384; // 8 MiB
const ROOT_LEN: usize = 3 * MIB + MIB / 2;
const RUNNING: &str = "0.1.0";

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "cairn-updated's apply tests must run as root: Update1.Upgrade is for uid 0 only"
    );
}

/// Deterministic bytes, different per version.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn sha256(b: &[u8]) -> String {
    let (_, hash, _) = manifest::hash_chunks(b, 1 << 20).unwrap();
    hash
}

/// One bundle: its files as served, and what the manifest says.
struct Bundle {
    version: String,
    root: Vec<u8>,
    uki: Vec<u8>,
}

impl Bundle {
    fn new(version: &str, seed: u8) -> Self {
        Bundle {
            version: version.into(),
            root: bytes(ROOT_LEN, seed),
            uki: bytes(100_000, seed.wrapping_add(100)),
        }
    }
}

/// A static HTTP server over a map of paths to bodies, on a thread.
struct Server {
    url: String,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Server {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (files.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let (stream, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let body = f.lock().unwrap().get(&path).cloned();
                let mut out = &stream;
                let _ = match body {
                    Some(b) => out
                        .write_all(
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", b.len())
                                .as_bytes(),
                        )
                        .and_then(|()| out.write_all(&b)),
                    None => out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
                };
            }
        });
        Server {
            url: format!("http://127.0.0.1:{port}/repo/"),
            files,
            stop,
            port,
        }
    }

    fn put(&self, path: &str, body: Vec<u8>) {
        self.files
            .lock()
            .unwrap()
            .insert(format!("/repo/{path}"), body);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.port;
    }
}

/// Publishes `bundles` (each (bundle, root bytes as served)) signed with `key`, with `serial`.
fn publish(server: &Server, key: &SigningKey, serial: u64, bundles: &[(&Bundle, Vec<u8>)]) {
    let mut entries = Vec::new();
    for (b, served_root) in bundles {
        let (size, sha, chunks) = manifest::hash_chunks(&b.root[..], manifest::CHUNK_SIZE).unwrap();
        let m = Manifest {
            format: manifest::FORMAT,
            cluster: "demo".into(),
            version: b.version.clone(),
            role: "base".into(),
            profile: "test".into(),
            source_date_epoch: 1_700_000_000,
            root: RootImage {
                file: "root.img".into(),
                size,
                sha256: sha,
                chunk_size: manifest::CHUNK_SIZE,
                chunks,
                verity: Verity {
                    root_hash: "ab".repeat(32),
                    salt: "cd".repeat(32),
                    data_blocks: 800,
                    hash_offset: 800 * 4096,
                },
            },
            uki: UkiFile {
                file: "cairn.efi".into(),
                size: b.uki.len() as u64,
                sha256: sha256(&b.uki),
            },
        };
        let json = m.to_json();
        let dir = format!("bundles/base/test/{}/", b.version);
        server.put(&format!("{dir}manifest.json"), json.clone().into_bytes());
        server.put(
            &format!("{dir}manifest.json.sig"),
            key.sign(json.as_bytes()).to_json().into_bytes(),
        );
        server.put(&format!("{dir}root.img"), served_root.clone());
        server.put(&format!("{dir}cairn.efi"), b.uki.clone());
        entries.push(IndexEntry {
            role: "base".into(),
            profile: "test".into(),
            version: b.version.clone(),
            path: dir,
            manifest_sha256: sha256(json.as_bytes()),
        });
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let index = Index {
        format: cairn_update::index::FORMAT,
        cluster: "demo".into(),
        serial,
        published: now,
        expires: now + 86400,
        bundles: entries,
    };
    let json = index.to_json();
    server.put("index.json", json.clone().into_bytes());
    server.put(
        "index.json.sig",
        key.sign(json.as_bytes()).to_json().into_bytes(),
    );
}

/// A cairn-init stand-in that records power requests.
#[derive(Default)]
struct FakeInit {
    power: Mutex<Vec<PowerAction>>,
}

impl InitBackend for FakeInit {
    fn list_services(&self) -> Vec<ServiceStatus> {
        Vec::new()
    }
    fn start(&self, name: &str) -> Result<(), BackendError> {
        Err(BackendError::UnknownService(name.into()))
    }
    fn stop(&self, name: &str) -> Result<(), BackendError> {
        Err(BackendError::UnknownService(name.into()))
    }
    fn restart(&self, name: &str) -> Result<(), BackendError> {
        Err(BackendError::UnknownService(name.into()))
    }
    fn logs(&self, name: &str, _: u64, _: u32) -> Result<Vec<LogLine>, BackendError> {
        Err(BackendError::UnknownService(name.into()))
    }
    fn power(&self, action: PowerAction) -> Result<(), BackendError> {
        self.power.lock().unwrap().push(action);
        Ok(())
    }
}

/// The box: its files, the running agent and the fake cairn-init.
struct Box_ {
    dir: tempfile::TempDir,
    child: Child,
    init: Arc<FakeInit>,
    _init_server: cairn_control::ControlServer,
    stdout: Arc<Mutex<String>>,
}

impl Box_ {
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn slot_b(&self) -> Vec<u8> {
        std::fs::read(self.path("dev/vdb3")).unwrap()
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path("esp/EFI/Linux"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn client(&self) -> UpdateClient {
        let sock = self.path("run/updated.sock");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match UpdateClient::connect_with_timeout(&sock, Duration::from_secs(5)) {
                Ok(c) => return c,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "agent never served: {e}\n{}",
                        self.out()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// Asks for a check and waits (bounded) until it is done; returns the status.
    fn upgrade(&self) -> UpdateStatus {
        let client = self.client();
        let n = client.upgrade(false).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = client.status().unwrap();
            if s.done >= n && s.state != "checking" {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "check {n} did not finish: {s:?}\n{}",
                self.out()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn out(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn wait_reboot(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.init.power.lock().unwrap().is_empty() {
            assert!(
                Instant::now() < deadline,
                "no reboot requested\n{}",
                self.out()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(*self.init.power.lock().unwrap(), vec![PowerAction::Reboot]);
    }
}

impl Drop for Box_ {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets up a box running 0.1.0 from slot a, whose site trusts `trusted`, with `entries` on
/// its ESP and `state` as state.json (if any); starts cairn-updated.
fn boot(server: &Server, trusted: &SigningKey, entries: &[&str], state: Option<&str>) -> Box_ {
    boot_with(server, trusted, entries, state, "")
}

/// [`boot`] with `update_extra` appended to the site's `[update]` section.
fn boot_with(
    server: &Server,
    trusted: &SigningKey,
    entries: &[&str],
    state: Option<&str>,
    update_extra: &str,
) -> Box_ {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s);
    write_fake_block(&p("sys"), "vdb", None, 3 * SLOT_SECTORS).unwrap();
    write_fake_block(&p("sys"), "vdb1", Some("esp"), 2048).unwrap();
    write_fake_block(&p("sys"), "vdb2", Some("root-a"), SLOT_SECTORS).unwrap();
    write_fake_block(&p("sys"), "vdb3", Some("root-b"), SLOT_SECTORS).unwrap();
    std::fs::create_dir_all(p("dev")).unwrap();
    std::fs::write(p("dev/vdb2"), bytes(ROOT_LEN, 1)).unwrap();
    std::fs::write(p("dev/vdb3"), vec![0u8; SLOT_SECTORS as usize * 512]).unwrap();
    std::fs::create_dir_all(p("esp/EFI/Linux")).unwrap();
    for e in entries {
        std::fs::write(p("esp/EFI/Linux").join(e), e.as_bytes()).unwrap();
    }
    std::fs::create_dir_all(p("run")).unwrap();
    std::fs::write(p("run/boot-slot"), "a\n").unwrap();
    std::fs::write(
        p("os-release"),
        format!("NAME=cairn\nIMAGE_ID=cairn-base\nIMAGE_VERSION={RUNNING}\nCAIRN_PROFILE=test\n"),
    )
    .unwrap();
    if let Some(s) = state {
        std::fs::create_dir_all(p("state")).unwrap();
        std::fs::write(p("state/state.json"), s).unwrap();
    }
    std::fs::write(
        p("site.toml"),
        format!(
            "[cluster]\nname = \"demo\"\n\n[image]\nversion = \"{RUNNING}\"\nsource_date_epoch = 1700000000\n\n\
             [[node]]\nname = \"box1\"\nrole = \"base\"\nmac = \"52:54:00:00:00:21\"\n\n\
             [update]\nurl = \"{}\"\npublic_key = \"{}\"\ninterval_s = 0\n{update_extra}\n",
            server.url,
            trusted.public_key()
        ),
    )
    .unwrap();
    let init = Arc::new(FakeInit::default());
    let init_server = cairn_control::serve_init(&p("run/control.sock"), init.clone()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn-updated"))
        .args(["--site", p("site.toml").to_str().unwrap()])
        .args(["--control", p("run/updated.sock").to_str().unwrap()])
        .args(["--state-dir", p("state").to_str().unwrap()])
        .args(["--esp", p("esp").to_str().unwrap()])
        .args(["--boot-slot-file", p("run/boot-slot").to_str().unwrap()])
        .args(["--sys", p("sys").to_str().unwrap()])
        .args(["--dev", p("dev").to_str().unwrap()])
        .args(["--os-release", p("os-release").to_str().unwrap()])
        .args(["--init-control", p("run/control.sock").to_str().unwrap()])
        .args(["--vip-control", p("run/vipd.sock").to_str().unwrap()])
        .env_remove("CAIRN_NODE")
        .env_remove("CAIRN_CONTROL")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = Arc::new(Mutex::new(String::new()));
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let out = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                out.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
    }
    Box_ {
        dir,
        child,
        init,
        _init_server: init_server,
        stdout,
    }
}

const STALE: [&str; 3] = ["cairn-0.1.0.efi", "cairn-0.0.9+1-2.efi", ".cairn-0.0.5.tmp"];

#[test]
fn good_update_is_written_verified_installed_and_rebooted_into() {
    let key = SigningKey::generate().unwrap();
    let server = Server::start();
    let b = Bundle::new("0.2.0", 2);
    publish(&server, &key, 7, &[(&b, b.root.clone())]);
    let bx = boot(&server, &key, &STALE, None);
    let s = bx.upgrade();
    assert_eq!(
        s.last_result,
        "installed 0.2.0 as cairn-0.2.0+3.efi",
        "{s:?}\n{}",
        bx.out()
    );
    assert_eq!(s.last_error, "");
    bx.wait_reboot();

    let slot = bx.slot_b();
    assert_eq!(&slot[..ROOT_LEN], &b.root[..], "slot b holds root.img");
    assert!(
        slot[ROOT_LEN..].iter().all(|&x| x == 0),
        "nothing beyond it"
    );
    assert_eq!(bx.entries(), ["cairn-0.1.0.efi", "cairn-0.2.0+3.efi"]);
    assert_eq!(
        std::fs::read(bx.path("esp/EFI/Linux/cairn-0.2.0+3.efi")).unwrap(),
        b.uki
    );
    let out = bx.out();
    for line in [
        "update: writing 0.2.0 to slot b: 1/4 MiB",
        "update: writing 0.2.0 to slot b: 4/4 MiB",
        "update: slot b verified",
        "update: installed 0.2.0 as EFI/Linux/cairn-0.2.0+3.efi",
        "update: rebooting into 0.2.0",
    ] {
        assert!(out.lines().any(|l| l == line), "no line {line:?} in\n{out}");
    }
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bx.path("state/state.json")).unwrap()).unwrap();
    assert_eq!(state["last_serial"], 7);
    assert_eq!(state["slot_b"], "0.2.0");

    let s = bx.client().status().unwrap();
    assert_eq!(s.state, "rebooting");
    assert_eq!(s.booted_slot, "a");
    assert_eq!(s.running_version, RUNNING);
    assert_eq!(s.slots.len(), 2);
    assert!(s.slots[0].booted && s.slots[0].blessed && !s.slots[0].default);
    assert_eq!(s.slots[1].version, "0.2.0");
    assert_eq!(s.slots[1].entry, "cairn-0.2.0+3.efi");
    assert!(s.slots[1].default && !s.slots[1].blessed && s.slots[1].tries_left == 3);
}

#[test]
fn a_flipped_bit_is_refused_at_its_chunk_and_no_uki_is_installed() {
    let key = SigningKey::generate().unwrap();
    let server = Server::start();
    let b = Bundle::new("0.2.0", 2);
    let mut tampered = b.root.clone();
    tampered[2 * MIB + 12345] ^= 0x10;
    publish(&server, &key, 7, &[(&b, tampered)]);
    let bx = boot(&server, &key, &STALE, None);
    let s = bx.upgrade();
    assert!(
        s.last_error
            .starts_with("refused root.img of 0.2.0: chunk 2: sha256"),
        "{s:?}\n{}",
        bx.out()
    );
    let out = bx.out();
    assert!(
        out.lines()
            .any(|l| l.starts_with("update: refused root.img of 0.2.0: chunk 2:")),
        "{out}"
    );
    let slot = bx.slot_b();
    assert_eq!(
        &slot[..2 * MIB],
        &b.root[..2 * MIB],
        "verified chunks were written"
    );
    assert!(
        slot[2 * MIB..].iter().all(|&x| x == 0),
        "nothing of the bad chunk or after it reached the slot"
    );
    assert_eq!(bx.entries(), ["cairn-0.1.0.efi"], "no UKI, no temp file");
    assert!(bx.init.power.lock().unwrap().is_empty(), "no reboot");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bx.path("state/state.json")).unwrap()).unwrap();
    assert_eq!(state["slot_b"], serde_json::Value::Null);
}

/// Refusals of the index write nothing: neither the slot nor the ESP changes.
fn assert_untouched(bx: &Box_) {
    assert!(bx.slot_b().iter().all(|&x| x == 0), "slot b untouched");
    let mut stale: Vec<&str> = STALE.to_vec();
    stale.sort();
    assert_eq!(bx.entries(), stale, "ESP untouched");
    assert!(bx.init.power.lock().unwrap().is_empty(), "no reboot");
}

#[test]
fn an_index_signed_with_another_key_is_refused() {
    let key = SigningKey::generate().unwrap();
    let other = SigningKey::generate().unwrap();
    let server = Server::start();
    let b = Bundle::new("0.2.0", 2);
    publish(&server, &other, 7, &[(&b, b.root.clone())]);
    let bx = boot(&server, &key, &STALE, None);
    let s = bx.upgrade();
    assert!(s.last_error.starts_with("refused index: "), "{s:?}");
    assert!(
        s.last_error.contains(&other.public_key().keyid()),
        "the error names the foreign key id: {}",
        s.last_error
    );
    assert!(
        bx.out()
            .lines()
            .any(|l| l.starts_with("update: refused index: "))
    );
    assert_untouched(&bx);
}

#[test]
fn an_older_version_is_refused() {
    let key = SigningKey::generate().unwrap();
    let server = Server::start();
    let b = Bundle::new("0.0.8", 2);
    publish(&server, &key, 7, &[(&b, b.root.clone())]);
    let bx = boot(&server, &key, &STALE, None);
    let s = bx.upgrade();
    assert_eq!(
        s.last_error,
        "refused index: the newest base/test on offer is 0.0.8, older than the running 0.1.0 \
         (the site's [update] allow_downgrade is false)"
    );
    assert_untouched(&bx);
}

#[test]
fn an_exhausted_version_is_recorded_as_failed_and_skipped() {
    let key = SigningKey::generate().unwrap();
    let server = Server::start();
    let bad = Bundle::new("0.2.0", 2);
    let good = Bundle::new("0.1.5", 3);
    publish(
        &server,
        &key,
        8,
        &[(&bad, bad.root.clone()), (&good, good.root.clone())],
    );
    // systemd-boot used up 0.2.0's tries and booted 0.1.0 again.
    let bx = boot(
        &server,
        &key,
        &["cairn-0.1.0.efi", "cairn-0.2.0+0-3.efi"],
        Some("{\"last_serial\": 7, \"slot_b\": \"0.2.0\"}"),
    );
    let reason = "did not become healthy in 3 boots; running 0.1.0 again";
    let client = bx.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.status().unwrap().failed.is_empty() {
        assert!(
            Instant::now() < deadline,
            "rollback not detected\n{}",
            bx.out()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        client.status().unwrap().failed,
        [format!("0.2.0: {reason}")]
    );
    let s = bx.upgrade();
    assert_eq!(
        s.last_result,
        "installed 0.1.5 as cairn-0.1.5+3.efi",
        "{s:?}\n{}",
        bx.out()
    );
    bx.wait_reboot();
    assert_eq!(&bx.slot_b()[..ROOT_LEN], &good.root[..]);
    assert_eq!(bx.entries(), ["cairn-0.1.0.efi", "cairn-0.1.5+3.efi"]);
    assert!(
        bx.out()
            .lines()
            .any(|l| l == format!("update: 0.2.0 failed: {reason}")),
        "{}",
        bx.out()
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bx.path("state/state.json")).unwrap()).unwrap();
    assert_eq!(state["failed"][0]["version"], "0.2.0");
    assert_eq!(state["failed"][0]["reason"], reason);
    assert_eq!(state["last_serial"], 8);
}

#[test]
fn an_unblessed_running_version_defers_the_update() {
    let key = SigningKey::generate().unwrap();
    let server = Server::start();
    let b = Bundle::new("0.2.0", 2);
    publish(&server, &key, 7, &[(&b, b.root.clone())]);
    let bx = boot(&server, &key, &["cairn-0.1.0+2-1.efi"], None);
    let s = bx.upgrade();
    assert_eq!(
        s.last_result,
        "deferred: the running version 0.1.0 is not blessed yet (cairn-0.1.0+2-1.efi)"
    );
    assert!(bx.slot_b().iter().all(|&x| x == 0));
    assert_eq!(bx.entries(), ["cairn-0.1.0+2-1.efi"]);
}

impl Box_ {
    /// Waits (bounded) until the agent printed `line`.
    fn wait_line(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.out().lines().any(|l| l == line) {
            assert!(
                Instant::now() < deadline,
                "no line {line:?} in\n{}",
                self.out()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn state_json(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.path("state/state.json")).unwrap()).unwrap()
    }
}

const ALLOW: &str = "allow_downgrade = true";

#[test]
fn allow_downgrade_installs_the_older_version_and_demotes_the_running_one() {
    let key = SigningKey::generate().unwrap();
    let server = Server::start();
    // 0.1.0 was withdrawn: the newest on offer is 0.0.9.
    let old = Bundle::new("0.0.9", 9);
    let older = Bundle::new("0.0.8", 8);
    publish(
        &server,
        &key,
        9,
        &[(&older, older.root.clone()), (&old, old.root.clone())],
    );
    let bx = boot_with(
        &server,
        &key,
        &["cairn-0.1.0.efi", "cairn-0.0.7.efi"],
        None,
        ALLOW,
    );
    let s = bx.upgrade();
    assert_eq!(
        s.last_result,
        "downgrading 0.1.0 -> 0.0.9: installed 0.0.9 as cairn-0.0.9+3.efi",
        "{s:?}\n{}",
        bx.out()
    );
    assert_eq!(s.last_error, "");
    bx.wait_reboot();
    assert_eq!(
        &bx.slot_b()[..ROOT_LEN],
        &old.root[..],
        "slot b holds 0.0.9"
    );
    // The older version has its tries; the running one is demoted (bad, never tried).
    assert_eq!(bx.entries(), ["cairn-0.0.9+3.efi", "cairn-0.1.0+0.efi"]);
    let on_esp: Vec<cairn_update::entries::Entry> = bx
        .entries()
        .iter()
        .map(|n| cairn_update::entries::Entry::parse(n).unwrap())
        .collect();
    assert_eq!(
        cairn_update::entries::default_entry(&on_esp)
            .unwrap()
            .file_name(),
        "cairn-0.0.9+3.efi",
        "systemd-boot boots the older version next"
    );
    let out = bx.out();
    let lines = [
        "update: downgrading 0.1.0 -> 0.0.9 (allow_downgrade)",
        "update: slot b verified",
        "update: installed 0.0.9 as EFI/Linux/cairn-0.0.9+3.efi",
        "update: demoted 0.1.0 to EFI/Linux/cairn-0.1.0+0.efi",
        "update: rebooting into 0.0.9",
    ];
    let at: Vec<usize> = lines
        .iter()
        .map(|l| {
            out.lines()
                .position(|x| x == *l)
                .unwrap_or_else(|| panic!("no line {l:?} in\n{out}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "in this order: {out}");
    let state = bx.state_json();
    assert_eq!(state["downgrade"]["from"], "0.1.0");
    assert_eq!(state["downgrade"]["to"], "0.0.9");
    assert_eq!(state["slot_b"], "0.0.9");
    assert_eq!(state["last_serial"], 9);
    let s = bx.client().status().unwrap();
    let (a, b) = (&s.slots[0], &s.slots[1]);
    assert!(
        a.booted && !a.default && !a.blessed && a.tries_left == 0,
        "{s:?}"
    );
    assert_eq!(a.entry, "cairn-0.1.0+0.efi");
    assert_eq!(b.version, "0.0.9");
    assert!(b.default && b.tries_left == 3, "{s:?}");
    assert!(s.failed.is_empty(), "nothing failed: {s:?}");
}

#[test]
fn a_downgrade_under_way_waits_and_a_blessed_target_is_a_success() {
    let key = SigningKey::generate().unwrap();
    let server = Server::start();
    let running = Bundle::new("0.1.0", 1);
    publish(&server, &key, 10, &[(&running, running.root.clone())]);
    let record =
        r#"{"last_serial": 10, "slot_b": "0.2.0", "downgrade": {"from": "0.2.0", "to": "0.1.0"}}"#;

    // First boot of 0.1.0, not blessed yet: the demoted 0.2.0 is no failed version.
    let bx = boot_with(
        &server,
        &key,
        &["cairn-0.1.0+2-1.efi", "cairn-0.2.0+0.efi"],
        Some(record),
        ALLOW,
    );
    let s = bx.upgrade();
    assert_eq!(
        s.last_result,
        "deferred: the running version 0.1.0 is not blessed yet (cairn-0.1.0+2-1.efi)",
        "{}",
        bx.out()
    );
    assert!(s.failed.is_empty(), "{s:?}");
    assert_eq!(bx.entries(), ["cairn-0.1.0+2-1.efi", "cairn-0.2.0+0.efi"]);
    assert_eq!(
        bx.state_json()["downgrade"]["to"],
        "0.1.0",
        "still under way"
    );
    drop(bx);

    // Blessed: done, reported once, the demoted entry stays as the slot's entry.
    let bx = boot_with(
        &server,
        &key,
        &["cairn-0.1.0.efi", "cairn-0.2.0+0.efi"],
        Some(record),
        ALLOW,
    );
    bx.wait_line("update: downgraded 0.2.0 -> 0.1.0");
    let s = bx.upgrade();
    assert_eq!(
        s.last_result,
        "up to date; downgraded 0.2.0 -> 0.1.0",
        "{}",
        bx.out()
    );
    assert!(s.failed.is_empty(), "{s:?}");
    assert_eq!(bx.entries(), ["cairn-0.1.0.efi", "cairn-0.2.0+0.efi"]);
    let state = bx.state_json();
    assert_eq!(state.get("downgrade"), None, "{state}");
    assert_eq!(state["last_downgrade"], "downgraded 0.2.0 -> 0.1.0");
    assert_eq!(state["failed"], serde_json::json!([]));
    let b = &s.slots[1];
    assert_eq!(
        (b.version.as_str(), b.entry.as_str()),
        ("0.2.0", "cairn-0.2.0+0.efi")
    );
    assert!(!b.default && !b.blessed && !b.booted, "{s:?}");
    assert!(s.slots[0].default && s.slots[0].blessed && s.slots[0].booted);
}

#[test]
fn a_failed_downgrade_records_the_target_as_failed_and_never_retries_it() {
    let key = SigningKey::generate().unwrap();
    let server = Server::start();
    let old = Bundle::new("0.0.9", 9);
    publish(&server, &key, 10, &[(&old, old.root.clone())]);
    // 0.0.9 used up its tries; systemd-boot booted the newest bad entry, the demoted 0.1.0.
    let bx = boot_with(
        &server,
        &key,
        &["cairn-0.0.9+0-3.efi", "cairn-0.1.0+0-1.efi"],
        Some(
            r#"{"last_serial": 10, "slot_b": "0.0.9", "downgrade": {"from": "0.1.0", "to": "0.0.9"}}"#,
        ),
        ALLOW,
    );
    let reason =
        "did not become healthy in 3 boots after a downgrade from 0.1.0; running 0.1.0 again";
    bx.wait_line(&format!(
        "update: downgrade 0.1.0 -> 0.0.9 failed: {reason}"
    ));
    let s = bx.upgrade();
    assert_eq!(s.failed, [format!("0.0.9: {reason}")]);
    // The fallback boot is counted: nothing happens until cairn-init blesses it.
    assert_eq!(
        s.last_result,
        "deferred: the running version 0.1.0 is not blessed yet (cairn-0.1.0+0-1.efi); \
         downgrade 0.1.0 -> 0.0.9 failed: did not become healthy in 3 boots",
        "{}",
        bx.out()
    );
    assert_eq!(
        bx.entries(),
        ["cairn-0.1.0+0-1.efi"],
        "the failed entry is gone"
    );
    let state = bx.state_json();
    assert_eq!(state.get("downgrade"), None, "{state}");
    assert_eq!(state["slot_b"], serde_json::Value::Null);
    assert_eq!(state["failed"][0]["version"], "0.0.9");
    // cairn-init blesses the fallback boot; 0.0.9 is not tried again.
    std::fs::rename(
        bx.path("esp/EFI/Linux/cairn-0.1.0+0-1.efi"),
        bx.path("esp/EFI/Linux/cairn-0.1.0.efi"),
    )
    .unwrap();
    let s = bx.upgrade();
    assert!(
        s.last_result.starts_with("up to date; "),
        "{s:?}\n{}",
        bx.out()
    );
    assert_eq!(bx.entries(), ["cairn-0.1.0.efi"]);
    assert!(bx.slot_b().iter().all(|&x| x == 0), "nothing written");
    assert!(bx.init.power.lock().unwrap().is_empty(), "no reboot");
}

#[test]
fn an_interrupted_or_unstarted_downgrade_leaves_the_running_version_default() {
    let key = SigningKey::generate().unwrap();
    let server = Server::start();
    let running = Bundle::new("0.1.0", 1);
    publish(&server, &key, 10, &[(&running, running.root.clone())]);
    let record = r#"{"last_serial": 10, "downgrade": {"from": "0.1.0", "to": "0.0.9"}}"#;

    // The agent restarted after the demotion, before the reboot: the demotion is undone.
    let bx = boot_with(
        &server,
        &key,
        &["cairn-0.0.9+3.efi", "cairn-0.1.0+0.efi"],
        Some(record),
        ALLOW,
    );
    bx.wait_line(
        "update: downgrade 0.1.0 -> 0.0.9 interrupted before the reboot; 0.1.0 is blessed again and stays the default",
    );
    assert_eq!(bx.entries(), ["cairn-0.0.9+3.efi", "cairn-0.1.0.efi"]);
    let s = bx.upgrade();
    assert!(s.failed.is_empty(), "{s:?}");
    assert_eq!(
        s.last_result,
        "up to date; downgrade 0.1.0 -> 0.0.9 interrupted before the reboot"
    );
    assert_eq!(bx.state_json().get("downgrade"), None);
    drop(bx);

    // It stopped between the record and the demotion: nothing happened, nothing failed.
    let bx = boot_with(
        &server,
        &key,
        &["cairn-0.0.9+3.efi", "cairn-0.1.0.efi"],
        Some(record),
        ALLOW,
    );
    bx.wait_line("update: downgrade 0.1.0 -> 0.0.9 did not happen; running 0.1.0");
    let s = bx.upgrade();
    assert!(s.failed.is_empty(), "{s:?}");
    assert_eq!(bx.entries(), ["cairn-0.0.9+3.efi", "cairn-0.1.0.efi"]);
    assert_eq!(bx.state_json().get("downgrade"), None);
}

#[test]
fn a_demoted_entry_is_never_reported_as_failed() {
    let key = SigningKey::generate().unwrap();
    let server = Server::start();
    let running = Bundle::new("0.1.0", 1);
    publish(&server, &key, 3, &[(&running, running.root.clone())]);
    // After a successful downgrade whose record is gone (state.json lost): the demoted
    // 0.2.0 is newer than the running version and bad, but it never had a try.
    let bx = boot(
        &server,
        &key,
        &["cairn-0.1.0.efi", "cairn-0.2.0+0.efi"],
        None,
    );
    let s = bx.upgrade();
    assert_eq!(s.last_result, "up to date", "{}", bx.out());
    assert!(s.failed.is_empty(), "{s:?}");
    assert_eq!(bx.entries(), ["cairn-0.1.0.efi", "cairn-0.2.0+0.efi"]);
}
