//! `cairn lab keeper`: the long-lived process that owns a lab's QEMU VMs and
//! responders. `lab up` starts it detached (setsid, stdio to
//! `<state>/keeper.log`) inside the switch namespace, where the taps are, so
//! QEMU opens them directly. It serves one request per connection on
//! `<state>/keeper.sock` (see [`super::protocol`]) until `down`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_qemu::{Accel, Boot, ControlChannel, DiskBus, DiskWrites, NetBackend, Nic, Vm, VmConfig};

use super::net;
use super::plan::{LabPlan, VmPlan};
use super::protocol::{NodeKind, NodeStatus, Ready, Request, Response};
use super::state::StateDir;

/// How long a VM may take to print `CAIRN-READY` before its watcher gives up.
const READY_WATCH: Duration = Duration::from_secs(3600);
/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The keeper could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    /// No `lab.json` in the state directory.
    #[error("{0}: no lab plan (the keeper is started by `cairn lab up`)")]
    NoPlan(PathBuf),
    /// Reading the plan failed.
    #[error(transparent)]
    State(#[from] super::state::StateError),
    /// The control socket could not be made.
    #[error("cannot listen on {path}: {source}")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file of the keeper could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A node request that failed (sent back to the client as the error text).
#[derive(Debug, thiserror::Error)]
enum NodeError {
    #[error("no node {name:?} in this lab (known: {known})")]
    Unknown { name: String, known: String },
    #[error("{0} is the client namespace, not a node that can be {1}")]
    Client(String, &'static str),
    #[error("{0} is already running")]
    Running(String),
    #[error("{0} is not running")]
    NotRunning(String),
    #[error(transparent)]
    Vm(#[from] cairn_qemu::VmError),
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// Writes one timestamped line to the keeper's log (its stderr).
fn log(msg: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!("[{}.{:03}] {msg}", now.as_secs(), now.subsec_millis());
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// One VM and what is known about its current boot.
struct VmSlot {
    plan: VmPlan,
    vm: Option<Arc<Vm>>,
    boots: u32,
    /// `CAIRN-READY` of the current boot; a fresh cell per boot, so a watcher
    /// of an earlier boot can never mark a later one ready.
    ready: Arc<Mutex<Option<Ready>>>,
    link_up: bool,
    exit: Option<String>,
}

/// One external node's responders.
struct ExtSlot {
    children: Vec<Child>,
    link_up: bool,
    exit: Option<String>,
}

struct Keeper {
    plan: LabPlan,
    state: StateDir,
    accel: Accel,
    responder: PathBuf,
    vms: BTreeMap<String, VmSlot>,
    externals: BTreeMap<String, ExtSlot>,
    /// The update repository's server in the client namespace.
    repo: Option<Child>,
}

/// Runs the keeper of the lab in `state` until a `down` request.
pub fn run(state: &StateDir) -> Result<(), KeeperError> {
    let plan = state
        .load_plan()?
        .ok_or_else(|| KeeperError::NoPlan(state.plan_file()))?;
    let pid_file = state.keeper_pid_file();
    std::fs::write(&pid_file, format!("{}\n", std::process::id())).map_err(|source| {
        KeeperError::Io {
            path: pid_file.clone(),
            source,
        }
    })?;
    let socket = state.socket();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(|source| KeeperError::Listen {
        path: socket.clone(),
        source,
    })?;
    let accel = cairn_qemu::detect_accel();
    log(&format!(
        "keeper of lab {} (pid {}): QEMU with {} ({})",
        plan.lab,
        std::process::id(),
        accel.accel.name(),
        accel.note
    ));
    let mut keeper = Keeper {
        vms: plan
            .vms
            .iter()
            .map(|v| {
                (
                    v.name.clone(),
                    VmSlot {
                        plan: v.clone(),
                        vm: None,
                        boots: 0,
                        ready: Arc::new(Mutex::new(None)),
                        link_up: true,
                        exit: None,
                    },
                )
            })
            .collect(),
        externals: plan
            .externals
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    ExtSlot {
                        children: Vec::new(),
                        link_up: true,
                        exit: None,
                    },
                )
            })
            .collect(),
        responder: super::responder_program(),
        repo: None,
        accel: accel.accel,
        state: state.clone(),
        plan,
    };
    if let Err(e) = keeper.start_repo() {
        log(&format!("update repository: cannot serve it: {e}"));
    }
    let externals: Vec<String> = keeper.externals.keys().cloned().collect();
    for name in externals {
        if let Err(e) = keeper.start_external(&name) {
            log(&format!("{name}: cannot start responders: {e}"));
        }
    }
    let names: Vec<String> = keeper.plan.vms.iter().map(|v| v.name.clone()).collect();
    for name in names {
        if let Err(e) = keeper.start_vm(&name) {
            log(&format!("{name}: cannot start: {e}"));
            if let Some(slot) = keeper.vms.get_mut(&name) {
                slot.exit = Some(format!("failed to start: {e}"));
            }
        }
    }
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log(&format!("accept: {e}"));
                continue;
            }
        };
        if keeper.serve(stream) {
            break;
        }
    }
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(&pid_file);
    log("keeper exits");
    Ok(())
}

