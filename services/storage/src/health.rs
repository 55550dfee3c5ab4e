//! `cairn-storage healthy`: whether this node can hand out the volume files,
//! the condition for holding the storage VIP (cairn-vipd runs it as an exec
//! check). Healthy means glusterd answers and every volume of the site exists
//! and is `Started`. `volume info` is answered from glusterd's own store, with
//! no cluster lock, so a busy pool does not make a node look sick.

use std::time::Duration;

use cairn_site::StorageSection;

use crate::gluster::{Cli, CliError};
use crate::xml::VolumeInfo;

/// The longest `cairn-storage healthy` waits for the gluster CLI by default;
/// below cairn-vipd's timeout for the check, so the command names the cause.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(5);

/// What is wrong with one volume of the site.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeProblem {
    /// glusterd does not know it (not created yet, or deleted).
    #[error("volume {0} does not exist")]
    Missing(String),
    /// It exists but does not serve.
    #[error("volume {name} is {status}, not Started")]
    NotStarted {
        /// The volume.
        name: String,
        /// Its state (`Created`, `Stopped`).
        status: String,
    },
}

/// Why this node should not hold the storage VIP.
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    /// glusterd could not be asked (down, hung, or an answer that is no answer).
    #[error("glusterd does not answer: {0}")]
    NoAnswer(#[source] CliError),
    /// Volumes missing or not started, each named.
    #[error("{}", join(.0))]
    Volumes(Vec<VolumeProblem>),
}

fn join(problems: &[VolumeProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The verdict on `volume info`'s answer, free of I/O: `Ok` with a one-line
/// summary when every volume of `site` is there and started.
pub fn verdict(site: &StorageSection, volumes: &[VolumeInfo]) -> Result<String, Unhealthy> {
    let problems: Vec<VolumeProblem> = site
        .volumes
        .iter()
        .filter_map(|want| match volumes.iter().find(|v| v.name == want.name) {
            None => Some(VolumeProblem::Missing(want.name.clone())),
            Some(v) if v.status != "Started" => Some(VolumeProblem::NotStarted {
                name: v.name.clone(),
                status: if v.status.is_empty() {
                    "in an unknown state".to_owned()
                } else {
                    v.status.clone()
                },
            }),
            Some(_) => None,
        })
        .collect();
    if !problems.is_empty() {
        return Err(Unhealthy::Volumes(problems));
    }
    let names: Vec<&str> = site.volumes.iter().map(|v| v.name.as_str()).collect();
    Ok(format!(
        "glusterd answers, volume(s) {} started",
        names.join(", ")
    ))
}

/// Asks glusterd (`volume info`, the CLI killed after `limit`) and judges.
pub fn check(cli: &Cli, site: &StorageSection, limit: Duration) -> Result<String, Unhealthy> {
    let volumes = cli.volumes_within(limit).map_err(Unhealthy::NoAnswer)?;
    verdict(site, &volumes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;

    const SITE: &str = r#"
[cluster]
name = "s"

[[node]]
name = "st1"
role = "storage"
mac = "52:54:00:c0:00:31"
addresses = ["192.0.2.31/24"]

[[node]]
name = "st2"
role = "storage"
mac = "52:54:00:c0:00:32"
addresses = ["192.0.2.32/24"]

[storage]
vip = "192.0.2.30/24"

[[storage.volume]]
name = "gv0"
type = "replica"
replica = 2
bricks = ["st1", "st2"]

[[storage.volume]]
name = "gv1"
type = "distribute"
bricks = ["st1", "st2"]
"#;

    fn site() -> StorageSection {
        cairn_site::parse_site(SITE, Path::new("site.toml"))
            .unwrap()
            .storage
            .unwrap()
    }

    fn info(name: &str, status: &str) -> VolumeInfo {
        VolumeInfo {
            name: name.into(),
            status: status.into(),
            kind: "Replicate".into(),
            bricks: Vec::new(),
            options: Default::default(),
        }
    }

    #[test]
    fn every_site_volume_must_exist_and_be_started() {
        let s = site();
        assert_eq!(
            verdict(
                &s,
                &[
                    info("gv1", "Started"),
                    info("gv0", "Started"),
                    info("old", "Stopped")
                ]
            )
            .unwrap(),
            "glusterd answers, volume(s) gv0, gv1 started"
        );
        let e = verdict(&s, &[info("gv0", "Created")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "volume gv0 is Created, not Started; volume gv1 does not exist"
        );
        let e = verdict(&s, &[info("gv0", "Stopped"), info("gv1", "")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "volume gv0 is Stopped, not Started; volume gv1 is in an unknown state, not Started"
        );
        assert!(verdict(&s, &[]).is_err());
    }

    /// A stand-in for the gluster CLI: a shell script printing `body`.
    fn fake_cli(dir: &Path, body: &str) -> Cli {
        let program = dir.join("gluster");
        std::fs::write(&program, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        Cli {
            program,
            timeout_s: 5,
        }
    }

    const STARTED: &str = "<?xml version=\"1.0\"?><cliOutput><opRet>0</opRet><opErrno>0</opErrno><opErrstr/>\
        <volInfo><volumes><volume><name>gv0</name><statusStr>Started</statusStr><typeStr>Replicate</typeStr></volume>\
        <volume><name>gv1</name><statusStr>Started</statusStr><typeStr>Distribute</typeStr></volume>\
        <count>2</count></volumes></volInfo></cliOutput>";

    #[test]
    fn check_runs_the_cli_and_reports_a_dead_or_hung_glusterd() {
        let dir = tempfile::tempdir().unwrap();
        let ok = fake_cli(dir.path(), &format!("echo '{STARTED}'"));
        assert_eq!(
            check(&ok, &site(), DEFAULT_LIMIT).unwrap(),
            "glusterd answers, volume(s) gv0, gv1 started"
        );
        // What the CLI prints when glusterd is not running.
        let down = fake_cli(
            dir.path(),
            "echo 'Connection failed. Please check if gluster daemon is operational.'; exit 1",
        );
        let e = check(&down, &site(), DEFAULT_LIMIT)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("glusterd does not answer: gluster volume info: gluster printed no XML")
                && e.contains("Connection failed"),
            "{e}"
        );
        let hung = fake_cli(dir.path(), "exec sleep 30");
        let e = check(&hung, &site(), Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "glusterd does not answer: gluster volume info: no answer within 300ms (killed)"
        );
    }
}
