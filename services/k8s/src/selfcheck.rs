//! `cairn-k8s check`: drives containerd through the CRI the way the kubelet
//! does — a pod sandbox with CNI networking and a host port, a container
//! from the locally imported pause image that serves a line, its log file,
//! its pod IP and host port — and removes everything again (unless `--keep`,
//! for a test that reaches the host port from outside).
//!
//! The CRI requests are built by pure functions (tested without a runtime);
//! [`run`] does the I/O and reports each step.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use serde::Serialize;

use crate::cri::{Cri, CriError, call};
use crate::crilog;

/// Label on everything the self-check creates (and removes, also after a crash).
pub const LABEL: &str = "cairn.io/selfcheck";
/// The pod's name, namespace and uid.
pub const POD_NAME: &str = "cairn-selfcheck";
/// The pod's Kubernetes namespace (only a name for the CRI).
pub const POD_NAMESPACE: &str = "cairn-system";
/// The host port mapped to the container.
pub const HOST_PORT: u16 = 30080;
/// The port the container listens on.
pub const CONTAINER_PORT: u16 = 8080;
/// What the container says (on stdout and to every connection).
pub const SAY: &str = "cairn-selfcheck";
/// Container name.
pub const CONTAINER_NAME: &str = "selfcheck";
/// Container log file, relative to the pod's log directory.
pub const LOG_PATH: &str = "selfcheck/0.log";

/// The pod's log directory (kubelet's layout: `<ns>_<name>_<uid>`).
pub fn log_directory() -> PathBuf {
    PathBuf::from(format!(
        "/var/log/pods/{POD_NAMESPACE}_{POD_NAME}_{POD_NAME}"
    ))
}

fn labels() -> HashMap<String, String> {
    HashMap::from([(LABEL.to_owned(), "1".to_owned())])
}

/// The sandbox: pod network from CNI, host port [`HOST_PORT`] → [`CONTAINER_PORT`].
pub fn sandbox_config() -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: POD_NAME.into(),
            uid: POD_NAME.into(),
            namespace: POD_NAMESPACE.into(),
            attempt: 0,
        }),
        hostname: POD_NAME.into(),
        log_directory: log_directory().to_string_lossy().into_owned(),
        port_mappings: vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: i32::from(CONTAINER_PORT),
            host_port: i32::from(HOST_PORT),
            host_ip: String::new(),
        }],
        labels: labels(),
        linux: Some(cri::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// The container: `/pause --serve 8080 --say cairn-selfcheck` from `image`.
pub fn container_config(image: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: CONTAINER_NAME.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["/pause".into()],
        args: vec![
            "--serve".into(),
            CONTAINER_PORT.to_string(),
            "--say".into(),
            SAY.into(),
        ],
        log_path: LOG_PATH.into(),
        labels: labels(),
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// One step of the check.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// What was done.
    pub name: String,
    /// Whether it worked.
    pub ok: bool,
    /// What came back (or why it failed).
    pub detail: String,
    /// How long it took.
    pub ms: u64,
}

/// The whole check.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    /// Steps in order; the first failure ends the check (cleanup still runs).
    pub steps: Vec<Step>,
    /// Every step passed.
    pub passed: bool,
    /// The sandbox id, while it exists (`--keep`).
    pub kept_sandbox: Option<String>,
    /// The pod's IP.
    pub pod_ip: Option<String>,
}

impl Report {
    fn step<T>(&mut self, name: &str, t0: Instant, r: Result<(T, String), String>) -> Option<T> {
        let ms = t0.elapsed().as_millis() as u64;
        match r {
            Ok((v, detail)) => {
                self.steps.push(Step {
                    name: name.into(),
                    ok: true,
                    detail,
                    ms,
                });
                Some(v)
            }
            Err(detail) => {
                self.steps.push(Step {
                    name: name.into(),
                    ok: false,
                    detail,
                    ms,
                });
                None
            }
        }
    }

    /// Human-readable lines.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for st in &self.steps {
            s.push_str(&format!(
                "{:<4} {:<28} {:>6} ms  {}\n",
                if st.ok { "ok" } else { "FAIL" },
                st.name,
                st.ms,
                st.detail
            ));
        }
        s.push_str(if self.passed {
            "self-check passed\n"
        } else {
            "self-check FAILED\n"
        });
        s
    }
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The pause image (imported at boot).
    pub image: String,
    /// Leave the pod running (for a host-port test from outside).
    pub keep: bool,
    /// An address of this node to try the host port on.
    pub node_addr: Option<IpAddr>,
    /// How long to wait for the container's output and ports.
    pub wait: Duration,
}

fn e(err: CriError) -> String {
    err.to_string()
}

