//! `cairnctl lb`: the load-balancer role in one view: cairn-vipd's virtual
//! routers (over `org.cairn.Vip1`) and HAProxy's frontends, backends and
//! servers (over its runtime API), with a one-line verdict.
//!
//! Both sources are asked at once; when one cannot be reached the other is
//! still shown, the error names the socket, and the command fails (exit 1).
//! Gathering does I/O; the verdict and both renderings are pure functions of
//! the gathered [`LbState`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_control::{ClientError, VipClient, VipInstanceStatus};
use cairn_haproxy::{Backend, Info, RuntimeClient, ServerState, Stats};
use serde_json::json;

use crate::table;

/// How long each source may take to answer (both are local sockets).
const TIMEOUT: Duration = Duration::from_secs(2);

/// Everything `cairnctl lb` shows: what each source answered, and why the others did not.
#[derive(Debug, Clone)]
pub(crate) struct LbState {
    /// cairn-vipd's instances; `None` when it could not be asked.
    vrrp: Option<Vec<VipInstanceStatus>>,
    /// HAProxy's state; `None` when it could not be asked.
    haproxy: Option<HaproxyState>,
    /// One entry per source that failed.
    errors: Vec<SourceError>,
}

/// What HAProxy's runtime API answered.
#[derive(Debug, Clone)]
struct HaproxyState {
    socket: PathBuf,
    info: Info,
    stats: Stats,
}

/// A source that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SourceError {
    /// `cairn-vipd` or `haproxy`.
    source: &'static str,
    /// The socket that was asked.
    socket: PathBuf,
    /// The error, naming the socket.
    message: String,
}

/// The one-line summary's category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VerdictState {
    /// VRRP master (of at least one instance) and every backend up.
    Serving,
    /// VRRP backup everywhere and every backend up: ready to take over.
    Standby,
    /// Anything else: a source unreachable, a backend or frontend down, VRRP not settled.
    Degraded,
}

impl VerdictState {
    fn as_str(self) -> &'static str {
        match self {
            VerdictState::Serving => "serving",
            VerdictState::Standby => "standby",
            VerdictState::Degraded => "degraded",
        }
    }
}

/// The category and the line shown under the view.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    state: VerdictState,
    text: String,
}

/// Asks both sources, prints the view (or JSON), and fails naming every
/// unreachable socket.
pub(crate) fn show(haproxy_socket: &Path, vip_socket: &Path, json: bool) -> anyhow::Result<()> {
    let state = gather(haproxy_socket, vip_socket);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &to_json(&state))?;
        writeln!(out)?;
    } else {
        out.write_all(render(&state).as_bytes())?;
    }
    out.flush()?;
    if state.errors.is_empty() {
        Ok(())
    } else {
        let messages: Vec<&str> = state.errors.iter().map(|e| e.message.as_str()).collect();
        Err(anyhow::anyhow!(messages.join("; ")))
    }
}

