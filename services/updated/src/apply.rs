//! One update check, start to end: fetch and verify the index, pick a bundle, fetch and
//! verify its manifest, make room on the ESP, stream the root image into the inactive slot
//! (each chunk verified before it is written), read the slot back, install the UKI under a
//! boot counter. Plus rollback detection, run before every check.
//!
//! Nothing the running system boots from is touched: the booted entry and slot are never
//! written, and every step is synced before the next.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use cairn_update::chunks::ChunkVerifier;
use cairn_update::entries::{self, Entry};
use cairn_update::index::{self, Choice, Running};
use cairn_update::keys::PublicKey;
use cairn_update::manifest::{self, Manifest};
use cairn_update::version;
use sha2::{Digest, Sha256};

use crate::console;
use crate::downgrade::{self, Verdict};
use crate::esp::Esp;
use crate::http;
use crate::osrelease::Image;
use crate::slots::{Partitions, Slot};
use crate::state::{self, State};

/// Largest index.json accepted.
const MAX_INDEX: u64 = 4 << 20;
/// Largest manifest.json accepted.
const MAX_MANIFEST: u64 = 4 << 20;
/// Largest signature file accepted.
const MAX_SIG: u64 = 16 << 10;
/// Read-back buffer size.
const READ_BACK: usize = 1 << 20;

/// Everything a check needs to know about the box.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Repository base URL (ends in `/`).
    pub url: String,
    /// The site's update key.
    pub key: PublicKey,
    /// The site's cluster name.
    pub cluster: String,
    /// The running image.
    pub image: Image,
    /// The running image's SOURCE_DATE_EPOCH.
    pub source_date_epoch: u64,
    /// Boot tries a new version gets.
    pub tries: u32,
    /// The site's `[update] allow_downgrade`.
    pub allow_downgrade: bool,
    /// The ESP.
    pub esp: Esp,
    /// Where state.json lives.
    pub state_dir: PathBuf,
    /// The root partitions.
    pub partitions: Partitions,
    /// The slot the box booted from.
    pub booted: Slot,
}

impl Setup {
    /// The slot an update goes to.
    pub fn inactive(&self) -> Slot {
        self.booted.other()
    }
}

/// How a check ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing newer is on offer.
    UpToDate,
    /// Not now: the reason says why (e.g. the running version is not blessed yet).
    Deferred(String),
    /// A version was written and its entry installed.
    Installed {
        /// The version.
        version: String,
        /// The entry's file name.
        entry: String,
    },
    /// An older version was written and its entry installed, and the running entry demoted.
    Downgrading {
        /// The running version.
        from: String,
        /// The older version installed.
        to: String,
        /// Its entry's file name.
        entry: String,
    },
}

/// How a check ended badly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// Something on offer was refused (bad signature, wrong key, older version, a
    /// tampered chunk, ...).
    #[error("refused {what}: {reason}")]
    Refused {
        /// What: `index`, `manifest of 0.2.0`, `root.img of 0.2.0`, ...
        what: String,
        /// Why.
        reason: String,
    },
    /// Installing a version failed for another reason (I/O, read-back mismatch).
    #[error("{version} failed: {reason}")]
    Failed {
        /// The version.
        version: String,
        /// Why.
        reason: String,
    },
    /// The check could not run (repository unreachable, state not writable, ...).
    #[error("check failed: {0}")]
    Check(String),
}

impl CheckError {
    /// The console line for this error (`update: refused ...`, `update: <v> failed: ...`).
    pub fn console_line(&self) -> String {
        format!("update: {self}")
    }
}

fn refused(what: impl Into<String>, reason: impl ToString) -> CheckError {
    CheckError::Refused {
        what: what.into(),
        reason: reason.to_string(),
    }
}

fn failed(version: &str, reason: impl ToString) -> CheckError {
    CheckError::Failed {
        version: version.to_owned(),
        reason: reason.to_string(),
    }
}

fn check_error(reason: impl ToString) -> CheckError {
    CheckError::Check(reason.to_string())
}

