//! Privileged tests of blessing: cairn-init as PID 1 of its own PID
//! namespace (supervise-only mode) with `--esp` pointing at a temp directory
//! that stands in for the mounted ESP. They need root and fail (never skip)
//! without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Lab;

/// Creates `<dir>/esp/EFI/Linux` holding `files` (each holds its own name).
fn esp(dir: &Path, files: &[&str]) {
    let d = dir.join("esp/EFI/Linux");
    std::fs::create_dir_all(&d).unwrap();
    for f in files {
        std::fs::write(d.join(f), f).unwrap();
    }
}

fn uki_dir(lab: &Lab) -> PathBuf {
    lab.dir.path().join("esp/EFI/Linux")
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const STEADY: &str = r#"
[[service]]
name = "steady"
exec = ["/bin/sleep", "1000"]

[[service]]
name = "setup"
exec = ["/bin/true"]
oneshot = true
"#;

#[test]
fn a_counted_boot_is_blessed_once_every_service_stayed_ready() {
    let lab = Lab::start_with(
        STEADY,
        &[
            "--esp",
            "@DIR@/esp",
            "--running-version",
            "0.2.0",
            "--bless-after",
            "1",
        ],
        |d| esp(d, &["cairn-0.1.0.efi", "cairn-0.2.0+2-1.efi"]),
    );
    lab.wait_until("blessed", Duration::from_secs(20), || {
        lab.log().contains("bless: blessed 0.2.0")
    });
    assert_eq!(
        names(&uki_dir(&lab)),
        ["cairn-0.1.0.efi", "cairn-0.2.0.efi"],
        "{}",
        lab.log()
    );
    assert_eq!(
        std::fs::read_to_string(uki_dir(&lab).join("cairn-0.2.0.efi")).unwrap(),
        "cairn-0.2.0+2-1.efi",
        "renamed, not rewritten"
    );
    // Blessed once; the box runs on.
    assert_eq!(lab.log().matches("bless: blessed").count(), 1);
    assert_eq!(lab.service("steady")["state"], "ready");
    assert!(!lab.log().contains("bless: rebooting"));
}

#[test]
fn a_service_giving_up_reboots_a_counted_boot() {
    let mut lab = Lab::start_with(
        r#"
[[service]]
name = "steady"
exec = ["/bin/sleep", "1000"]

[[service]]
name = "crash"
exec = ["/bin/sh", "-c", "exit 3"]
restart_delay_ms = 50
start_limit = { burst = 2, interval_ms = 60000, cooldown_ms = 60000 }
"#,
        &[
            "--esp",
            "@DIR@/esp",
            "--running-version",
            "0.2.0",
            "--bless-after",
            "1",
        ],
        |d| esp(d, &["cairn-0.1.0.efi", "cairn-0.2.0+1-2.efi"]),
    );
    let st = lab.wait_exit(Duration::from_secs(30));
    assert!(st.success(), "{st:?}");
    let log = lab.log();
    assert!(
        log.contains(
            "bless: rebooting: service crash gave up: start limit hit: 2 starts within 60000 ms; \
             trying again in 60000 ms; not ready: crash"
        ),
        "{log}"
    );
    assert!(
        log.contains("supervise-only mode: exiting action=\"reboot\""),
        "an orderly reboot: {log}"
    );
    assert!(!log.contains("bless: blessed"), "{log}");
    assert_eq!(
        names(&uki_dir(&lab)),
        ["cairn-0.1.0.efi", "cairn-0.2.0+1-2.efi"],
        "the entry keeps its counter"
    );
}

#[test]
fn the_deadline_reboots_a_counted_boot_that_never_gets_ready() {
    let mut lab = Lab::start_with(
        r#"
[[service]]
name = "never"
exec = ["/bin/sleep", "1000"]
ready = { exec = ["/bin/false"], timeout_ms = 600000 }
"#,
        &[
            "--esp",
            "@DIR@/esp",
            "--running-version",
            "0.2.0",
            "--bless-after",
            "1",
            "--boot-deadline",
            "2",
        ],
        |d| esp(d, &["cairn-0.2.0+3.efi"]),
    );
    let st = lab.wait_exit(Duration::from_secs(30));
    assert!(st.success(), "{st:?}");
    let log = lab.log();
    assert!(
        log.contains(
            "bless: rebooting: not blessed within 2 s (services not ready); not ready: never"
        ),
        "{log}"
    );
    assert_eq!(names(&uki_dir(&lab)), ["cairn-0.2.0+3.efi"]);
}

#[test]
fn an_uncounted_boot_is_never_blessed_nor_rebooted() {
    let lab = Lab::start_with(
        r#"
[[service]]
name = "steady"
exec = ["/bin/sleep", "1000"]

[[service]]
name = "crash"
exec = ["/bin/sh", "-c", "exit 3"]
restart_delay_ms = 50
start_limit = { burst = 2, interval_ms = 60000, cooldown_ms = 0 }
"#,
        &[
            "--esp",
            "@DIR@/esp",
            "--running-version",
            "0.2.0",
            "--bless-after",
            "1",
            "--boot-deadline",
            "1",
        ],
        |d| esp(d, &["cairn-0.2.0.efi", "cairn-0.3.0+0-3.efi"]),
    );
    lab.wait_until("crash gave up", Duration::from_secs(20), || {
        lab.service("crash")["state"] == "failed"
    });
    // Past the deadline and the bless window: still up, nothing renamed.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(lab.service("steady")["state"], "ready");
    let log = lab.log();
    assert!(log.contains("not a boot-counted entry"), "{log}");
    assert!(!log.contains("bless: "), "{log}");
    assert_eq!(
        names(&uki_dir(&lab)),
        ["cairn-0.2.0.efi", "cairn-0.3.0+0-3.efi"]
    );
}