/// Removes every sandbox (and so its containers) carrying [`LABEL`]; returns how many.
pub async fn remove_leftovers(c: &mut Cri) -> Result<usize, CriError> {
    let list = call(
        "ListPodSandbox",
        c.runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: labels(),
                    ..Default::default()
                }),
            })
            .await,
    )?;
    let n = list.items.len();
    for p in list.items {
        remove_sandbox(c, &p.id).await?;
    }
    Ok(n)
}

async fn remove_sandbox(c: &mut Cri, id: &str) -> Result<(), CriError> {
    call(
        "StopPodSandbox",
        c.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await,
    )?;
    call(
        "RemovePodSandbox",
        c.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await,
    )?;
    Ok(())
}

/// Reads `addr` until EOF (bounded), retrying connects until `deadline`.
fn read_line_from(addr: SocketAddr, deadline: Instant) -> Result<String, String> {
    loop {
        let r = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).and_then(|s| {
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut got = String::new();
            s.take(4096).read_to_string(&mut got)?;
            Ok(got)
        });
        match r {
            Ok(got) if got.trim_end() == SAY => return Ok(got.trim_end().to_owned()),
            Ok(got) if Instant::now() >= deadline => {
                return Err(format!("{addr} answered {got:?}, not {SAY:?}"));
            }
            Err(err) if Instant::now() >= deadline => return Err(format!("{addr}: {err}")),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Waits for the container's log file to hold [`SAY`] on stdout.
fn wait_for_log(path: &Path, deadline: Instant) -> Result<String, String> {
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if crilog::parse(&text)
            .iter()
            .any(|l| l.stream == "stdout" && l.text == SAY)
        {
            return Ok(format!("{}: stdout {SAY:?}", path.display()));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} does not show {SAY:?} on stdout (has {:?})",
                path.display(),
                text.lines().take(5).collect::<Vec<_>>()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the check on a connected CRI.
pub async fn run(c: &mut Cri, opts: &Options) -> Report {
    let mut r = Report::default();
    let t = Instant::now();
    let v = call(
        "Version",
        c.runtime.version(cri::VersionRequest::default()).await,
    )
    .map(|v| {
        let d = format!(
            "{} {} (CRI {})",
            v.runtime_name, v.runtime_version, v.runtime_api_version
        );
        ((), d)
    })
    .map_err(e);
    if r.step("version", t, v).is_none() {
        return r;
    }
    let t = Instant::now();
    let img = call(
        "ImageStatus",
        c.images
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec { image: opts.image.clone(), ..Default::default() }),
                verbose: false,
            })
            .await,
    )
    .map_err(e)
    .and_then(|s| match s.image {
        Some(i) => Ok(((), format!("{} is {} ({} bytes)", opts.image, i.id, i.size))),
        None => Err(format!(
            "{} is not in containerd's k8s.io namespace (the k8s-import service imports it at boot)",
            opts.image
        )),
    });
    if r.step("local image", t, img).is_none() {
        return r;
    }
    let t = Instant::now();
    let old = remove_leftovers(c)
        .await
        .map(|n| ((), format!("{n} left over from an earlier check removed")))
        .map_err(e);
    if r.step("clean up earlier checks", t, old).is_none() {
        return r;
    }
    let logs = log_directory();
    let t = Instant::now();
    let _ = std::fs::remove_dir_all(&logs);
    if let Err(err) = std::fs::create_dir_all(&logs) {
        r.step::<()>(
            "pod log directory",
            t,
            Err(format!("{}: {err}", logs.display())),
        );
        return r;
    }
    let t = Instant::now();
    let sandbox = call(
        "RunPodSandbox",
        c.runtime
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(sandbox_config()),
                runtime_handler: String::new(),
            })
            .await,
    )
    .map(|s| {
        (
            s.pod_sandbox_id.clone(),
            format!("sandbox {}", short(&s.pod_sandbox_id)),
        )
    })
    .map_err(e);
    let Some(sandbox) = r.step("run pod sandbox", t, sandbox) else {
        return r;
    };
    let passed = containers(c, opts, &sandbox, &mut r).await;
    if opts.keep && passed {
        r.kept_sandbox = Some(sandbox);
    } else {
        let t = Instant::now();
        let rm = remove_sandbox(c, &sandbox)
            .await
            .map(|()| {
                (
                    (),
                    "stopped and removed (with its container and network)".to_owned(),
                )
            })
            .map_err(e);
        let removed = r.step("remove pod sandbox", t, rm).is_some();
        let _ = std::fs::remove_dir_all(&logs);
        r.passed = passed && removed;
        return r;
    }
    r.passed = passed;
    r
}

