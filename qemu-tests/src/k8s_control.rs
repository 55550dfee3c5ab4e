//! A real Kubernetes control plane for the lab tests: etcd, kube-apiserver
//! and kube-controller-manager started inside an existing network namespace
//! (the lab's client namespace), with a PKI made by the `openssl` CLI, so a
//! `k8s-node` box's kubelet can join it through a bootstrap token, as a
//! kubeadm cluster would let it.
//!
//! The binaries come from `cargo xtask k8s-bins` (Debian's kubernetes 1.20
//! source, plus Debian's kubectl), found through `CAIRN_K8S_BIN`; etcd is
//! Debian's `etcd-server`. Everything the control plane writes (PKI, etcd
//! data, logs, kubeconfigs) stays in the directory it is given; dropping it
//! stops exactly the processes it started.

pub mod manifests;
pub mod pki;

use std::fs::File;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use manifests::{API_PORT, BOOTSTRAP_GROUP};
use pki::Pki;

/// How long start-up may take until the apiserver is ready and the
/// controller manager has made the `default` service account (this machine
/// is slow under load).
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The binaries of `cargo xtask k8s-bins` every k8s lab test needs.
pub const K8S_BINARIES: &[&str] = &[
    "kubelet",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
];

/// The directory named by `CAIRN_K8S_BIN` (set by `cargo xtask test`).
/// Panics, naming `cargo xtask k8s-bins`, when it is unset or a binary is
/// missing: the k8s tests never skip.
pub fn k8s_bins() -> PathBuf {
    let dir = std::env::var_os("CAIRN_K8S_BIN").map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "CAIRN_K8S_BIN is not set: build the Kubernetes binaries with `cargo xtask k8s-bins` \
             and run with CAIRN_K8S_BIN=<its bin dir> (`cargo xtask test` does both)"
        )
    });
    for b in K8S_BINARIES {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: run `cargo xtask k8s-bins` (CAIRN_K8S_BIN={})",
            dir.join(b).display(),
            dir.display()
        );
    }
    dir
}

/// One process the control plane started, with its log file.
#[derive(Debug)]
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// A running control plane. Dropping it stops its processes (SIGTERM, then
/// SIGKILL after a bounded wait), newest first.
#[derive(Debug)]
pub struct ControlPlane {
    netns: String,
    addr: IpAddr,
    dir: PathBuf,
    kubectl: PathBuf,
    pki: Pki,
    admin_kubeconfig: PathBuf,
    procs: Vec<Proc>,
    startup: Duration,
}

impl ControlPlane {
    /// Makes the PKI in `dir` and starts etcd, kube-apiserver (on
    /// `addr`:6443, which must be an address of `netns`) and
    /// kube-controller-manager inside `netns`, with the binaries in `bins`;
    /// returns once `/readyz` answers ok and the controller manager has
    /// created the `default` service account, or after [`START_TIMEOUT`]
    /// with an error carrying the logs' last lines.
    pub fn start(netns: &str, addr: IpAddr, dir: &Path, bins: &Path) -> Result<Self, String> {
        let t = Instant::now();
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        for b in ["kube-apiserver", "kube-controller-manager", "kubectl"] {
            if !bins.join(b).is_file() {
                return Err(format!(
                    "{} is missing: run `cargo xtask k8s-bins`",
                    bins.join(b).display()
                ));
            }
        }
        let pki = pki::generate(&dir, addr)?;
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        write(
            &admin_kubeconfig,
            &manifests::kubeconfig(
                &manifests::server_url(addr),
                &pki.ca_crt,
                &pki.admin_crt,
                &pki.admin_key,
            ),
        )?;
        write(&dir.join("empty.kubeconfig"), manifests::EMPTY_KUBECONFIG)?;
        run(
            "ip",
            &["-n", netns, "link", "set", "lo", "up"],
            "bringing lo up in the namespace",
        )?;
        let mut cp = ControlPlane {
            netns: netns.to_owned(),
            addr,
            dir: dir.clone(),
            kubectl: bins.join("kubectl"),
            pki,
            admin_kubeconfig,
            procs: Vec::new(),
            startup: Duration::ZERO,
        };
        let etcd_data = dir.join("etcd");
        if etcd_data.exists() {
            std::fs::remove_dir_all(&etcd_data)
                .map_err(|e| format!("removing {}: {e}", etcd_data.display()))?;
        }
        cp.spawn("etcd", Path::new("etcd"), &cp.etcd_args(&etcd_data))?;
        cp.spawn(
            "kube-apiserver",
            &bins.join("kube-apiserver"),
            &cp.apiserver_args(),
        )?;
        cp.wait_for("/readyz to answer ok", t, |cp| {
            let o = cp.kubectl(&["get", "--raw", "/readyz"]);
            o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "ok"
        })?;
        cp.spawn(
            "kube-controller-manager",
            &bins.join("kube-controller-manager"),
            &cp.controller_manager_args(),
        )?;
        cp.wait_for(
            "the controller manager to create serviceaccount/default",
            t,
            |cp| {
                cp.kubectl(&["get", "serviceaccount", "default", "-n", "default"])
                    .status
                    .success()
            },
        )?;
        cp.startup = t.elapsed();
        Ok(cp)
    }

