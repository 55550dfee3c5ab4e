//! `cairnctl storage`: the storage role in one view: Gluster's peers and
//! their state, each volume's status, its bricks (online, port, pid) and the
//! entries waiting for self-heal, then a one-line verdict. Asks the gluster
//! CLI on the box with `--xml` (parsed by `cairn_storage::xml`). Gathering
//! does I/O; the verdict and both renderings are pure functions of
//! [`StorageState`].

use std::io::Write;
use std::path::Path;

use cairn_storage::gluster::Cli;
use cairn_storage::xml::{BrickHeal, Peer, ProcessStatus, VolumeInfo};
use serde_json::json;

use crate::table;

/// One volume and what was learnt about it.
#[derive(Debug, Clone)]
pub(crate) struct VolumeState {
    info: VolumeInfo,
    /// `volume status`: bricks and daemons; `Err` names why not.
    processes: Result<Vec<ProcessStatus>, String>,
    /// `volume heal info` (replicated and dispersed volumes only).
    heal: Option<Result<Vec<BrickHeal>, String>>,
}

/// Everything `cairnctl storage` shows.
#[derive(Debug, Clone)]
pub(crate) struct StorageState {
    /// Site node names by address (empty when the site cannot be read).
    names: Vec<(String, String)>,
    peers: Result<Vec<Peer>, String>,
    volumes: Result<Vec<VolumeState>, String>,
}