/// Container steps inside the sandbox; true when all passed.
async fn containers(c: &mut Cri, opts: &Options, sandbox: &str, r: &mut Report) -> bool {
    let t = Instant::now();
    let created = call(
        "CreateContainer",
        c.runtime
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox.into(),
                config: Some(container_config(&opts.image)),
                sandbox_config: Some(sandbox_config()),
            })
            .await,
    )
    .map(|s| {
        (
            s.container_id.clone(),
            format!("container {}", short(&s.container_id)),
        )
    })
    .map_err(e);
    let Some(id) = r.step("create container", t, created) else {
        return false;
    };
    let t = Instant::now();
    let started = call(
        "StartContainer",
        c.runtime
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await,
    )
    .map(|_| ((), "/pause --serve 8080 --say cairn-selfcheck".to_owned()))
    .map_err(e);
    if r.step("start container", t, started).is_none() {
        return false;
    }
    let deadline = Instant::now() + opts.wait;
    let t = Instant::now();
    let log = wait_for_log(&log_directory().join(LOG_PATH), deadline).map(|d| ((), d));
    if r.step("container output (CRI log)", t, log).is_none() {
        return false;
    }
    let t = Instant::now();
    let state = call(
        "ContainerStatus",
        c.runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: id,
                verbose: false,
            })
            .await,
    )
    .map_err(e)
    .and_then(|s| {
        let st = s.status.map(|s| s.state).unwrap_or(-1);
        if st == cri::ContainerState::ContainerRunning as i32 {
            Ok(((), "CONTAINER_RUNNING".to_owned()))
        } else {
            Err(format!("state {st}, not CONTAINER_RUNNING"))
        }
    });
    if r.step("container running", t, state).is_none() {
        return false;
    }
    let t = Instant::now();
    let ip = call(
        "PodSandboxStatus",
        c.runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox.into(),
                verbose: false,
            })
            .await,
    )
    .map_err(e)
    .and_then(|s| {
        let ip = s
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .unwrap_or_default();
        ip.parse::<IpAddr>()
            .map(|a| (a, format!("pod IP {a} (CNI)")))
            .map_err(|_| format!("no pod IP from CNI (got {ip:?})"))
    });
    let Some(ip) = r.step("pod network", t, ip) else {
        return false;
    };
    r.pod_ip = Some(ip.to_string());
    let t = Instant::now();
    let pod = read_line_from(SocketAddr::new(ip, CONTAINER_PORT), deadline)
        .map(|got| ((), format!("{ip}:{CONTAINER_PORT} says {got:?}")));
    if r.step("pod port", t, pod).is_none() {
        return false;
    }
    if let Some(node) = opts.node_addr {
        let t = Instant::now();
        let hp = read_line_from(SocketAddr::new(node, HOST_PORT), deadline)
            .map(|got| ((), format!("{node}:{HOST_PORT} says {got:?} (portmap)")));
        if r.step("host port", t, hp).is_none() {
            return false;
        }
    }
    true
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_maps_the_host_port_and_is_labelled() {
        let s = sandbox_config();
        assert_eq!(s.port_mappings.len(), 1);
        let p = &s.port_mappings[0];
        assert_eq!((p.host_port, p.container_port), (30080, 8080));
        assert_eq!(p.protocol, cri::Protocol::Tcp as i32);
        assert_eq!(s.labels.get(LABEL).map(String::as_str), Some("1"));
        assert_eq!(
            s.log_directory,
            "/var/log/pods/cairn-system_cairn-selfcheck_cairn-selfcheck"
        );
        let m = s.metadata.unwrap_or_default();
        assert_eq!(
            (m.name.as_str(), m.namespace.as_str()),
            (POD_NAME, POD_NAMESPACE)
        );
    }

    #[test]
    fn the_container_runs_pause_serving_the_line() {
        let c = container_config("cairn.invalid/pause:0.1.0");
        assert_eq!(
            c.image.unwrap_or_default().image,
            "cairn.invalid/pause:0.1.0"
        );
        assert_eq!(c.command, ["/pause"]);
        assert_eq!(c.args, ["--serve", "8080", "--say", "cairn-selfcheck"]);
        assert_eq!(c.log_path, "selfcheck/0.log");
    }

    #[test]
    fn a_report_says_which_step_failed() {
        let mut r = Report::default();
        let t = Instant::now();
        r.step("version", t, Ok(((), "containerd 1.6.20".into())));
        r.step::<()>("local image", t, Err("not there".into()));
        let text = r.render();
        assert!(text.contains("ok   version"), "{text}");
        assert!(text.contains("FAIL local image"), "{text}");
        assert!(text.ends_with("self-check FAILED\n"), "{text}");
    }
}