    /// The processes it started: (name, pid), oldest first.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.procs.iter().map(|p| (p.name, p.child.id())).collect()
    }

    /// How long [`ControlPlane::start`] took.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// `https://<addr>:6443`.
    pub fn server(&self) -> String {
        manifests::server_url(self.addr)
    }

    /// The network namespace it runs in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Its directory (PKI, etcd data, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The PKI's files.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The CA certificate (PEM text), which a joining kubelet must trust.
    pub fn ca_pem(&self) -> Result<String, String> {
        std::fs::read_to_string(&self.pki.ca_crt)
            .map_err(|e| format!("{}: {e}", self.pki.ca_crt.display()))
    }

    /// The admin kubeconfig (`system:masters`).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// Debian's kubectl as admin, inside the namespace.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_input(args, None)
    }

    /// kubectl with a bootstrap (or any bearer) token instead of the admin
    /// certificate: `--server`, `--certificate-authority`, `--token`, and an
    /// empty kubeconfig so nothing else is used.
    pub fn kubectl_with_token(&self, token: &str, args: &[&str]) -> Output {
        let empty = self.dir.join("empty.kubeconfig");
        let ca = self.pki.ca_crt.display().to_string();
        let server = self.server();
        let mut all: Vec<&str> = vec![
            "--kubeconfig",
            empty.to_str().unwrap_or(""),
            "--server",
            &server,
            "--certificate-authority",
            &ca,
            "--token",
            token,
        ];
        all.extend_from_slice(args);
        self.kubectl_raw(&all, None)
    }

    /// `kubectl apply -f -` with `yaml` as admin; the error carries kubectl's output.
    pub fn apply(&self, yaml: &str) -> Result<String, String> {
        let o = self.kubectl_input(&["apply", "-f", "-"], Some(yaml));
        ok(&o, "kubectl apply")
    }

    /// Creates a bootstrap token (Secret `bootstrap-token-<id>` in
    /// kube-system, extra group [`BOOTSTRAP_GROUP`]) and the kubeadm-style
    /// TLS-bootstrap RBAC; returns `<id>.<secret>` and the CA certificate (PEM).
    pub fn create_bootstrap_token(&self) -> Result<(String, String), String> {
        let mut random = [0u8; 22];
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut random))
            .map_err(|e| format!("reading /dev/urandom: {e}"))?;
        let (id, secret) = manifests::token_from(&random);
        self.apply(&manifests::bootstrap_token_secret(&id, &secret))?;
        self.apply(&manifests::bootstrap_rbac())?;
        Ok((format!("{id}.{secret}"), self.ca_pem()?))
    }

    /// Polls `kubectl get node NAME -o json` until its Ready condition is
    /// True; returns how long that took, or on timeout the last conditions
    /// seen (or the last error).
    pub fn wait_node_ready(&self, name: &str, timeout: Duration) -> Result<Duration, String> {
        let t = Instant::now();
        let mut last = String::from("never asked");
        while t.elapsed() < timeout {
            let o = self.kubectl(&["get", "node", name, "-o", "json"]);
            if o.status.success() {
                match serde_json::from_slice::<serde_json::Value>(&o.stdout) {
                    Ok(node) => {
                        let conds = node["status"]["conditions"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default();
                        if conds
                            .iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        {
                            return Ok(t.elapsed());
                        }
                        last = conds
                            .iter()
                            .map(|c| {
                                format!(
                                    "{}={} ({}: {})",
                                    c["type"].as_str().unwrap_or("?"),
                                    c["status"].as_str().unwrap_or("?"),
                                    c["reason"].as_str().unwrap_or(""),
                                    c["message"].as_str().unwrap_or("")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("; ");
                        if last.is_empty() {
                            last = "registered, no conditions yet".into();
                        }
                    }
                    Err(e) => last = format!("unreadable node JSON: {e}"),
                }
            } else {
                last = output_text(&o);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        Err(format!(
            "node {name} not Ready after {:.0} s; last: {last}",
            timeout.as_secs_f64()
        ))
    }

    /// The phase of pod `name` in namespace `ns` (`Pending`, `Running`, ...).
    pub fn pod_phase(&self, ns: &str, name: &str) -> Result<String, String> {
        let o = self.kubectl(&[
            "get",
            "pod",
            "-n",
            ns,
            name,
            "-o",
            "jsonpath={.status.phase}",
        ]);
        ok(&o, "kubectl get pod").map(|s| s.trim().to_owned())
    }

    /// The last `n` lines of the log of `name` (`etcd`, `kube-apiserver`,
    /// `kube-controller-manager`).
    pub fn log_tail(&self, name: &str, n: usize) -> String {
        tail(&self.dir.join(format!("{name}.log")), n)
    }

    fn kubectl_input(&self, args: &[&str], input: Option<&str>) -> Output {
        let kc = self.admin_kubeconfig.display().to_string();
        let mut all: Vec<&str> = vec!["--kubeconfig", &kc];
        all.extend_from_slice(args);
        self.kubectl_raw(&all, input)
    }

    /// kubectl inside the namespace, its discovery cache in the directory
    /// (not in $HOME); a failure to run it at all becomes a failed Output.
    fn kubectl_raw(&self, args: &[&str], input: Option<&str>) -> Output {
        let cache = self.dir.join("kubectl-cache");
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns])
            .arg(&self.kubectl)
            .arg("--cache-dir")
            .arg(&cache)
            .args(["--request-timeout", "20s"])
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let result = c.spawn().and_then(|mut child| {
            if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
                stdin.write_all(text.as_bytes())?;
            }
            child.wait_with_output()
        });
        result.unwrap_or_else(|e| failed_output(&format!("cannot run kubectl: {e}")))
    }

    fn etcd_args(&self, data: &Path) -> Vec<String> {
        let d = data.display();
        [
            "--name=cairn-lab".to_owned(),
            format!("--data-dir={d}"),
            "--listen-client-urls=http://127.0.0.1:2379".into(),
            "--advertise-client-urls=http://127.0.0.1:2379".into(),
            "--listen-peer-urls=http://127.0.0.1:2380".into(),
            "--initial-advertise-peer-urls=http://127.0.0.1:2380".into(),
            "--initial-cluster=cairn-lab=http://127.0.0.1:2380".into(),
        ]
        .into()
    }

    fn apiserver_args(&self) -> Vec<String> {
        let p = &self.pki;
        let f = |x: &Path| x.display().to_string();
        vec![
            format!("--advertise-address={}", self.addr),
            format!("--bind-address={}", self.addr),
            format!("--secure-port={API_PORT}"),
            "--insecure-port=0".into(),
            "--etcd-servers=http://127.0.0.1:2379".into(),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--enable-bootstrap-token-auth=true".into(),
            format!("--client-ca-file={}", f(&p.ca_crt)),
            format!("--tls-cert-file={}", f(&p.apiserver_crt)),
            format!("--tls-private-key-file={}", f(&p.apiserver_key)),
            // `kubectl logs/exec` reach kubelets as admin.
            format!("--kubelet-client-certificate={}", f(&p.admin_crt)),
            format!("--kubelet-client-key={}", f(&p.admin_key)),
            "--kubelet-preferred-address-types=InternalIP,Hostname".into(),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", f(&p.sa_pub)),
            format!("--service-account-signing-key-file={}", f(&p.sa_key)),
            format!("--service-cluster-ip-range={}", pki::SERVICE_RANGE),
            "--allow-privileged=true".into(),
            format!("--cert-dir={}", self.dir.join("apiserver-certs").display()),
        ]
    }

    fn controller_manager_args(&self) -> Vec<String> {
        let p = &self.pki;
        let f = |x: &Path| x.display().to_string();
        let kc = f(&self.admin_kubeconfig);
        vec![
            format!("--kubeconfig={kc}"),
            format!("--authentication-kubeconfig={kc}"),
            format!("--authorization-kubeconfig={kc}"),
            format!("--cluster-signing-cert-file={}", f(&p.ca_crt)),
            format!("--cluster-signing-key-file={}", f(&p.ca_key)),
            format!("--root-ca-file={}", f(&p.ca_crt)),
            format!("--service-account-private-key-file={}", f(&p.sa_key)),
            "--controllers=*,bootstrapsigner,tokencleaner".into(),
            "--leader-elect=false".into(),
            "--port=0".into(),
            "--bind-address=127.0.0.1".into(),
            format!(
                "--cert-dir={}",
                self.dir.join("controller-manager-certs").display()
            ),
        ]
    }

    /// Starts `program args` inside the namespace (`ip netns exec` execs it,
    /// so the child is the program itself), output to `<dir>/<name>.log`.
    fn spawn(&mut self, name: &'static str, program: &Path, args: &[String]) -> Result<(), String> {
        let log = self.dir.join(format!("{name}.log"));
        let out = File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name} in {}: {e}", self.netns))?;
        self.procs.push(Proc { name, child, log });
        Ok(())
    }

    /// Polls `ready` every 0.5 s until [`START_TIMEOUT`] after `since`;
    /// fails early when one of the processes exited.
    fn wait_for(
        &mut self,
        what: &str,
        since: Instant,
        ready: impl Fn(&Self) -> bool,
    ) -> Result<(), String> {
        loop {
            if ready(self) {
                return Ok(());
            }
            for p in &mut self.procs {
                if let Ok(Some(st)) = p.child.try_wait() {
                    return Err(format!(
                        "{} exited ({st}) while waiting for {what}; {}:\n{}",
                        p.name,
                        p.log.display(),
                        tail(&p.log, 30)
                    ));
                }
            }
            if since.elapsed() > START_TIMEOUT {
                let logs: Vec<String> = self
                    .procs
                    .iter()
                    .map(|p| {
                        format!(
                            "--- {} ({}):\n{}",
                            p.name,
                            p.log.display(),
                            tail(&p.log, 15)
                        )
                    })
                    .collect();
                return Err(format!(
                    "no {what} within {:.0} s\n{}",
                    START_TIMEOUT.as_secs_f64(),
                    logs.join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        while let Some(mut p) = self.procs.pop() {
            stop(&mut p.child);
        }
    }
}

/// SIGTERM, up to [`STOP_GRACE`] to exit, then SIGKILL; always reaped.
fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let t = Instant::now();
    while t.elapsed() < STOP_GRACE {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn run(program: &str, args: &[&str], what: &str) -> Result<(), String> {
    let o = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{what}: cannot run {program}: {e}"))?;
    ok(&o, what).map(|_| ())
}

/// stdout when `o` succeeded, else an error naming `what` with its output.
fn ok(o: &Output, what: &str) -> Result<String, String> {
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(format!("{what} failed ({}): {}", o.status, output_text(o)))
    }
}

/// stdout and stderr of `o`, trimmed.
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
    .trim()
    .to_owned()
}

/// An Output saying `why`, with exit status 127 (what a shell reports for a
/// command it cannot run).
fn failed_output(why: &str) -> Output {
    use std::os::unix::process::ExitStatusExt;
    Output {
        status: std::process::ExitStatus::from_raw(127 << 8),
        stdout: Vec::new(),
        stderr: why.as_bytes().to_vec(),
    }
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}