/// Asks cairn-vipd and HAProxy in parallel (each bounded by [`TIMEOUT`]).
fn gather(haproxy_socket: &Path, vip_socket: &Path) -> LbState {
    let (vrrp, haproxy) = std::thread::scope(|scope| {
        let vrrp = scope.spawn(|| read_vrrp(vip_socket));
        let haproxy = read_haproxy(haproxy_socket);
        let vrrp = vrrp.join().unwrap_or_else(|_| {
            Err(SourceError {
                source: "cairn-vipd",
                socket: vip_socket.to_owned(),
                message: "reading cairn-vipd's state panicked".to_owned(),
            })
        });
        (vrrp, haproxy)
    });
    let mut errors = Vec::new();
    let vrrp = match vrrp {
        Ok(instances) => Some(instances),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let haproxy = match haproxy {
        Ok(state) => Some(state),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    LbState {
        vrrp,
        haproxy,
        errors,
    }
}

fn read_vrrp(socket: &Path) -> Result<Vec<VipInstanceStatus>, SourceError> {
    VipClient::connect_with_timeout(socket, TIMEOUT)
        .and_then(|client| client.instances())
        .map_err(|e| SourceError {
            source: "cairn-vipd",
            socket: socket.to_owned(),
            message: explain_vip_error(socket, e),
        })
}

/// "Nothing listens there" becomes a hint about the role; other errors get the socket added.
fn explain_vip_error(socket: &Path, error: ClientError) -> String {
    match error {
        ClientError::Connect { source, .. } => {
            let reason = match source.raw_os_error() {
                Some(code) => nix::errno::Errno::from_raw(code).desc().to_owned(),
                None => source.to_string(),
            };
            format!(
                "cannot reach cairn-vipd at {}: {reason} — is the lb role running?",
                socket.display()
            )
        }
        other => format!("cairn-vipd at {}: {other}", socket.display()),
    }
}

fn read_haproxy(socket: &Path) -> Result<HaproxyState, SourceError> {
    let client = RuntimeClient::with_timeout(socket, TIMEOUT);
    let error = |e: cairn_haproxy::ClientError| SourceError {
        source: "haproxy",
        socket: socket.to_owned(),
        message: e.to_string(),
    };
    let info = client.show_info().map_err(error)?;
    let stats = client.show_stat().map_err(error)?;
    Ok(HaproxyState {
        socket: socket.to_owned(),
        info,
        stats,
    })
}

/// Sums up the state in one line; see [`VerdictState`] for the categories.
fn verdict(state: &LbState) -> Verdict {
    let mut problems = Vec::new();
    for error in &state.errors {
        problems.push(format!("{} unreachable", error.source));
    }
    let mut backends_summary = String::new();
    if let Some(haproxy) = &state.haproxy {
        let backends = &haproxy.stats.backends;
        if backends.is_empty() {
            problems.push("no backends".to_owned());
        }
        for frontend in &haproxy.stats.frontends {
            if frontend.status != "OPEN" {
                problems.push(format!("frontend {} {}", frontend.name, frontend.status));
            }
        }
        for backend in backends.iter().filter(|b| !b.is_up()) {
            problems.push(format!("backend {} down", backend.name));
        }
        if haproxy.info.stopping {
            problems.push("haproxy stopping".to_owned());
        }
        let up = backends.iter().filter(|b| b.is_up()).count();
        backends_summary = format!("{up}/{} backends up", backends.len());
        let servers = || backends.iter().flat_map(|b| &b.servers);
        let down = servers()
            .filter(|s| {
                matches!(
                    s.state,
                    ServerState::Down | ServerState::GoingUp | ServerState::Unknown
                )
            })
            .count();
        let maint = servers()
            .filter(|s| {
                matches!(
                    s.state,
                    ServerState::Maint | ServerState::Drain | ServerState::NoLb
                )
            })
            .count();
        if down > 0 {
            backends_summary.push_str(&format!(", {down} {} down", plural(down, "server")));
        }
        if maint > 0 {
            backends_summary.push_str(&format!(
                ", {maint} {} in maintenance",
                plural(maint, "server")
            ));
        }
    }
    let (mut masters, mut backups) = (0, 0);
    if let Some(instances) = &state.vrrp {
        if instances.is_empty() {
            problems.push("no VRRP instances".to_owned());
        }
        for instance in instances {
            match instance.state.as_str() {
                "master" => masters += 1,
                "backup" => backups += 1,
                other => problems.push(format!("VRRP {} {other}", instance.name)),
            }
        }
    }
    if !problems.is_empty() {
        return Verdict {
            state: VerdictState::Degraded,
            text: format!("degraded: {}", problems.join(", ")),
        };
    }
    if masters > 0 {
        let of = if backups > 0 {
            format!(" ({masters}/{} instances)", masters + backups)
        } else {
            String::new()
        };
        Verdict {
            state: VerdictState::Serving,
            text: format!("serving: {backends_summary}, VRRP master{of}"),
        }
    } else {
        Verdict {
            state: VerdictState::Standby,
            text: format!("standby: backup, {backends_summary}"),
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

/// The `--json` object: `{verdict, vrrp, haproxy, errors}`; a source that could
/// not be read is `null` and has an entry in `errors`.
fn to_json(state: &LbState) -> serde_json::Value {
    let verdict = verdict(state);
    json!({
        "verdict": { "state": verdict.state.as_str(), "text": verdict.text },
        "vrrp": state.vrrp,
        "haproxy": state.haproxy.as_ref().map(|h| json!({
            "socket": h.socket,
            "info": h.info,
            "frontends": h.stats.frontends,
            "backends": h.stats.backends,
        })),
        "errors": state.errors.iter().map(|e| json!({
            "source": e.source,
            "socket": e.socket,
            "message": e.message,
        })).collect::<Vec<_>>(),
    })
}

/// The text view: VRRP, HAProxy (frontends, backends, then each backend's
/// servers), and the verdict.
fn render(state: &LbState) -> String {
    let mut text = String::new();
    let error_of = |source: &str| state.errors.iter().find(|e| e.source == source);
    text.push_str("VRRP\n");
    match (&state.vrrp, error_of("cairn-vipd")) {
        (Some(instances), _) => text.push_str(&indent(&vrrp_table(instances))),
        (None, Some(error)) => text.push_str(&format!("  error: {}\n", error.message)),
        (None, None) => {}
    }
    text.push('\n');
    match (&state.haproxy, error_of("haproxy")) {
        (Some(haproxy), _) => push_haproxy(&mut text, haproxy),
        (None, Some(error)) => text.push_str(&format!("HAProxy\n  error: {}\n", error.message)),
        (None, None) => {}
    }
    text.push('\n');
    text.push_str(&verdict(state).text);
    text.push('\n');
    text
}

fn vrrp_table(instances: &[VipInstanceStatus]) -> String {
    crate::vip::instances_table(instances)
}

fn push_haproxy(text: &mut String, haproxy: &HaproxyState) {
    let info = &haproxy.info;
    let mut facts = Vec::new();
    if let Some(uptime) = info.uptime_s {
        facts.push(format!("up {}", short_duration(uptime)));
    }
    if let Some(pid) = info.pid {
        facts.push(format!("pid {pid}"));
    }
    if let Some(threads) = info.threads {
        facts.push(format!("{threads} {}", plural(threads as usize, "thread")));
    }
    if let (Some(now), Some(total)) = (info.current_connections, info.total_connections) {
        facts.push(format!("{now} connections ({total} since start)"));
    }
    if info.stopping {
        facts.push("stopping".to_owned());
    }
    text.push_str(&format!("HAProxy {}", info.version));
    if !facts.is_empty() {
        text.push_str(&format!(": {}", facts.join(", ")));
    }
    text.push('\n');

    let mut rows = vec![
        [
            "FRONTEND",
            "STATUS",
            "MODE",
            "SESSIONS(cur/total)",
            "BYTES(in/out)",
        ]
        .map(str::to_owned),
    ];
    for f in &haproxy.stats.frontends {
        rows.push([
            f.name.clone(),
            f.status.clone(),
            f.mode.clone().unwrap_or_else(|| "-".to_owned()),
            format!(
                "{}/{}",
                f.traffic.current_sessions, f.traffic.total_sessions
            ),
            format!("{}/{}", f.traffic.bytes_in, f.traffic.bytes_out),
        ]);
    }
    text.push_str(&indent(&table::render(&rows)));
    text.push('\n');

    let mut rows = vec![
        [
            "BACKEND",
            "STATUS",
            "SERVERS(up/all)",
            "SESSIONS(cur/total)",
            "BYTES(in/out)",
        ]
        .map(str::to_owned),
    ];
    for b in &haproxy.stats.backends {
        rows.push([
            b.name.clone(),
            b.status.clone(),
            format!("{}/{}", b.servers_in_rotation(), b.servers.len()),
            format!(
                "{}/{}",
                b.traffic.current_sessions, b.traffic.total_sessions
            ),
            format!("{}/{}", b.traffic.bytes_in, b.traffic.bytes_out),
        ]);
    }
    text.push_str(&indent(&table::render(&rows)));
    for b in &haproxy.stats.backends {
        text.push('\n');
        push_servers(text, b);
    }
}

/// `  name:` then one aligned line per server:
/// `web1  192.0.2.21:8080  UP  (L7OK 200 0ms)  weight 1  sessions 0/2`.
fn push_servers(text: &mut String, backend: &Backend) {
    text.push_str(&format!("  {}:\n", backend.name));
    if backend.servers.is_empty() {
        text.push_str("    no servers\n");
        return;
    }
    let rows: Vec<[String; 6]> = backend
        .servers
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.address.clone().unwrap_or_else(|| "-".to_owned()),
                s.status.clone(),
                s.check
                    .as_ref()
                    .map(|c| format!("({})", c.summary()))
                    .unwrap_or_default(),
                s.weight.map(|w| format!("weight {w}")).unwrap_or_default(),
                format!(
                    "sessions {}/{}",
                    s.traffic.current_sessions, s.traffic.total_sessions
                ),
            ]
        })
        .collect();
    for line in table::render(&rows).lines() {
        text.push_str(&format!("    {line}\n"));
    }
}

/// Every line of `block` indented by two spaces.
fn indent(block: &str) -> String {
    block.lines().map(|line| format!("  {line}\n")).collect()
}

/// A short human duration from seconds: `42s`, `2m05s`, `1h02m`, `3d04h`.
fn short_duration(seconds: u64) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    match seconds {
        s if s < MINUTE => format!("{s}s"),
        s if s < HOUR => format!("{}m{:02}s", s / MINUTE, s % MINUTE),
        s if s < DAY => format!("{}h{:02}m", s / HOUR, s % HOUR / MINUTE),
        s => format!("{}d{:02}h", s / DAY, s % DAY / HOUR),
    }
}

#[cfg(test)]
mod tests {
    use cairn_haproxy::{parse_info, parse_stat};

    use super::*;

    const INFO: &str = include_str!("../../haproxy/fixtures/show-info.txt");
    /// web1 UP (L7OK), web2 DOWN (L4CON); db1 UP (L4OK), db2 without checks.
    const CHECKS: &str = include_str!("../../haproxy/fixtures/show-stat-checks.csv");
    /// web3 L7STS, web4 MAINT, backend api DOWN, some traffic.
    const MIXED: &str = include_str!("../../haproxy/fixtures/show-stat-mixed.csv");

    fn instance(name: &str, state: &str) -> VipInstanceStatus {
        VipInstanceStatus {
            name: name.into(),
            vrid: 51,
            interface: "eth1".into(),
            state: state.into(),
            priority: 100,
            effective_priority: 90,
            master: "192.0.2.2".into(),
            vips: vec!["192.0.2.10/24".into()],
            checks: vec!["haproxy=ok".into()],
            counters: vec![("adverts_tx".into(), 12)],
            in_state_ms: 125_000,
            maintenance: false,
        }
    }

    fn haproxy(stat: &str) -> HaproxyState {
        HaproxyState {
            socket: "/run/haproxy/admin.sock".into(),
            info: parse_info(INFO).unwrap(),
            stats: parse_stat(stat).unwrap(),
        }
    }

    fn state(vrrp: &[(&str, &str)], stat: &str) -> LbState {
        LbState {
            vrrp: Some(vrrp.iter().map(|(n, s)| instance(n, s)).collect()),
            haproxy: Some(haproxy(stat)),
            errors: vec![],
        }
    }

    fn vipd_error() -> SourceError {
        SourceError {
            source: "cairn-vipd",
            socket: "/run/cairn/vipd.sock".into(),
            message: "cannot reach cairn-vipd at /run/cairn/vipd.sock: No such file or directory — is the lb role running?".into(),
        }
    }

    fn haproxy_error() -> SourceError {
        SourceError {
            source: "haproxy",
            socket: "/run/haproxy/admin.sock".into(),
            message: "cannot reach haproxy at /run/haproxy/admin.sock: Connection refused".into(),
        }
    }

    #[test]
    fn golden_view_of_a_serving_master() {
        assert_eq!(
            render(&state(&[("lb-v4", "master")], CHECKS)),
            "VRRP\n\
             \x20 NAME   VRID  IF    STATE   PRIO(eff/conf)  MASTER     VIPS           IN-STATE\n\
             \x20 lb-v4  51    eth1  master  90/100          192.0.2.2  192.0.2.10/24  2m05s\n\
             \n\
             HAProxy 2.6.12-1+deb12u3: up 4s, pid 24826, 2 threads, 0 connections (14 since start)\n\
             \x20 FRONTEND  STATUS  MODE  SESSIONS(cur/total)  BYTES(in/out)\n\
             \x20 web       OPEN    http  0/0                  0/0\n\
             \x20 db        OPEN    tcp   0/0                  0/0\n\
             \n\
             \x20 BACKEND  STATUS  SERVERS(up/all)  SESSIONS(cur/total)  BYTES(in/out)\n\
             \x20 web      UP      1/2              0/0                  0/0\n\
             \x20 db       UP      2/2              0/0                  0/0\n\
             \n\
             \x20 web:\n\
             \x20   web1  192.0.2.21:8080  UP    (L7OK 200 0ms)              weight 1  sessions 0/0\n\
             \x20   web2  192.0.2.22:8080  DOWN  (L4CON Connection refused)  weight 1  sessions 0/0\n\
             \n\
             \x20 db:\n\
             \x20   db1  192.0.2.21:8080  UP        (L4OK 0ms)  weight 1  sessions 0/0\n\
             \x20   db2  192.0.2.22:8080  no check              weight 1  sessions 0/0\n\
             \n\
             serving: 2/2 backends up, 1 server down, VRRP master\n"
        );
    }

    #[test]
    fn golden_view_without_vipd_still_shows_haproxy() {
        let mut lb = state(&[], MIXED);
        lb.vrrp = None;
        lb.errors = vec![vipd_error()];
        assert_eq!(
            render(&lb),
            "VRRP\n\
             \x20 error: cannot reach cairn-vipd at /run/cairn/vipd.sock: No such file or directory — is the lb role running?\n\
             \n\
             HAProxy 2.6.12-1+deb12u3: up 4s, pid 24826, 2 threads, 0 connections (14 since start)\n\
             \x20 FRONTEND  STATUS  MODE  SESSIONS(cur/total)  BYTES(in/out)\n\
             \x20 web       OPEN    http  0/3                  234/219\n\
             \x20 api       OPEN    tcp   0/0                  0/0\n\
             \n\
             \x20 BACKEND  STATUS  SERVERS(up/all)  SESSIONS(cur/total)  BYTES(in/out)\n\
             \x20 web      UP      1/4              0/3                  234/219\n\
             \x20 api      DOWN    0/2              0/0                  0/0\n\
             \n\
             \x20 web:\n\
             \x20   web1  192.0.2.21:8080  UP     (L7OK 200 0ms)                   weight 1  sessions 0/2\n\
             \x20   web2  192.0.2.22:8080  DOWN   (L4CON Connection refused)       weight 1  sessions 0/0\n\
             \x20   web3  192.0.2.21:8081  DOWN   (L7STS 503 Service Unavailable)  weight 1  sessions 0/0\n\
             \x20   web4  192.0.2.21:8080  MAINT                                   weight 1  sessions 0/1\n\
             \n\
             \x20 api:\n\
             \x20   api1  192.0.2.22:9000     DOWN  (L4CON Connection refused)  weight 1  sessions 0/0\n\
             \x20   api2  [2001:db8::5]:9000  DOWN  (L4CON Connection refused)  weight 1  sessions 0/0\n\
             \n\
             degraded: cairn-vipd unreachable, backend api down\n"
        );
    }

    #[test]
    fn golden_view_without_haproxy_still_shows_vrrp() {
        let lb = LbState {
            vrrp: Some(vec![instance("lb-v4", "backup")]),
            haproxy: None,
            errors: vec![haproxy_error()],
        };
        assert_eq!(
            render(&lb),
            "VRRP\n\
             \x20 NAME   VRID  IF    STATE   PRIO(eff/conf)  MASTER     VIPS           IN-STATE\n\
             \x20 lb-v4  51    eth1  backup  90/100          192.0.2.2  192.0.2.10/24  2m05s\n\
             \n\
             HAProxy\n\
             \x20 error: cannot reach haproxy at /run/haproxy/admin.sock: Connection refused\n\
             \n\
             degraded: haproxy unreachable\n"
        );
    }

    #[test]
    fn verdicts() {
        let cases: [(LbState, VerdictState, &str); 6] = [
            (
                state(&[("lb-v4", "backup")], CHECKS),
                VerdictState::Standby,
                "standby: backup, 2/2 backends up, 1 server down",
            ),
            (
                state(&[("lb-v4", "master"), ("lb-v6", "backup")], CHECKS),
                VerdictState::Serving,
                "serving: 2/2 backends up, 1 server down, VRRP master (1/2 instances)",
            ),
            (
                state(&[("lb-v4", "initialize")], CHECKS),
                VerdictState::Degraded,
                "degraded: VRRP lb-v4 initialize",
            ),
            (
                state(&[], CHECKS),
                VerdictState::Degraded,
                "degraded: no VRRP instances",
            ),
            (
                state(&[("lb-v4", "master")], MIXED),
                VerdictState::Degraded,
                "degraded: backend api down",
            ),
            (
                LbState {
                    vrrp: None,
                    haproxy: None,
                    errors: vec![vipd_error(), haproxy_error()],
                },
                VerdictState::Degraded,
                "degraded: cairn-vipd unreachable, haproxy unreachable",
            ),
        ];
        for (lb, expected_state, expected_text) in cases {
            let v = verdict(&lb);
            assert_eq!((v.state, v.text.as_str()), (expected_state, expected_text));
        }
    }

    #[test]
    fn every_server_up_and_maintenance_are_counted() {
        let mut lb = state(&[("lb-v4", "master")], MIXED);
        let stats = &mut lb.haproxy.as_mut().unwrap().stats;
        stats.backends.retain(|b| b.name == "web");
        assert_eq!(
            verdict(&lb).text,
            "serving: 1/1 backends up, 2 servers down, 1 server in maintenance, VRRP master"
        );
        let stats = &mut lb.haproxy.as_mut().unwrap().stats;
        stats.backends[0].servers.truncate(1);
        assert_eq!(verdict(&lb).text, "serving: 1/1 backends up, VRRP master");
        let stats = &mut lb.haproxy.as_mut().unwrap().stats;
        stats.frontends[0].status = "STOP".into();
        assert_eq!(verdict(&lb).text, "degraded: frontend web STOP");
    }

    #[test]
    fn json_shape() {
        let value = to_json(&state(&[("lb-v4", "master")], CHECKS));
        let mut keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort_unstable();
        assert_eq!(keys, ["errors", "haproxy", "verdict", "vrrp"]);
        assert_eq!(value["verdict"]["state"], "serving");
        assert_eq!(value["vrrp"][0]["name"], "lb-v4");
        assert_eq!(value["vrrp"][0]["state"], "master");
        assert_eq!(value["haproxy"]["socket"], "/run/haproxy/admin.sock");
        assert_eq!(value["haproxy"]["info"]["version"], "2.6.12-1+deb12u3");
        assert_eq!(value["haproxy"]["frontends"][0]["name"], "web");
        let web2 = &value["haproxy"]["backends"][0]["servers"][1];
        assert_eq!(web2["name"], "web2");
        assert_eq!(web2["address"], "192.0.2.22:8080");
        assert_eq!(web2["state"], "down");
        assert_eq!(web2["check"]["status"], "L4CON");
        assert_eq!(value["errors"], json!([]));

        let mut lb = state(&[], CHECKS);
        lb.vrrp = None;
        lb.errors = vec![vipd_error()];
        let value = to_json(&lb);
        assert_eq!(value["vrrp"], serde_json::Value::Null);
        assert_eq!(value["verdict"]["state"], "degraded");
        assert_eq!(
            value["errors"],
            json!([{
                "source": "cairn-vipd",
                "socket": "/run/cairn/vipd.sock",
                "message": vipd_error().message,
            }])
        );
    }

    #[test]
    fn durations_in_seconds() {
        assert_eq!(short_duration(0), "0s");
        assert_eq!(short_duration(59), "59s");
        assert_eq!(short_duration(125), "2m05s");
        assert_eq!(short_duration(3_720), "1h02m");
        assert_eq!(short_duration(3 * 86_400 + 4 * 3_600), "3d04h");
    }

    #[test]
    fn vipd_errors_other_than_connect_name_the_socket() {
        let message = explain_vip_error(
            Path::new("/run/cairn/vipd.sock"),
            ClientError::AccessDenied("no".into()),
        );
        assert_eq!(
            message,
            "cairn-vipd at /run/cairn/vipd.sock: access denied: no"
        );
    }
}
