//! A/B updates end to end in a lab of the example site's load-balancer pair:
//! tampered bundles are refused without touching the inactive slot, both boxes
//! upgrade under client load without a failed request, a bundle whose role never
//! becomes ready rolls back by itself and is reported as failed, power cuts while a
//! slot is written and during the switch leave a box that boots a good image, and
//! what is on the data partition survives all of it; and, on a site that allows
//! downgrades, a withdrawn version makes a box go back to the previous one.
//! Needs root (network namespaces, taps) and QEMU; fails loudly without them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use qemu_tests::labcli::*;
use qemu_tests::{cairn_bin, partition_range, scratch, workspace};

const V1: &str = "0.1.0";
const V2: &str = "0.2.0";
const V3: &str = "0.3.0";
const V4: &str = "0.4.0";
const V5: &str = "0.5.0";

/// Console of a VM: everything it printed in every boot of this lab.
fn console(state: &Path, node: &str) -> String {
    let p = state.join("vms").join(node).join("console.log");
    String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned()
}

/// Waits until `needle` appears in `node`'s console after byte `from`;
/// returns the offset just past it.
fn wait_console(state: &Path, node: &str, from: usize, needle: &str, timeout: Duration) -> usize {
    let t = Instant::now();
    loop {
        let c = console(state, node);
        if let Some(at) = c.get(from..).and_then(|tail| tail.find(needle)) {
            eprintln!(
                "{node}: {needle:?} after {:.1} s",
                t.elapsed().as_secs_f64()
            );
            return from + at + needle.len();
        }
        assert!(
            t.elapsed() < timeout,
            "{node}: no {needle:?} on the console within {timeout:?}; console since then:\n{}",
            tail_lines(c.get(from..).unwrap_or(""), 60)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Builds the example site's `lb` image at `version` (optionally from another
/// roles directory) and returns the build directory.
fn build(dir: &Path, version: &str, roles: Option<&Path>) -> PathBuf {
    build_from(dir, version, roles, None)
}

/// [`build`] from another site file (a changed copy of the example's; its relative
/// `signing_key` is replaced by `--update-key` with the example's key).
fn build_from(dir: &Path, version: &str, roles: Option<&Path>, site: Option<&Path>) -> PathBuf {
    let out = dir.join(format!("lb-{version}"));
    let example = workspace().join("examples/site.toml");
    let site = site.unwrap_or(&example);
    let mut args = vec![
        "build".to_string(),
        "--quiet".into(),
        "--profile".into(),
        "qemu-x86_64".into(),
        "--role".into(),
        "lb".into(),
        "--site".into(),
        site.to_string_lossy().into_owned(),
        "--out".into(),
        out.to_string_lossy().into_owned(),
        "--version".into(),
        version.into(),
    ];
    if let Some(r) = roles {
        args.push("--roles-dir".into());
        args.push(r.to_string_lossy().into_owned());
    }
    if site != example {
        args.push("--update-key".into());
        args.push(
            workspace()
                .join("examples/update-key.demo.pem")
                .to_string_lossy()
                .into_owned(),
        );
    }
    let t = Instant::now();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&cairn(&refs));
    eprintln!("built lb {version} in {:.1} s", t.elapsed().as_secs_f64());
    out
}

fn publish(repo: &Path, build: &Path) {
    ok(&cairn(&[
        "publish",
        "--repo",
        &repo.to_string_lossy(),
        "--update-key",
        &workspace()
            .join("examples/update-key.demo.pem")
            .to_string_lossy(),
        &build.to_string_lossy(),
    ]));
}

/// Points the lab's served repository (`<state>/repo`) at `repo`.
fn serve(state: &Path, repo: &Path) {
    std::fs::create_dir_all(repo).unwrap();
    std::fs::create_dir_all(state).unwrap();
    let link = state.join("repo");
    match std::fs::symlink_metadata(&link) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&link).unwrap(),
        Ok(_) => std::fs::remove_file(&link).unwrap(),
        Err(_) => {}
    }
    std::os::unix::fs::symlink(repo, &link).unwrap();
}