/// Seconds since the epoch by the box's clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Finds exhausted entries (0 tries left) of versions newer than the running one: systemd-boot
/// gave up on them and booted us again. Records each as failed, deletes its entry and logs
/// `update: <v> failed: ...`. Returns the versions recorded. A downgrade under way is judged
/// first ([`resolve_downgrade`]); demoted entries are a downgrade's fallback, never failures.
pub fn detect_rollback(setup: &Setup, state: &mut State) -> Result<Vec<String>, CheckError> {
    let mut recorded = resolve_downgrade(setup, state)?;
    let running = &setup.image.version;
    let bad: Vec<_> = setup
        .esp
        .entries()
        .map_err(check_error)?
        .into_iter()
        .filter(|f| {
            f.entry.is_bad()
                && !downgrade::is_fallback(&f.entry, state.downgrade.as_ref())
                && version::compare(&f.entry.version, running) == std::cmp::Ordering::Greater
        })
        .collect();
    for f in &bad {
        let boots = f.entry.tries.map(|t| t.done).unwrap_or(0);
        let reason = format!("did not become healthy in {boots} boots; running {running} again");
        console::line(&format!("update: {} failed: {reason}", f.entry.version));
        state.record_failed(&f.entry.version, &reason);
        if state.slot(setup.inactive()) == Some(f.entry.version.as_str()) {
            state.set_slot(setup.inactive(), None);
        }
        recorded.push(f.entry.version.clone());
    }
    if !bad.is_empty() {
        state::save(&setup.state_dir, state).map_err(check_error)?;
        let names: Vec<String> = bad.iter().map(|f| f.name.clone()).collect();
        setup.esp.delete(&names).map_err(check_error)?;
        setup.esp.sync().map_err(check_error)?;
    }
    Ok(recorded)
}

/// Judges the downgrade recorded in `state`, if any ([`downgrade::judge`]) and acts on it:
/// a success or a failure is logged and remembered as the last downgrade's outcome (a failed
/// target is recorded as failed and its entry deleted), an interrupted one has its demotion
/// undone, a stale record is dropped; one under way is kept. Returns the versions recorded
/// as failed.
pub fn resolve_downgrade(setup: &Setup, state: &mut State) -> Result<Vec<String>, CheckError> {
    let Some(d) = state.downgrade.clone() else {
        return Ok(Vec::new());
    };
    let running = setup.image.version.as_str();
    let files = setup.esp.entries().map_err(check_error)?;
    let all: Vec<Entry> = files.iter().map(|f| f.entry.clone()).collect();
    let (from, to) = (d.from.as_str(), d.to.as_str());
    let mut recorded = Vec::new();
    let outcome = match downgrade::judge(&d, running, &all) {
        Verdict::UnderWay => return Ok(recorded),
        Verdict::Succeeded => {
            let line = format!("downgraded {from} -> {to}");
            console::line(&format!("update: {line}"));
            line
        }
        Verdict::Failed { boots } => {
            let why = match boots {
                Some(n) => format!("did not become healthy in {n} boots"),
                None => "its boot entry is gone".to_owned(),
            };
            let reason = format!("{why} after a downgrade from {from}; running {from} again");
            console::line(&format!(
                "update: downgrade {from} -> {to} failed: {reason}"
            ));
            state.record_failed(to, &reason);
            if state.slot(setup.inactive()) == Some(to) {
                state.set_slot(setup.inactive(), None);
            }
            recorded.push(to.to_owned());
            format!("downgrade {from} -> {to} failed: {why}")
        }
        Verdict::Interrupted { demoted } => {
            // Rename first: a record dropped while the entry is still demoted would let the
            // next boot downgrade unwatched.
            setup
                .esp
                .rename(&demoted.file_name(), &demoted.blessed().file_name())
                .map_err(check_error)?;
            let line = format!("downgrade {from} -> {to} interrupted before the reboot");
            console::line(&format!(
                "update: {line}; {from} is blessed again and stays the default"
            ));
            line
        }
        Verdict::NotHappened => {
            let line = format!("downgrade {from} -> {to} did not happen");
            console::line(&format!("update: {line}; running {from}"));
            line
        }
        Verdict::Unrelated => {
            let line = format!("downgrade {from} -> {to} abandoned");
            console::line(&format!("update: {line}: running {running}"));
            line
        }
    };
    state.downgrade = None;
    state.last_downgrade = Some(outcome);
    state::save(&setup.state_dir, state).map_err(check_error)?;
    // The failed target's entries go only once the failure is on record.
    let stale: Vec<String> = files
        .iter()
        .filter(|f| recorded.contains(&f.entry.version))
        .map(|f| f.name.clone())
        .collect();
    if !stale.is_empty() {
        setup.esp.delete(&stale).map_err(check_error)?;
        setup.esp.sync().map_err(check_error)?;
    }
    Ok(recorded)
}