impl Keeper {
    /// Answers one connection; true when the keeper should exit.
    fn serve(&mut self, stream: UnixStream) -> bool {
        let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
        let mut line = String::new();
        let mut reader = BufReader::new(&stream);
        if let Err(e) = reader.read_line(&mut line) {
            log(&format!("reading a request: {e}"));
            return false;
        }
        let (response, exit) = match Request::parse(&line) {
            Err(e) => (Response::err(e.to_string()), false),
            Ok(req) => {
                if req != Request::Status {
                    log(&format!("request: {}", req.to_line()));
                }
                let down = req == Request::Down;
                (self.handle(&req), down)
            }
        };
        let mut text = serde_json::to_string(&response).unwrap_or_else(|e| {
            format!(r#"{{"ok":false,"error":"cannot encode the answer: {e}"}}"#)
        });
        text.push('\n');
        let mut writer = &stream;
        if let Err(e) = writer.write_all(text.as_bytes()) {
            log(&format!("writing an answer: {e}"));
        }
        exit
    }

    fn handle(&mut self, req: &Request) -> Response {
        let result = match req {
            Request::Status => Ok("status".to_string()),
            Request::Down => {
                self.stop_everything();
                Ok("every VM and responder stopped; the keeper exits".to_string())
            }
            Request::Kill(n) => self.kill(n),
            Request::Start(n) => self.start(n),
            Request::Cut(n) => self.set_link(n, false),
            Request::Heal(n) => self.set_link(n, true),
        };
        match result {
            Ok(msg) => Response::ok(msg, self.status()),
            Err(e) => {
                log(&format!("  failed: {e}"));
                Response::err(e.to_string())
            }
        }
    }

    fn check_name(&self, name: &str, verb: &'static str) -> Result<(), NodeError> {
        if name == super::plan::CLIENT {
            return Err(NodeError::Client(name.to_string(), verb));
        }
        if self.vms.contains_key(name) || self.externals.contains_key(name) {
            return Ok(());
        }
        Err(NodeError::Unknown {
            name: name.to_string(),
            known: self.plan.known_names(),
        })
    }

    fn kill(&mut self, name: &str) -> Result<String, NodeError> {
        self.check_name(name, "killed")?;
        if let Some(slot) = self.vms.get_mut(name) {
            let vm = slot
                .vm
                .take()
                .ok_or_else(|| NodeError::NotRunning(name.to_string()))?;
            if let Some(status) = vm.exit_status() {
                // It stopped by itself: keep how, release its files.
                slot.exit = Some(status.to_string());
                forget_runtime(&self.state, name);
                return Err(NodeError::NotRunning(name.to_string()));
            }
            let status = vm.kill()?;
            slot.exit = Some(status.to_string());
            forget_runtime(&self.state, name);
            log(&format!("{name}: QEMU killed ({status})"));
            return Ok(format!("{name} powered off (QEMU killed: {status})"));
        }
        let slot = self
            .externals
            .get_mut(name)
            .ok_or_else(|| NodeError::Unknown {
                name: name.to_string(),
                known: String::new(),
            })?;
        if slot.children.is_empty() {
            return Err(NodeError::NotRunning(name.to_string()));
        }
        for mut child in slot.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        slot.exit = Some("killed".into());
        Ok(format!("{name}'s responders killed"))
    }

    fn start(&mut self, name: &str) -> Result<String, NodeError> {
        self.check_name(name, "started")?;
        if self.vms.contains_key(name) {
            self.start_vm(name)?;
            return Ok(format!("{name} booting"));
        }
        self.start_external(name)?;
        Ok(format!("{name}'s responders started"))
    }

    fn set_link(&mut self, name: &str, up: bool) -> Result<String, NodeError> {
        self.check_name(name, if up { "healed" } else { "cut" })?;
        let word = if up { "plugged in" } else { "pulled" };
        if let Some(slot) = self.vms.get_mut(name) {
            let vm = slot
                .vm
                .as_ref()
                .filter(|vm| vm.exit_status().is_none())
                .ok_or_else(|| NodeError::NotRunning(name.to_string()))?;
            vm.set_link(0, up)?;
            slot.link_up = up;
        } else if let Some(slot) = self.externals.get_mut(name) {
            let port = self
                .plan
                .external(name)
                .map(|e| e.port.clone())
                .unwrap_or_default();
            net::set_link(&self.plan.switch_netns, &port, up)?;
            slot.link_up = up;
        }
        log(&format!("{name}: cable {word}"));
        Ok(format!("{name}: cable {word}"))
    }

    /// Boots (or boots again) a VM on its overlay.
    fn start_vm(&mut self, name: &str) -> Result<(), NodeError> {
        let slot = self.vms.get_mut(name).ok_or_else(|| NodeError::Unknown {
            name: name.to_string(),
            known: self.plan.known_names(),
        })?;
        if slot
            .vm
            .as_ref()
            .is_some_and(|vm| vm.exit_status().is_none())
        {
            return Err(NodeError::Running(name.to_string()));
        }
        // A VM that stopped by itself still holds its runtime directory.
        slot.vm = None;
        let dir = self.state.vm_dir(name);
        std::fs::create_dir_all(&dir).map_err(|source| NodeError::Io {
            what: dir.display().to_string(),
            source,
        })?;
        let mac = slot
            .plan
            .mac
            .parse::<cairn_site::Mac>()
            .map(|m| m.0)
            .unwrap_or_default();
        let mut config = VmConfig::new(
            name,
            Boot::UefiDisk {
                disk: self.state.image(&slot.plan.role).join("disk.qcow2"),
                writes: DiskWrites::Overlay(dir.join("disk.qcow2")),
                bus: DiskBus::Virtio,
                ovmf_vars: Some(dir.join("OVMF_VARS.fd")),
            },
        );
        config.memory_mib = self.plan.memory_mib;
        config.cpus = 1;
        config.nics.push(Nic {
            mac,
            backend: NetBackend::Tap(slot.plan.tap.clone()),
        });
        config.watchdog = true;
        config.control = Some(ControlChannel::cairn(self.state.ctl_socket(name)));
        config.accel = Some(self.accel);
        let console_path = self.state.console_log(name);
        let mut console = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&console_path)
            .map_err(|source| NodeError::Io {
                what: console_path.display().to_string(),
                source,
            })?;
        let boot = slot.boots + 1;
        let _ = writeln!(
            console,
            "\n=== cairn lab: {name} boot {boot} (unix ms {}) ===",
            unix_ms()
        );
        let vm = Arc::new(Vm::start(&config)?);
        slot.boots = boot;
        slot.link_up = true;
        slot.exit = None;
        slot.ready = Arc::new(Mutex::new(None));
        let runtime_note = dir.join("runtime");
        let _ = std::fs::write(
            &runtime_note,
            vm.runtime_dir().as_os_str().as_encoded_bytes(),
        );
        log(&format!(
            "{name}: QEMU started (pid {}, boot {boot})",
            vm.pid()
        ));
        {
            let vm = Arc::clone(&vm);
            let node = name.to_string();
            spawn_thread(&format!("console-{name}"), move || {
                if let Err(e) = vm.pump_console_to(&mut console, None) {
                    log(&format!("{node}: console copy ended: {e}"));
                }
            });
        }
        {
            let vm = Arc::clone(&vm);
            let ready = Arc::clone(&slot.ready);
            let node = name.to_string();
            spawn_thread(&format!("ready-{name}"), move || {
                match vm.wait_for_text("CAIRN-READY", READY_WATCH) {
                    Ok(line) => {
                        let since = vm.started_at().elapsed().saturating_sub(line.at);
                        let at = unix_ms().saturating_sub(since.as_millis() as u64);
                        log(&format!(
                            "{node}: ready {:.1} s after QEMU start: {}",
                            line.at.as_secs_f64(),
                            line.text
                        ));
                        *ready.lock().unwrap_or_else(PoisonError::into_inner) = Some(Ready {
                            after_ms: line.at.as_millis() as u64,
                            unix_ms: at,
                            line: line.text,
                        });
                    }
                    Err(e) => log(&format!("{node}: no CAIRN-READY: {}", first_line(&e))),
                }
            });
        }
        slot.vm = Some(vm);
        Ok(())
    }