/// Slows the served repository down to `kib` KiB/s (0: full speed).
fn throttle(repo: &Path, kib: u32) {
    std::fs::write(repo.join(".rate-kib"), format!("{kib}\n")).unwrap();
}

/// A copy of `repo` under `name` in which `f` may break things.
fn copy_repo(repo: &Path, dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    let _ = std::fs::remove_dir_all(&to);
    let o = Command::new("cp")
        .arg("-a")
        .arg(repo)
        .arg(&to)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cp -a: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    to
}

fn flip_bit(file: &Path, at: u64) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[at as usize] ^= 0x10;
    std::fs::write(file, bytes).unwrap();
}

/// Bytes of `range` the VM has written into its overlay (qemu-img map of the
/// overlay's own clusters, read while the VM runs).
fn written_in(overlay: &Path, range: (u64, u64)) -> u64 {
    let o = Command::new("qemu-img")
        .args(["map", "-U", "--output=json"])
        .arg(overlay)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "qemu-img map: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let map: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let (start, len) = range;
    map.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["depth"] == 0 && e["data"] == true)
        .map(|e| {
            let s = e["start"].as_u64().unwrap();
            let l = e["length"].as_u64().unwrap();
            let lo = s.max(start);
            let hi = (s + l).min(start + len);
            hi.saturating_sub(lo)
        })
        .sum()
}

/// `cairnctl upgrade --wait --json` on the box: the agent's final report.
fn upgrade(state: &str, node: &str, extra: &[&str]) -> Output {
    let mut args = vec!["upgrade", "--wait"];
    args.extend_from_slice(extra);
    ctl(state, node, &args)
}

/// `cairnctl upgrade --status --json` on the box: cairn-updated's status.
fn update_status(state: &str, node: &str) -> serde_json::Value {
    let out = ok(&ctl(state, node, &["upgrade", "--status", "--json"]));
    serde_json::from_str(&out).unwrap()
}