/// Fetches `url` and `url.sig`.
fn fetch_signed(url: &str, max: u64) -> Result<(Vec<u8>, Vec<u8>), CheckError> {
    let bytes = http::get_small(url, max).map_err(check_error)?;
    let sig = http::get_small(&format!("{url}.sig"), MAX_SIG).map_err(check_error)?;
    Ok((bytes, sig))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs one check; `report` receives the agent's state as it changes (`checking`,
/// `writing n/m MiB`, `verifying`, `installing`).
pub fn check(
    setup: &Setup,
    state: &mut State,
    report: &dyn Fn(&str),
) -> Result<Outcome, CheckError> {
    report("checking");
    detect_rollback(setup, state)?;
    let running = setup.image.version.as_str();
    let Some(booted) = setup.esp.booted(running).map_err(check_error)? else {
        return Err(check_error(format!(
            "no boot entry for the running version {running} under {}",
            setup.esp.dir().display()
        )));
    };
    if booted.entry.tries.is_some() {
        return Ok(Outcome::Deferred(format!(
            "the running version {running} is not blessed yet ({})",
            booted.name
        )));
    }

    // The index.
    let index_url = http::join(&setup.url, "index.json");
    let (bytes, sig) = fetch_signed(&index_url, MAX_INDEX)?;
    let index = index::verify(&setup.key, &bytes, &sig).map_err(|e| refused("index", e))?;
    let failed_versions = state.failed_versions();
    let me = Running {
        cluster: &setup.cluster,
        role: &setup.image.role,
        profile: &setup.image.profile,
        version: running,
        source_date_epoch: setup.source_date_epoch,
        last_serial: state.last_serial,
        failed: &failed_versions,
        now: unix_now(),
        allow_downgrade: setup.allow_downgrade,
    };
    let choice = index::choose(&index, &me).map_err(|e| refused("index", e))?;
    if state.last_serial != Some(index.serial) {
        state.last_serial = Some(index.serial.max(state.last_serial.unwrap_or(0)));
        state::save(&setup.state_dir, state).map_err(check_error)?;
    }
    let (entry, downgrade) = match choice {
        Choice::UpToDate => return Ok(Outcome::UpToDate),
        Choice::Install(entry) => (entry, false),
        Choice::Downgrade(entry) => (entry, true),
    };
    let v = entry.version.as_str();
    if downgrade {
        console::line(&format!(
            "update: downgrading {running} -> {v} (allow_downgrade)"
        ));
    }
    let bundle = http::join(&setup.url, &entry.path);

    // The manifest.
    let what = format!("manifest of {v}");
    let (bytes, sig) = fetch_signed(&http::join(&bundle, "manifest.json"), MAX_MANIFEST)?;
    let got = sha256_hex(&bytes);
    if got != entry.manifest_sha256 {
        return Err(refused(
            what,
            format!(
                "sha256 {got} differs from the index's {}",
                entry.manifest_sha256
            ),
        ));
    }
    let m = manifest::verify(&setup.key, &bytes, &sig).map_err(|e| refused(&what, e))?;
    check_manifest(setup, &m, entry).map_err(|reason| refused(&what, reason))?;
    let slot = setup.inactive();
    let part = setup.partitions.slot(slot);
    if m.root.size > part.size {
        return Err(refused(
            &what,
            format!(
                "root image of {} bytes does not fit slot {slot} ({} bytes)",
                m.root.size, part.size
            ),
        ));
    }
    let deletable = setup.esp.deletable(&booted.name).map_err(check_error)?;
    let reclaim: u64 = deletable.iter().map(|(_, size)| size).sum();
    let free = setup.esp.free_bytes().map_err(check_error)?;
    if m.uki.size > free.saturating_add(reclaim) {
        return Err(refused(
            &what,
            format!(
                "UKI of {} bytes does not fit the ESP ({} bytes free after deleting old entries)",
                m.uki.size,
                free.saturating_add(reclaim)
            ),
        ));
    }

    // Make room: every entry but the booted one points at the inactive slot.
    let names: Vec<String> = deletable.into_iter().map(|(n, _)| n).collect();
    setup.esp.delete(&names).map_err(|e| failed(v, e))?;
    setup.esp.sync().map_err(|e| failed(v, e))?;
    state.set_slot(slot, None);
    state.last_downgrade = None;
    state::save(&setup.state_dir, state).map_err(check_error)?;

    write_root(setup, &m, &bundle, slot, report)?;
    state.set_slot(slot, Some(v.to_owned()));
    state::save(&setup.state_dir, state).map_err(check_error)?;

    report("installing");
    let entry_name = install_uki(setup, &m, &bundle)?;
    console::line(&format!(
        "update: installed {v} as {}/{entry_name}",
        entries::DIR
    ));
    if !downgrade {
        return Ok(Outcome::Installed {
            version: v.to_owned(),
            entry: entry_name,
        });
    }
    demote(setup, state, &booted, v)?;
    Ok(Outcome::Downgrading {
        from: running.to_owned(),
        to: v.to_owned(),
        entry: entry_name,
    })
}

/// The last step of a downgrade to `to`, once its entry is installed and synced: records the
/// downgrade, then renames the running (blessed) entry to `cairn-<running>+0.efi`. systemd-boot
/// then boots `to` (the newest good entry) with its tries, and falls back to the demoted
/// entry (the newest bad one) if they run out. At every instant a good entry boots: the
/// running one until the rename, `to`'s after it.
fn demote(
    setup: &Setup,
    state: &mut State,
    booted: &crate::esp::EntryFile,
    to: &str,
) -> Result<(), CheckError> {
    let from = setup.image.version.as_str();
    state.downgrade = Some(state::Downgrade {
        from: from.to_owned(),
        to: to.to_owned(),
    });
    state.last_downgrade = Some(format!("downgrading {from} -> {to}"));
    state::save(&setup.state_dir, state).map_err(check_error)?;
    let demoted = booted.entry.demoted().file_name();
    setup
        .esp
        .rename(&booted.name, &demoted)
        .map_err(|e| failed(to, format!("demoting {}: {e}", booted.name)))?;
    console::line(&format!(
        "update: demoted {from} to {}/{demoted}",
        entries::DIR
    ));
    Ok(())
}

/// The manifest must describe what the index offered, for this box.
fn check_manifest(
    setup: &Setup,
    m: &Manifest,
    entry: &cairn_update::index::IndexEntry,
) -> Result<(), String> {
    let pairs = [
        ("cluster", m.cluster.as_str(), setup.cluster.as_str()),
        ("role", m.role.as_str(), entry.role.as_str()),
        ("profile", m.profile.as_str(), entry.profile.as_str()),
        ("version", m.version.as_str(), entry.version.as_str()),
    ];
    for (field, got, want) in pairs {
        if got != want {
            return Err(format!("{field} is {got:?}, expected {want:?}"));
        }
    }
    Ok(())
}

/// Streams the root image into `slot`, verifying each chunk before it is written, then
/// syncs and reads the slot back.
fn write_root(
    setup: &Setup,
    m: &Manifest,
    bundle: &str,
    slot: Slot,
    report: &dyn Fn(&str),
) -> Result<(), CheckError> {
    let v = m.version.as_str();
    let part = setup.partitions.slot(slot);
    let what = format!("{} of {v}", m.root.file);
    let url = http::join(bundle, &m.root.file);
    let mut body = http::get(&url).map_err(|e| failed(v, e))?;
    if body.len.is_some_and(|l| l != m.root.size) {
        return Err(refused(
            &what,
            format!(
                "server sends {} bytes, the manifest says {}",
                body.len.unwrap_or(0),
                m.root.size
            ),
        ));
    }
    let dev = OpenOptions::new()
        .write(true)
        .open(&part.path)
        .map_err(|e| failed(v, format!("{}: {e}", part.path.display())))?;
    let mut verifier = ChunkVerifier::new(&m.root);
    let count = verifier.chunk_count();
    let mib = m.root.size.div_ceil(1 << 20);
    let mut buf = Vec::new();
    let mut offset = 0u64;
    for i in 0..count {
        let len = verifier.chunk_len(i);
        buf.resize(usize::try_from(len).map_err(|e| failed(v, e))?, 0);
        body.read_exact(&mut buf)
            .map_err(|e| failed(v, format!("{url}: chunk {i}: {e}")))?;
        verifier.verify_next(&buf).map_err(|e| refused(&what, e))?;
        dev.write_all_at(&buf, offset)
            .map_err(|e| failed(v, format!("{}: {e}", part.path.display())))?;
        offset += len;
        let done = offset.div_ceil(1 << 20).min(mib);
        let progress = format!("writing {v} to slot {slot}: {done}/{mib} MiB");
        report(&format!("writing {done}/{mib} MiB"));
        console::line(&format!("update: {progress}"));
    }
    verifier.finish().map_err(|e| refused(&what, e))?;
    nix::unistd::fdatasync(&dev)
        .map_err(|e| failed(v, format!("{}: fdatasync: {e}", part.path.display())))?;

    // Read back what the device holds (dropping our cached pages first where supported).
    report("verifying");
    let _ = nix::fcntl::posix_fadvise(
        &dev,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    drop(dev);
    let dev = std::fs::File::open(&part.path)
        .map_err(|e| failed(v, format!("{}: {e}", part.path.display())))?;
    let mut hasher = Sha256::new();
    let mut left = m.root.size;
    let mut buf = vec![0u8; READ_BACK];
    let mut reader = dev.take(m.root.size);
    while left > 0 {
        let n = reader
            .read(&mut buf)
            .map_err(|e| failed(v, format!("reading back slot {slot}: {e}")))?;
        if n == 0 {
            return Err(failed(v, format!("slot {slot} ends {left} bytes early")));
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    let got = hex(&hasher.finalize());
    if got != m.root.sha256 {
        return Err(failed(
            v,
            format!(
                "slot {slot} reads back sha256 {got}, expected {}",
                m.root.sha256
            ),
        ));
    }
    console::line(&format!("update: slot {slot} verified"));
    Ok(())
}

/// Writes the UKI to `.cairn-<v>.tmp` while hashing, checks it, syncs, and renames it to
/// its counted entry name; returns that name.
fn install_uki(setup: &Setup, m: &Manifest, bundle: &str) -> Result<String, CheckError> {
    let v = m.version.as_str();
    let what = format!("{} of {v}", m.uki.file);
    let url = http::join(bundle, &m.uki.file);
    let dir = setup.esp.dir();
    let tmp = dir.join(entries::temp_name(v));
    let io = |e: std::io::Error| failed(v, format!("{}: {e}", tmp.display()));
    let mut body = http::get(&url).map_err(|e| failed(v, e))?;
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    let result = (|| {
        loop {
            let n = body
                .read(&mut buf)
                .map_err(|e| failed(v, format!("{url}: {e}")))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > m.uki.size {
                return Err(refused(&what, format!("longer than {} bytes", m.uki.size)));
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(io)?;
        }
        if total != m.uki.size {
            return Err(refused(
                &what,
                format!("{total} bytes, the manifest says {}", m.uki.size),
            ));
        }
        let got = hex(&hasher.finalize_reset());
        if got != m.uki.sha256 {
            return Err(refused(
                &what,
                format!(
                    "sha256 {got} does not match the manifest's {}",
                    m.uki.sha256
                ),
            ));
        }
        file.sync_all().map_err(io)
    })();
    if let Err(e) = result {
        drop(file);
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    drop(file);
    let name = Entry::new_counted(v, setup.tries).file_name();
    std::fs::rename(&tmp, dir.join(&name)).map_err(io)?;
    setup.esp.sync().map_err(|e| failed(v, e))?;
    Ok(name)
}