/// Asks glusterd through the CLI.
fn gather(cli: &Cli, site: &Path) -> StorageState {
    let names = cairn_site::load_site(site)
        .map(|s| {
            s.nodes
                .iter()
                .flat_map(|n| {
                    // Peers are known by address, or by the name glusterd
                    // found for it in /etc/hosts (`st1.cairn.test`).
                    let mut keys: Vec<String> =
                        n.addresses.iter().map(|a| a.addr.to_string()).collect();
                    keys.push(n.name.clone());
                    if let Some(d) = &s.cluster.domain {
                        keys.push(format!("{}.{d}", n.name));
                    }
                    keys.into_iter()
                        .map(|k| (k, n.name.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .unwrap_or_default();
    // glusterd refuses `peer status` while it probes an absent node (the
    // bootstrap does that now and then): ask again a few times.
    // Every CLI call is killed at its share of one budget, so the command always answers
    // (the lab's control channel gives a command 60 s); a part that ran out of time is
    // shown as an error, the rest as usual. `heal info` in particular can take long while
    // self-heal holds locks.
    let budget = Budget::new(GATHER_BUDGET);
    let mut peers = cli.peers_within(budget.next()).map_err(|e| e.to_string());
    for _ in 0..4 {
        if peers.is_ok() || budget.spent() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
        peers = cli.peers_within(budget.next()).map_err(|e| e.to_string());
    }
    let volumes = cli
        .volumes_within(budget.next())
        .map_err(|e| e.to_string())
        .map(|vs| {
            vs.into_iter()
                .map(|info| {
                    let processes = cli
                        .volume_status_within(&info.name, budget.next())
                        .map_err(|e| e.to_string());
                    let heal = (info.kind.contains("Replicate") || info.kind.contains("Disperse"))
                        .then(|| {
                            cli.heal_info_within(&info.name, budget.next())
                                .map_err(|e| e.to_string())
                        });
                    VolumeState {
                        info,
                        processes,
                        heal,
                    }
                })
                .collect()
        });
    StorageState {
        names,
        peers,
        volumes,
    }
}

/// The most `cairnctl storage` spends asking the Gluster CLI.
const GATHER_BUDGET: std::time::Duration = std::time::Duration::from_secs(40);
/// The most one CLI call may take out of the budget.
const CALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Time left for the CLI calls of one `cairnctl storage`.
struct Budget {
    end: std::time::Instant,
}

impl Budget {
    fn new(total: std::time::Duration) -> Self {
        Self {
            end: std::time::Instant::now() + total,
        }
    }

    /// The limit for the next call: [`CALL_LIMIT`] or what is left (at least 1 s, so a
    /// call past the budget fails quickly with a timeout instead of not being made).
    fn next(&self) -> std::time::Duration {
        let left = self
            .end
            .saturating_duration_since(std::time::Instant::now());
        left.min(CALL_LIMIT).max(std::time::Duration::from_secs(1))
    }

    fn spent(&self) -> bool {
        std::time::Instant::now() >= self.end
    }
}

/// `cairnctl storage [--json]`; fails (exit 1) when glusterd cannot be asked.
pub(crate) fn show(gluster: &Path, site: &Path, json: bool) -> anyhow::Result<()> {
    let cli = Cli {
        program: gluster.to_owned(),
        timeout_s: 20,
    };
    let state = gather(&cli, site);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &to_json(&state))?;
        writeln!(out)?;
    } else {
        out.write_all(render(&state).as_bytes())?;
    }
    out.flush()?;
    let errors: Vec<&str> = [state.peers.as_ref().err(), state.volumes.as_ref().err()]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(errors.join("; ")))
    }
}

impl StorageState {
    fn name_of(&self, host: &str) -> String {
        self.names
            .iter()
            .find(|(a, _)| a == host)
            .map_or_else(|| host.to_owned(), |(_, n)| n.clone())
    }
}

fn bricks_of(v: &VolumeState) -> Vec<&ProcessStatus> {
    v.processes
        .as_ref()
        .map(|p| p.iter().filter(|x| x.path.starts_with('/')).collect())
        .unwrap_or_default()
}

fn pending(v: &VolumeState) -> Option<u64> {
    match &v.heal {
        Some(Ok(h)) => Some(h.iter().filter_map(|b| b.entries).sum()),
        _ => None,
    }
}

/// The one-line summary: `healthy`, `healing`, `degraded`, `forming` or `down`.
pub(crate) fn verdict(s: &StorageState) -> String {
    let (Ok(peers), Ok(volumes)) = (&s.peers, &s.volumes) else {
        return "down: glusterd does not answer".to_owned();
    };
    let mut problems = Vec::new();
    for p in peers.iter().filter(|p| !p.in_cluster()) {
        let host = p.hostnames.first().map_or("?", String::as_str);
        problems.push(format!(
            "peer {} {}",
            s.name_of(host),
            if p.connected {
                p.state.clone()
            } else {
                "disconnected".to_owned()
            }
        ));
    }
    if volumes.is_empty() {
        let mut v = format!("forming: no volume yet, {} peer(s)", peers.len());
        if !problems.is_empty() {
            v.push_str(&format!(" ({})", problems.join(", ")));
        }
        return v;
    }
    let (mut online, mut total, mut heal) = (0, 0, 0);
    for v in volumes {
        if v.info.status != "Started" {
            problems.push(format!(
                "volume {} {}",
                v.info.name,
                v.info.status.to_lowercase()
            ));
        }
        let bricks = bricks_of(v);
        total += v.info.bricks.len();
        online += bricks.iter().filter(|b| b.online).count();
        if let Err(e) = &v.processes {
            problems.push(format!("volume {} status: {e}", v.info.name));
        }
        heal += pending(v).unwrap_or(0);
    }
    if online < total {
        problems.push(format!("{online}/{total} bricks online"));
    }
    if !problems.is_empty() {
        return format!("degraded: {}", problems.join(", "));
    }
    if heal > 0 {
        return format!("healing: {heal} entries pending, {online}/{total} bricks online");
    }
    format!(
        "healthy: {} volume(s) started, {online}/{total} bricks online, no pending heals",
        volumes.len()
    )
}

/// The human view.
pub(crate) fn render(s: &StorageState) -> String {
    let mut out = String::new();
    match &s.peers {
        Err(e) => out.push_str(&format!("peers: {e}\n")),
        Ok(peers) if peers.is_empty() => out.push_str("peers: none (a pool of one)\n"),
        Ok(peers) => {
            let mut rows = vec![
                ["PEER", "ADDRESS", "CONNECTED", "STATE", "UUID"]
                    .map(String::from)
                    .to_vec(),
            ];
            for p in peers {
                let host = p.hostnames.first().cloned().unwrap_or_default();
                rows.push(vec![
                    s.name_of(&host),
                    host,
                    if p.connected { "yes" } else { "no" }.to_owned(),
                    p.state.clone(),
                    p.uuid.clone(),
                ]);
            }
            out.push_str(&table::render(&rows));
        }
    }
    match &s.volumes {
        Err(e) => out.push_str(&format!("volumes: {e}\n")),
        Ok(vs) if vs.is_empty() => out.push_str("volumes: none yet\n"),
        Ok(vs) => {
            for v in vs {
                let bricks = bricks_of(v);
                out.push_str(&format!(
                    "\nvolume {}: {}, {}, {}/{} bricks online{}\n",
                    v.info.name,
                    v.info.kind,
                    v.info.status,
                    bricks.iter().filter(|b| b.online).count(),
                    v.info.bricks.len(),
                    pending(v).map_or_else(String::new, |n| format!(", {n} heal entries pending"))
                ));
                let mut rows = vec![
                    ["BRICK", "NODE", "ONLINE", "PORT", "PID", "HEAL"]
                        .map(String::from)
                        .to_vec(),
                ];
                for b in &v.info.bricks {
                    let (host, path) = b.split_once(':').unwrap_or((b.as_str(), ""));
                    let p = bricks.iter().find(|x| x.hostname == host && x.path == path);
                    let heal = match &v.heal {
                        Some(Ok(h)) => {
                            h.iter()
                                .find(|x| &x.brick == b)
                                .map_or("-".to_owned(), |x| {
                                    x.entries
                                        .map_or_else(|| x.status.clone(), |n| n.to_string())
                                })
                        }
                        _ => "-".to_owned(),
                    };
                    rows.push(vec![
                        b.clone(),
                        s.name_of(host),
                        if p.is_some_and(|p| p.online) {
                            "yes"
                        } else {
                            "no"
                        }
                        .to_owned(),
                        p.and_then(|p| p.port)
                            .map_or("-".to_owned(), |x| x.to_string()),
                        p.and_then(|p| p.pid)
                            .map_or("-".to_owned(), |x| x.to_string()),
                        heal,
                    ]);
                }
                out.push_str(&table::render(&rows));
                if let Err(e) = &v.processes {
                    out.push_str(&format!("status: {e}\n"));
                }
                if let Some(Err(e)) = &v.heal {
                    out.push_str(&format!("heal info: {e}\n"));
                }
                let daemons: Vec<String> = v
                    .processes
                    .as_ref()
                    .map(|p| {
                        p.iter()
                            .filter(|x| !x.path.starts_with('/'))
                            .map(|x| {
                                format!(
                                    "{} on {}: {}",
                                    x.hostname,
                                    s.name_of(&x.path),
                                    if x.online { "online" } else { "offline" }
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if !daemons.is_empty() {
                    out.push_str(&format!("{}\n", daemons.join(", ")));
                }
            }
        }
    }
    out.push_str(&format!("\n{}\n", verdict(s)));
    out
}

/// The `--json` shape: {verdict, peers, volumes: [{info, processes, heal}], errors}.
pub(crate) fn to_json(s: &StorageState) -> serde_json::Value {
    let mut errors = Vec::new();
    let peers = match &s.peers {
        Ok(p) => json!(p),
        Err(e) => {
            errors.push(e.clone());
            serde_json::Value::Null
        }
    };
    let volumes = match &s.volumes {
        Ok(vs) => json!(
            vs.iter()
                .map(|v| json!({
                    "info": v.info,
                    "bricks_online": bricks_of(v).iter().filter(|b| b.online).count(),
                    "processes": v.processes.as_ref().ok(),
                    "processes_error": v.processes.as_ref().err(),
                    "heal": v.heal.as_ref().and_then(|h| h.as_ref().ok()),
                    "heal_error": v.heal.as_ref().and_then(|h| h.as_ref().err()),
                    "heal_pending": pending(v),
                }))
                .collect::<Vec<_>>()
        ),
        Err(e) => {
            errors.push(e.clone());
            serde_json::Value::Null
        }
    };
    json!({
        "verdict": verdict(s),
        "peers": peers,
        "volumes": volumes,
        "errors": errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str, connected: bool) -> Peer {
        Peer {
            uuid: format!("u-{addr}"),
            hostnames: vec![addr.to_owned()],
            connected,
            state: "Peer in Cluster".to_owned(),
        }
    }

    fn brick(n: u8, online: bool) -> ProcessStatus {
        ProcessStatus {
            hostname: format!("192.0.2.3{n}"),
            path: "/var/lib/cairn/bricks/gv0/brick".to_owned(),
            online,
            port: online.then_some(49152),
            pid: online.then_some(800 + u32::from(n)),
        }
    }

    fn state(online3: bool, pending3: u64) -> StorageState {
        let info = VolumeInfo {
            name: "gv0".into(),
            status: "Started".into(),
            kind: "Replicate".into(),
            bricks: (1..=3)
                .map(|n| format!("192.0.2.3{n}:/var/lib/cairn/bricks/gv0/brick"))
                .collect(),
            options: Default::default(),
        };
        let heal = (1..=3u8)
            .map(|n| BrickHeal {
                brick: format!("192.0.2.3{n}:/var/lib/cairn/bricks/gv0/brick"),
                status: "Connected".into(),
                entries: Some(if n == 1 { pending3 } else { 0 }),
            })
            .collect();
        StorageState {
            names: (1..=3)
                .map(|n| (format!("192.0.2.3{n}"), format!("st{n}")))
                .collect(),
            peers: Ok(vec![peer("192.0.2.32", true), peer("192.0.2.33", online3)]),
            volumes: Ok(vec![VolumeState {
                info,
                processes: Ok(vec![
                    brick(1, true),
                    brick(2, true),
                    brick(3, online3),
                    ProcessStatus {
                        hostname: "Self-heal Daemon".into(),
                        path: "192.0.2.31".into(),
                        online: true,
                        port: None,
                        pid: Some(830),
                    },
                ]),
                heal: Some(Ok(heal)),
            }]),
        }
    }

    #[test]
    fn verdicts_follow_bricks_peers_and_heals() {
        assert_eq!(
            verdict(&state(true, 0)),
            "healthy: 1 volume(s) started, 3/3 bricks online, no pending heals"
        );
        assert_eq!(
            verdict(&state(true, 7)),
            "healing: 7 entries pending, 3/3 bricks online"
        );
        assert_eq!(
            verdict(&state(false, 7)),
            "degraded: peer st3 disconnected, 2/3 bricks online"
        );
        let mut down = state(true, 0);
        down.peers = Err("gluster peer status: Connection failed".into());
        assert_eq!(verdict(&down), "down: glusterd does not answer");
        let mut forming = state(true, 0);
        forming.volumes = Ok(Vec::new());
        assert_eq!(verdict(&forming), "forming: no volume yet, 2 peer(s)");
    }

    #[test]
    fn the_view_names_nodes_bricks_and_heals() {
        let text = render(&state(false, 3));
        assert!(
            text.starts_with("PEER  ADDRESS     CONNECTED  STATE"),
            "{text}"
        );
        assert!(text.contains("st3   192.0.2.33  no"), "{text}");
        assert!(
            text.contains(
                "volume gv0: Replicate, Started, 2/3 bricks online, 3 heal entries pending"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "192.0.2.31:/var/lib/cairn/bricks/gv0/brick  st1   yes     49152  801  3"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "192.0.2.33:/var/lib/cairn/bricks/gv0/brick  st3   no      -      -    0"
            ),
            "{text}"
        );
        assert!(text.contains("Self-heal Daemon on st1: online"), "{text}");
        let j = to_json(&state(true, 0));
        assert_eq!(j["volumes"][0]["bricks_online"], 3);
        assert_eq!(j["volumes"][0]["heal_pending"], 0);
        assert_eq!(j["peers"][1]["hostnames"][0], "192.0.2.33");
    }
}