/// The running version from the box's last CAIRN-READY line.
fn ready_version(state: &Path, node: &str) -> String {
    let c = console(state, node);
    let line = c
        .lines()
        .rev()
        .find(|l| l.starts_with("CAIRN-READY "))
        .unwrap_or_else(|| panic!("{node} never became ready"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("version="))
        .unwrap()
        .to_string()
}

/// The data partition of `node`'s overlay, read through qemu-img and debugfs:
/// the text of `path` on it (relative to the partition's root).
fn data_file(state: &Path, node: &str, data: (u64, u64), path: &str) -> String {
    use std::io::{Read, Seek, SeekFrom, Write};
    let overlay = state.join("vms").join(node).join("disk.qcow2");
    let whole = state.join(format!("{node}-disk.raw"));
    let part = state.join(format!("{node}-data.raw"));
    let o = Command::new("qemu-img")
        .args(["convert", "-U", "-f", "qcow2", "-O", "raw"])
        .arg(&overlay)
        .arg(&whole)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "qemu-img convert: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut from = std::fs::File::open(&whole).unwrap();
    from.seek(SeekFrom::Start(data.0)).unwrap();
    let mut bytes = vec![0u8; data.1 as usize];
    from.read_exact(&mut bytes).unwrap();
    std::fs::File::create(&part)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    let _ = std::fs::remove_file(&whole);
    // The guest has the filesystem mounted: what it synced may still sit in the journal
    // only (the checkpoint comes later), and debugfs does not replay it. Replay it on the
    // copy first (exit 1 and 2: errors corrected, e.g. the orphan list of a live mount).
    let o = Command::new("e2fsck")
        .arg("-fy")
        .arg(&part)
        .output()
        .unwrap_or_else(|e| panic!("cannot run e2fsck (e2fsprogs): {e}"));
    assert!(
        matches!(o.status.code(), Some(0..=2)),
        "e2fsck of {node}'s data partition copy ({}): {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let o = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(&part)
        .output()
        .unwrap_or_else(|e| panic!("cannot run debugfs (e2fsprogs): {e}"));
    let _ = std::fs::remove_file(&part);
    assert!(
        o.status.success(),
        "debugfs: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn lb_pair_upgrades_refuses_tampering_rolls_back_and_survives_power_cuts() {
    require_root();
    let dir = scratch().join("update");
    std::fs::create_dir_all(&dir).unwrap();
    let site = workspace().join("examples/site.toml");
    let state_path = dir.join("state");
    let state = state_path.to_string_lossy().into_owned();
    ok(&cairn(&["lab", "down", "--state", &state]));
    let _down = Down(state_path.clone());
    // An earlier run's repositories would be served at boot, and cairn-updated checks once
    // when it starts: begin with an empty one.
    let repos = dir.join("repos");
    let _ = std::fs::remove_dir_all(&repos);
    std::fs::create_dir_all(&repos).unwrap();
    serve(&state_path, &repos.join("empty"));

    // v1 comes up in the lab (the lab builds it); v2, v3 (broken) and v4 are built now.
    lab_up(&site, &state, "lb1,lb2,web1,web2");
    let v1 = state_path.join("images").join("lb");
    assert!(
        v1.join("bundle/manifest.json").is_file(),
        "the lab's build writes a bundle"
    );
    let v2 = build(&dir, V2, None);
    let broken_roles = dir.join("roles-broken");
    let _ = std::fs::remove_dir_all(&broken_roles);
    let o = Command::new("cp")
        .arg("-a")
        .arg(workspace().join("image/roles"))
        .arg(&broken_roles)
        .output()
        .unwrap();
    assert!(o.status.success());
    let lb_services = broken_roles.join("lb/services.toml");
    let text = std::fs::read_to_string(&lb_services).unwrap();
    let broken = text.replace("/etc/haproxy/haproxy.cfg", "/etc/haproxy/missing.cfg");
    assert_ne!(text, broken, "the lb role runs /etc/haproxy/haproxy.cfg");
    std::fs::write(&lb_services, broken).unwrap();
    let v3 = build(&dir, V3, Some(&broken_roles));
    let v4 = build(&dir, V4, None);
    // v5 comes from a copy of the site that allows downgrades ([update] is its last section).
    let downgrade_site = dir.join("site-allow-downgrade.toml");
    let text = std::fs::read_to_string(&site).unwrap();
    assert!(
        text.rfind("[update]") > text.rfind("[["),
        "[update] is the example site's last section"
    );
    std::fs::write(
        &downgrade_site,
        format!("{}\nallow_downgrade = true\n", text.trim_end()),
    )
    .unwrap();
    let v5 = build_from(&dir, V5, None, Some(&downgrade_site));
    let bundle_size: u64 = [
        "root.img",
        "cairn.efi",
        "manifest.json",
        "manifest.json.sig",
    ]
    .iter()
    .map(|f| std::fs::metadata(v2.join("bundle").join(f)).unwrap().len())
    .sum();
    eprintln!(
        "bundle size: {:.1} MiB (root.img + UKI + signed manifest)",
        bundle_size as f64 / 1048576.0
    );

    let good = repos.join("good");
    publish(&good, &v1);
    publish(&good, &v2);

    let disk = v1.join("disk.img");
    let root_b = partition_range(&disk, 3);
    let data = partition_range(&disk, 4);
    let lb2_overlay = state_path.join("vms/lb2/disk.qcow2");
    assert_eq!(written_in(&lb2_overlay, root_b), 0, "slot b starts empty");

    // 1. Tampering, on lb2 at v1 (slot a booted, b inactive).
    // A repository whose index and manifest are signed by another key.
    let wrong_key = copy_repo(&good, &repos, "wrong-key");
    let other = dir.join("other-key");
    let _ = std::fs::remove_dir_all(&other);
    ok(&cairn(&["keygen", "--out", &other.to_string_lossy()]));
    let key = cairn_update::keys::SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(other.join("update-key.pem")).unwrap(),
    )
    .unwrap();
    for f in [
        wrong_key.join("index.json"),
        wrong_key.join(format!("bundles/lb/qemu-x86_64/{V2}/manifest.json")),
    ] {
        let sig = key.sign(&std::fs::read(&f).unwrap());
        std::fs::write(f.with_extension("json.sig"), sig.to_json()).unwrap();
    }
    serve(&state_path, &wrong_key);
    let out = upgrade(&state, "lb2", &[]);
    assert!(!out.status.success(), "another key's index is refused");
    assert!(text_of(&out).contains("index"), "{}", text_of(&out));
    assert_eq!(
        written_in(&lb2_overlay, root_b),
        0,
        "nothing written to slot b"
    );

    // A flipped bit in the signed manifest.
    let bad_manifest = copy_repo(&good, &repos, "bad-manifest");
    let m = bad_manifest.join(format!("bundles/lb/qemu-x86_64/{V2}/manifest.json"));
    flip_bit(&m, 40);
    serve(&state_path, &bad_manifest);
    let out = upgrade(&state, "lb2", &[]);
    assert!(!out.status.success(), "a tampered manifest is refused");
    assert!(text_of(&out).contains("manifest"), "{}", text_of(&out));
    assert_eq!(
        written_in(&lb2_overlay, root_b),
        0,
        "nothing written to slot b"
    );

    // A flipped bit in the root image: refused at that chunk, before it is written.
    let bad_root = copy_repo(&good, &repos, "bad-root");
    let r = bad_root.join(format!("bundles/lb/qemu-x86_64/{V2}/root.img"));
    flip_bit(&r, 3 * 1048576 + 4097);
    serve(&state_path, &bad_root);
    let out = upgrade(&state, "lb2", &[]);
    assert!(!out.status.success(), "a tampered root image is refused");
    assert!(text_of(&out).contains("chunk 3"), "{}", text_of(&out));
    let written = written_in(&lb2_overlay, root_b);
    assert!(
        written <= 3 * 1048576 + 65536,
        "only the 3 verified chunks before the bad one may be written: {written} bytes"
    );
    assert!(
        !console(&state_path, "lb2").contains("update: installed"),
        "no UKI installed"
    );
    assert_eq!(ready_version(&state_path, "lb2"), V1);

    // 2. Rolling upgrade of both boxes to v2 under client load: the pair never drops the VIP.
    serve(&state_path, &good);
    let client_ns = format!(
        "{}-client",
        serde_json::from_str::<serde_json::Value>(
            &std::fs::read_to_string(state_path.join("lab.json")).unwrap()
        )
        .unwrap()["lab"]
            .as_str()
            .unwrap()
    );
    let probe_bin = cairn_bin().with_file_name("cairn-lab-probe");
    // A request fails when it gets no answer within 1 s: a VIP nobody holds costs a dropped
    // SYN and TCP's 1 s retry, while a busy TCG guest may answer a little late.
    let probe = Probe::start_with_timeout(&probe_bin, &client_ns, &dir.join("rolling.jsonl"), 1000);
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    let lb1_from = console(&state_path, "lb1").len();
    let lb2_from = console(&state_path, "lb2").len();
    let s1 = state.clone();
    let s2 = state.clone();
    let a = std::thread::spawn(move || upgrade(&s1, "lb1", &[]));
    let b = std::thread::spawn(move || upgrade(&s2, "lb2", &[]));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    eprintln!("upgrade lb1: {}\nupgrade lb2: {}", text_of(&a), text_of(&b));
    let applied = t.elapsed();
    for (node, from) in [("lb2", lb2_from), ("lb1", lb1_from)] {
        let at = wait_console(
            &state_path,
            node,
            from,
            &format!("bless: blessed {V2}"),
            Duration::from_secs(600),
        );
        let _ = at;
    }
    // Until lb1 has the VIP again.
    let t2 = Instant::now();
    while vip_holder(&state).as_deref() != Some("lb1") {
        assert!(
            t2.elapsed() < Duration::from_secs(120),
            "lb1 never took the VIP back"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(2));
    let attempts = probe.stop();
    let failed = attempts.iter().filter(|a| !a.ok).count();
    eprintln!(
        "rolling upgrade {V1} -> {V2} of lb1 and lb2: apply {:.1} s, both blessed after {:.1} s; {failed} of {} requests failed",
        applied.as_secs_f64(),
        t.elapsed().as_secs_f64(),
        attempts.len()
    );
    assert!(attempts.len() > 300, "the probe ran: {}", attempts.len());
    assert_eq!(failed, 0, "no request fails during the rolling upgrade");
    let (rolling_blessed, rolling_requests, rolling_failed) = (t.elapsed(), attempts.len(), failed);
    for node in ["lb1", "lb2"] {
        assert_eq!(ready_version(&state_path, node), V2);
        let st = update_status(&state, node);
        eprintln!("{node}: {st}");
        assert_eq!(st["running_version"], V2, "{st}");
        assert_eq!(st["booted_slot"], "b", "{st}");
        // Slot b booted, blessed and default; slot a still holds v1 with its entry.
        let b = &st["slots"][1];
        assert_eq!(b["version"], V2, "{st}");
        assert_eq!(b["booted"], true, "{st}");
        assert_eq!(b["default"], true, "{st}");
        assert_eq!(b["blessed"], true, "{st}");
        let a = &st["slots"][0];
        assert_eq!(a["version"], V1, "{st}");
        assert_eq!(a["entry"], format!("cairn-{V1}.efi"), "{st}");
    }

    // 3. v3 can never become ready: lb2 tries it, falls back to v2 by itself and reports it.
    let with_v3 = copy_repo(&good, &repos, "with-v3");
    publish(&with_v3, &v3);
    serve(&state_path, &with_v3);
    let from = console(&state_path, "lb2").len();
    let t = Instant::now();
    let out = upgrade(&state, "lb2", &["--now"]);
    let apply_v3 = t.elapsed();
    eprintln!(
        "upgrade lb2 to {V3}: {} (download, write, verify, install: {:.1} s)",
        text_of(&out),
        apply_v3.as_secs_f64()
    );
    wait_console(
        &state_path,
        "lb2",
        from,
        &format!("update: {V3} failed"),
        Duration::from_secs(900),
    );
    let rollback = t.elapsed() - apply_v3;
    eprintln!(
        "automatic rollback {V3} -> {V2}: {:.1} s from the reboot into {V3} to {V2} serving and {V3} reported failed",
        rollback.as_secs_f64()
    );
    assert_eq!(ready_version(&state_path, "lb2"), V2);
    let st = update_status(&state, "lb2");
    assert!(
        st["failed"].to_string().contains(V3),
        "v3 is reported as failed: {st}"
    );
    // It does not retry v3.
    let out = upgrade(&state, "lb2", &[]);
    assert!(
        text_of(&out).contains("up to date"),
        "v3 is not retried: {}",
        text_of(&out)
    );

    // 4. Power cuts while v4 is written and during the switch.
    let with_v4 = copy_repo(&with_v3, &repos, "with-v4");
    publish(&with_v4, &v4);
    throttle(&with_v4, 2048);
    serve(&state_path, &with_v4);
    // Cut while the slot is written: boots v2 again.
    let from = console(&state_path, "lb2").len();
    let s = state.clone();
    let bg = std::thread::spawn(move || upgrade(&s, "lb2", &["--now"]));
    wait_console(
        &state_path,
        "lb2",
        from,
        &format!("update: writing {V4} to slot a: 4/"),
        Duration::from_secs(120),
    );
    ok(&cairn(&["lab", "kill", "lb2", "--state", &state]));
    let _ = bg.join();
    let from = console(&state_path, "lb2").len();
    ok(&cairn(&["lab", "start", "lb2", "--state", &state]));
    wait_console(
        &state_path,
        "lb2",
        from,
        "CAIRN-READY ",
        Duration::from_secs(180),
    );
    assert_eq!(
        ready_version(&state_path, "lb2"),
        V2,
        "a cut mid-write boots the old version"
    );
    // Cut right after the new UKI is installed (the switch): boots v4 with a try used.
    throttle(&with_v4, 0);
    let from = console(&state_path, "lb2").len();
    let s = state.clone();
    let bg = std::thread::spawn(move || upgrade(&s, "lb2", &["--now"]));
    wait_console(
        &state_path,
        "lb2",
        from,
        &format!("update: installed {V4}"),
        Duration::from_secs(300),
    );
    ok(&cairn(&["lab", "kill", "lb2", "--state", &state]));
    let _ = bg.join();
    let from = console(&state_path, "lb2").len();
    ok(&cairn(&["lab", "start", "lb2", "--state", &state]));
    let ready = wait_console(
        &state_path,
        "lb2",
        from,
        "CAIRN-READY ",
        Duration::from_secs(180),
    );
    let booted = ready_version(&state_path, "lb2");
    assert!(booted == V2 || booted == V4, "boots a good image: {booted}");
    // Cut during v4's first boot, before it is blessed: systemd-boot counts the try.
    if booted == V4 {
        ok(&cairn(&["lab", "kill", "lb2", "--state", &state]));
        let from = console(&state_path, "lb2").len();
        ok(&cairn(&["lab", "start", "lb2", "--state", &state]));
        wait_console(
            &state_path,
            "lb2",
            from,
            "CAIRN-READY ",
            Duration::from_secs(180),
        );
        assert_eq!(ready_version(&state_path, "lb2"), V4, "a try is left");
    } else {
        let _ = ready;
        let out = upgrade(&state, "lb2", &["--now"]);
        eprintln!("upgrade after the cuts: {}", text_of(&out));
    }
    let from = console(&state_path, "lb2").len().saturating_sub(20000);
    wait_console(
        &state_path,
        "lb2",
        from,
        &format!("bless: blessed {V4}"),
        Duration::from_secs(400),
    );
    assert_eq!(
        ready_version(&state_path, "lb2"),
        V4,
        "a later update completes"
    );

    // 5. A repository rolled back to an older index, and an older version on offer: both
    // refused, nothing written to the inactive slot.
    let root_a = partition_range(&disk, 2);
    let before = written_in(&lb2_overlay, root_a);
    let rolled_back = repos.join("rolled-back");
    publish(&rolled_back, &v1);
    serve(&state_path, &rolled_back);
    let out = upgrade(&state, "lb2", &[]);
    assert!(
        !out.status.success(),
        "an older index is refused: {}",
        text_of(&out)
    );
    assert!(text_of(&out).contains("serial"), "{}", text_of(&out));
    // A newer index (serial 5) whose newest bundle for lb2 that did not fail is v2.
    let old = copy_repo(&with_v3, &repos, "old");
    throttle(&old, 0);
    publish(&old, &v2);
    publish(&old, &v2);
    serve(&state_path, &old);
    let out = upgrade(&state, "lb2", &[]);
    assert!(
        !out.status.success(),
        "an older bundle is refused: {}",
        text_of(&out)
    );
    assert!(text_of(&out).contains("older"), "{}", text_of(&out));
    assert_eq!(written_in(&lb2_overlay, root_a), before, "slot a untouched");

    // 6. A downgrade, on a site that allows it: lb2 goes to v5 (built with
    // `allow_downgrade = true`), v5 is withdrawn, and lb2 goes back to v4 by itself.
    let with_v5 = copy_repo(&with_v4, &repos, "with-v5");
    throttle(&with_v5, 0);
    publish(&with_v5, &v5);
    serve(&state_path, &with_v5);
    let from = console(&state_path, "lb2").len();
    let out = upgrade(&state, "lb2", &["--now"]);
    eprintln!("upgrade lb2 to {V5}: {}", text_of(&out));
    wait_console(
        &state_path,
        "lb2",
        from,
        &format!("bless: blessed {V5}"),
        Duration::from_secs(600),
    );
    assert_eq!(ready_version(&state_path, "lb2"), V5);
    let o = cairn(&[
        "publish",
        "--repo",
        &with_v5.to_string_lossy(),
        "--withdraw",
        V5,
        "--role",
        "lb",
        "--profile",
        "qemu-x86_64",
        "--update-key",
        &workspace()
            .join("examples/update-key.demo.pem")
            .to_string_lossy(),
    ]);
    assert!(
        text_of(&o).contains(&format!("withdrew lb/qemu-x86_64 {V5}")),
        "{}",
        text_of(&o)
    );
    let from = console(&state_path, "lb2").len();
    let t = Instant::now();
    let out = upgrade(&state, "lb2", &["--now"]);
    eprintln!("downgrade lb2 {V5} -> {V4}: {}", text_of(&out));
    let at = wait_console(
        &state_path,
        "lb2",
        from,
        &format!("update: downgrading {V5} -> {V4} (allow_downgrade)"),
        Duration::from_secs(60),
    );
    let at = wait_console(
        &state_path,
        "lb2",
        at,
        &format!("update: demoted {V5} to EFI/Linux/cairn-{V5}+0.efi"),
        Duration::from_secs(300),
    );
    let at = wait_console(
        &state_path,
        "lb2",
        at,
        &format!("bless: blessed {V4}"),
        Duration::from_secs(600),
    );
    wait_console(
        &state_path,
        "lb2",
        at,
        &format!("update: downgraded {V5} -> {V4}"),
        Duration::from_secs(120),
    );
    let downgrade_s = t.elapsed();
    eprintln!(
        "downgrade {V5} -> {V4}: {:.1} s from the request to {V4} blessed and reported",
        downgrade_s.as_secs_f64()
    );
    assert_eq!(ready_version(&state_path, "lb2"), V4);
    // The check that reported it may still be running: wait until its result is in.
    let t2 = Instant::now();
    let st = loop {
        let st = update_status(&state, "lb2");
        if st["last_result"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("downgraded {V5} -> {V4}"))
        {
            break st;
        }
        assert!(
            t2.elapsed() < Duration::from_secs(60),
            "the status never reports the downgrade: {st}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("lb2 after the downgrade: {st}");
    assert_eq!(st["running_version"], V4, "{st}");
    // v4 went into slot a again (v5 ran from b): booted, blessed, default; b keeps v5
    // under its demoted entry.
    assert_eq!(st["booted_slot"], "a", "{st}");
    let a = &st["slots"][0];
    assert_eq!(a["version"], V4, "{st}");
    assert_eq!(a["booted"], true, "{st}");
    assert_eq!(a["default"], true, "{st}");
    assert_eq!(a["blessed"], true, "{st}");
    let b = &st["slots"][1];
    assert_eq!(b["version"], V5, "{st}");
    assert_eq!(b["entry"], format!("cairn-{V5}+0.efi"), "{st}");
    assert_eq!(b["default"], false, "{st}");
    let failed = st["failed"].to_string();
    assert!(
        !failed.contains(V5) && !failed.contains(V4),
        "no version of the downgrade is failed: {st}"
    );
    let out = upgrade(&state, "lb2", &[]);
    assert!(
        text_of(&out).contains("up to date"),
        "nothing more to do: {}",
        text_of(&out)
    );

    // 7. The data partition kept everything: one boot history across all versions.
    let history = data_file(&state_path, "lb2", data, "/lib/cairn/boot-history");
    eprintln!("lb2 boot history:\n{history}");
    for v in [V1, V2, V3, V4, V5] {
        assert!(
            history.contains(&format!("version={v} ")),
            "{v} booted on the same data partition: {history}"
        );
    }
    let state_json = data_file(&state_path, "lb2", data, "/lib/cairn/update/state.json");
    assert!(
        state_json.contains(V3),
        "the failed version is on the data partition: {state_json}"
    );
    assert!(
        state_json.contains(&format!("downgraded {V5} -> {V4}")),
        "the downgrade's outcome is on the data partition: {state_json}"
    );

    // Figures for `cargo xtask bench --only upgrade`.
    if let Some(path) = std::env::var_os("CAIRN_UPDATE_FIGURES") {
        let figures = serde_json::json!({
            "bundle_mib": bundle_size as f64 / 1048576.0,
            "apply_s": apply_v3.as_secs_f64(),
            "rolling_apply_s": applied.as_secs_f64(),
            "rolling_blessed_s": rolling_blessed.as_secs_f64(),
            "rolling_requests": rolling_requests,
            "rolling_failed": rolling_failed,
            "rollback_s": rollback.as_secs_f64(),
            "downgrade_s": downgrade_s.as_secs_f64(),
            "tries": 3,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&figures).unwrap()).unwrap();
    }

    ok(&cairn(&["lab", "down", "--state", &state]));
}

fn text_of(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