    fn start_external(&mut self, name: &str) -> Result<(), NodeError> {
        let ext = self
            .plan
            .external(name)
            .cloned()
            .ok_or_else(|| NodeError::Unknown {
                name: name.to_string(),
                known: self.plan.known_names(),
            })?;
        let Some(slot) = self.externals.get_mut(name) else {
            return Ok(());
        };
        if !slot.children.is_empty() {
            return Err(NodeError::Running(name.to_string()));
        }
        let log_path = self.state.responder_log(name);
        if let Some(parent) = log_path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        for listen in &ext.listen {
            let open = || {
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&log_path)
            };
            let io = |source| NodeError::Io {
                what: log_path.display().to_string(),
                source,
            };
            let out = open().map_err(io)?;
            let err = open().map_err(io)?;
            let child = Command::new("ip")
                .args(["netns", "exec", &ext.netns])
                .arg(&self.responder)
                .args(["--listen", &listen.to_string(), "--name", name])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .process_group(0)
                .spawn()
                .map_err(|source| NodeError::Io {
                    what: format!("starting {}", self.responder.display()),
                    source,
                })?;
            log(&format!(
                "{name}: responder on {listen} (pid {})",
                child.id()
            ));
            slot.children.push(child);
        }
        slot.exit = None;
        Ok(())
    }

    /// Serves `<state>/repo` from the client namespace at the site's update
    /// URL, when the plan says the client holds that address.
    fn start_repo(&mut self) -> Result<(), NodeError> {
        let Some(listen) = self.plan.client.repo else {
            return Ok(());
        };
        let dir = self.state.repo();
        let log_path = self.state.repo_log();
        let io = |what: String| move |source| NodeError::Io { what, source };
        std::fs::create_dir_all(&dir).map_err(io(dir.display().to_string()))?;
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent.display().to_string()))?;
        }
        let open = || {
            std::fs::File::options()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(io(log_path.display().to_string()))
        };
        let child = Command::new("ip")
            .args(["netns", "exec", &self.plan.client.netns])
            .arg(&self.responder)
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(open()?)
            .stderr(open()?)
            .process_group(0)
            .spawn()
            .map_err(io(format!("starting {}", self.responder.display())))?;
        log(&format!(
            "update repository {} served at http://{listen}/ (pid {})",
            dir.display(),
            child.id()
        ));
        self.repo = Some(child);
        Ok(())
    }

    fn stop_everything(&mut self) {
        if let Some(mut child) = self.repo.take() {
            let _ = child.kill();
            let _ = child.wait();
            log("update repository: server stopped");
        }
        for (name, slot) in &mut self.vms {
            if let Some(vm) = slot.vm.take() {
                match vm.kill() {
                    Ok(status) => log(&format!("{name}: QEMU stopped ({status})")),
                    Err(e) => log(&format!("{name}: {e}")),
                }
            }
            forget_runtime(&self.state, name);
        }
        for (name, slot) in &mut self.externals {
            for mut child in slot.children.drain(..) {
                let _ = child.kill();
                let _ = child.wait();
            }
            log(&format!("{name}: responders stopped"));
        }
    }

    fn status(&mut self) -> Vec<NodeStatus> {
        let mut out = Vec::new();
        for v in &self.plan.vms {
            let Some(slot) = self.vms.get(&v.name) else {
                continue;
            };
            let running = slot
                .vm
                .as_ref()
                .is_some_and(|vm| vm.exit_status().is_none());
            let exit = slot
                .vm
                .as_ref()
                .and_then(|vm| vm.exit_status())
                .map(|s| s.to_string())
                .or_else(|| slot.exit.clone());
            out.push(NodeStatus {
                name: v.name.clone(),
                kind: NodeKind::Vm,
                role: v.role.clone(),
                running,
                pid: slot.vm.as_ref().filter(|_| running).map(|vm| vm.pid()),
                boots: slot.boots,
                ready: slot
                    .ready
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
                link_up: slot.link_up,
                exit: if running { None } else { exit },
            });
        }
        for e in &self.plan.externals {
            let Some(slot) = self.externals.get_mut(&e.name) else {
                continue;
            };
            let mut exit = slot.exit.clone();
            for child in &mut slot.children {
                if let Ok(Some(status)) = child.try_wait() {
                    exit = Some(format!("responder pid {} exited: {status}", child.id()));
                }
            }
            let running = !slot.children.is_empty() && exit.is_none();
            out.push(NodeStatus {
                name: e.name.clone(),
                kind: NodeKind::External,
                role: "external".into(),
                running,
                pid: slot.children.first().map(Child::id),
                boots: 0,
                ready: None,
                link_up: slot.link_up,
                exit,
            });
        }
        out
    }
}

/// Removes the note of a stopped VM's runtime directory.
fn forget_runtime(state: &StateDir, node: &str) {
    let _ = std::fs::remove_file(state.vm_dir(node).join("runtime"));
}

fn first_line(e: &impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

fn spawn_thread(name: &str, body: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
    {
        log(&format!("cannot start thread {name}: {e}"));
    }
}
