//! `show stat`: HAProxy's CSV of frontends, backends and servers, parsed into
//! typed values grouped the way an operator reads them (a backend with its
//! servers).
//!
//! The first line is the header (`# pxname,svname,...`); columns are found by
//! name, so fields HAProxy adds in later versions do not move anything. Rows
//! follow in proxy order: a frontend's `FRONTEND` row, then each server of the
//! backend, then its `BACKEND` row. Empty fields mean "not applicable" (a
//! frontend has no weight, a server without checks has no check status).

use std::collections::HashMap;
use std::str::FromStr;

use serde::Serialize;

use crate::csv::split_line;

/// Why a `show stat` reply could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatError {
    /// The reply does not start with the CSV header; HAProxy answered something
    /// else (an unknown command's help, `Permission denied`, ...).
    #[error("not a `show stat` reply (first line {first_line:?})")]
    NoHeader {
        /// The reply's first line.
        first_line: String,
    },
    /// The header lacks a column this parser needs.
    #[error("the `show stat` header has no `{column}` column")]
    MissingColumn {
        /// The column's name.
        column: &'static str,
    },
    /// A numeric field holds something else.
    #[error("line {line}: column `{column}` is {value:?}, not a number")]
    BadNumber {
        /// 1-based line of the reply.
        line: usize,
        /// The column's name.
        column: &'static str,
        /// The field as received.
        value: String,
    },
    /// The `type` field is not 0 to 3.
    #[error("line {line}: unknown row type {value:?}")]
    BadType {
        /// 1-based line of the reply.
        line: usize,
        /// The field as received.
        value: String,
    },
    /// A server row whose proxy has no `BACKEND` row.
    #[error("line {line}: server {proxy}/{server} belongs to no backend")]
    OrphanServer {
        /// 1-based line of the reply.
        line: usize,
        /// The proxy named in the row.
        proxy: String,
        /// The server's name.
        server: String,
    },
}

/// Everything `show stat` reports, in HAProxy's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Proxies that accept connections (`frontend` and the front of `listen`).
    pub frontends: Vec<Frontend>,
    /// Proxies that forward connections, each with its servers.
    pub backends: Vec<Backend>,
}

impl Stats {
    /// The backend called `name`, if any.
    pub fn backend(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name == name)
    }
}

/// Session and byte counters, the same for frontends, backends and servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Sessions open now (`scur`).
    pub current_sessions: u64,
    /// Most sessions open at once since start (`smax`).
    pub max_sessions: u64,
    /// Configured session limit (`slim`), if any.
    pub session_limit: Option<u64>,
    /// Sessions since start (`stot`).
    pub total_sessions: u64,
    /// Bytes received from clients or servers (`bin`).
    pub bytes_in: u64,
    /// Bytes sent (`bout`).
    pub bytes_out: u64,
}

/// One frontend (`FRONTEND` row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Frontend {
    /// The proxy's name.
    pub name: String,
    /// `OPEN`, `STOP` (disabled or stopping) or `FULL` (at its session limit).
    pub status: String,
    /// `http` or `tcp`.
    pub mode: Option<String>,
    /// Its counters.
    pub traffic: Traffic,
}

/// One backend (`BACKEND` row) with its servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backend {
    /// The proxy's name.
    pub name: String,
    /// `UP` while at least one server can take traffic, else `DOWN`.
    pub status: String,
    /// `http` or `tcp`.
    pub mode: Option<String>,
    /// The balance algorithm (`algo`), e.g. `roundrobin`.
    pub balance: Option<String>,
    /// Active servers that are up (`act`).
    pub active_servers_up: u32,
    /// Backup servers that are up (`bck`).
    pub backup_servers_up: u32,
    /// Seconds since the status last changed (`lastchg`).
    pub last_change_s: Option<u64>,
    /// Seconds spent down since start (`downtime`).
    pub downtime_s: Option<u64>,
    /// Its counters (all its servers together).
    pub traffic: Traffic,
    /// Its servers, in config order.
    pub servers: Vec<Server>,
}

impl Backend {
    /// Whether HAProxy reports the backend up (it can serve).
    pub fn is_up(&self) -> bool {
        self.status == "UP"
    }

    /// How many of its servers take new traffic (see [`ServerState::in_rotation`]).
    pub fn servers_in_rotation(&self) -> usize {
        self.servers
            .iter()
            .filter(|s| s.state.in_rotation())
            .count()
    }
}

/// One server of a backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    /// The server's name.
    pub name: String,
    /// Its address as HAProxy prints it: `192.0.2.21:8080`, `[2001:db8::5]:9000`.
    pub address: Option<String>,
    /// The status text as HAProxy prints it: `UP`, `UP 1/2`, `DOWN`, `MAINT`,
    /// `MAINT (via web/web1)`, `DRAIN`, `no check`, ...
    pub status: String,
    /// The status as a value.
    pub state: ServerState,
    /// The last health check, when checks are enabled (and not paused by maintenance).
    pub check: Option<Check>,
    /// Effective weight (`weight`); 0 while draining.
    pub weight: Option<u32>,
    /// Whether it is a backup server (used only when no active server is up).
    pub backup: bool,
    /// Seconds since the status last changed (`lastchg`).
    pub last_change_s: Option<u64>,
    /// Its counters.
    pub traffic: Traffic,
}

/// A server's status as a value, from HAProxy's status text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// `UP`: checks pass.
    Up,
    /// `UP n/m`: still up, but recent checks failed (n of m more to go down).
    GoingDown,
    /// `DOWN`, `DOWN (agent)`: checks fail; no traffic.
    Down,
    /// `DOWN n/m`: still down, but recent checks passed.
    GoingUp,
    /// `NOLB`, `NOLB n/m`: up, but answering checks with "no load balancing".
    NoLb,
    /// `DRAIN`, `DRAIN n/m`, `DRAIN (agent)`: up, weight 0: finishes its sessions, gets no new ones.
    Drain,
    /// `MAINT`, `MAINT (via px/srv)`, `MAINT (resolution)`: taken out by an operator,
    /// a tracked server or DNS.
    Maint,
    /// `no check`: checks are off, so HAProxy assumes it up.
    NoCheck,
    /// Any other text (a newer HAProxy).
    Unknown,
}

impl ServerState {
    /// Reads HAProxy's status text (`srv_hlt_st` and the `MAINT` forms in src/stats*.c).
    pub fn from_status(status: &str) -> Self {
        let word = status.split(' ').next().unwrap_or_default();
        let counted = status[word.len()..]
            .trim_start()
            .starts_with(|c: char| c.is_ascii_digit());
        match word {
            "UP" if counted => ServerState::GoingDown,
            "UP" => ServerState::Up,
            "DOWN" if counted => ServerState::GoingUp,
            "DOWN" => ServerState::Down,
            "NOLB" => ServerState::NoLb,
            "DRAIN" => ServerState::Drain,
            "MAINT" => ServerState::Maint,
            "no" if status == "no check" => ServerState::NoCheck,
            _ => ServerState::Unknown,
        }
    }

    /// Whether HAProxy sends new connections to a server in this state.
    pub fn in_rotation(self) -> bool {
        matches!(
            self,
            ServerState::Up | ServerState::GoingDown | ServerState::NoCheck
        )
    }
}

/// The last health check of a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Result code: `L4OK`, `L4CON` (refused), `L4TOUT`, `L7OK`, `L7STS` (bad
    /// HTTP status), `INI` (not run yet), ... (`check_status`).
    pub status: String,
    /// Whether a new check is running right now (HAProxy's `* ` prefix).
    pub in_progress: bool,
    /// Layer 5-7 code, e.g. the HTTP status (`check_code`).
    pub code: Option<u32>,
    /// How long the check took, ms (`check_duration`).
    pub duration_ms: Option<u64>,
    /// What went wrong, e.g. `Connection refused` (`last_chk`).
    pub info: Option<String>,
    /// HAProxy's description of the result, e.g. `Layer4 connection problem` (`check_desc`).
    pub description: Option<String>,
}

impl Check {
    /// One short line: `L4OK 0ms`, `L7OK 200 1ms`, `L4CON Connection refused`,
    /// `L7STS 503 Service Unavailable`: the code, then what failed if anything
    /// did, otherwise the duration.
    pub fn summary(&self) -> String {
        let mut text = self.status.clone();
        if let Some(code) = self.code {
            text.push_str(&format!(" {code}"));
        }
        match (&self.info, self.duration_ms) {
            (Some(info), _) => text.push_str(&format!(" {info}")),
            (None, Some(ms)) => text.push_str(&format!(" {ms}ms")),
            (None, None) => {}
        }
        text
    }
}

/// The `type` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowType {
    Frontend,
    Backend,
    Server,
    Listener,
}

/// Columns this parser needs; the others are optional.
const REQUIRED: [&str; 4] = ["pxname", "svname", "type", "status"];

/// Parses a whole `show stat` reply.
pub fn parse_stat(reply: &str) -> Result<Stats, StatError> {
    let mut lines = reply.lines().enumerate();
    let header = lines
        .next()
        .map(|(_, l)| l)
        .unwrap_or_default()
        .strip_prefix("# ")
        .filter(|h| h.starts_with("pxname,"))
        .ok_or_else(|| StatError::NoHeader {
            first_line: reply.lines().next().unwrap_or_default().to_owned(),
        })?;
    let columns: HashMap<String, usize> = split_line(header)
        .into_iter()
        .enumerate()
        .filter(|(_, name)| !name.is_empty())
        .map(|(i, name)| (name, i))
        .collect();
    for column in REQUIRED {
        if !columns.contains_key(column) {
            return Err(StatError::MissingColumn { column });
        }
    }

    let mut frontends = Vec::new();
    let mut backends: Vec<Backend> = Vec::new();
    // Servers come before their backend's row; keep them until it arrives.
    let mut pending: Vec<(usize, String, Server)> = Vec::new();
    for (index, line) in lines {
        if line.is_empty() {
            continue;
        }
        let row = Row {
            columns: &columns,
            fields: split_line(line),
            line: index + 1,
        };
        match row.row_type()? {
            RowType::Frontend => frontends.push(Frontend {
                name: row.text("pxname").to_owned(),
                status: row.text("status").to_owned(),
                mode: row.optional_text("mode"),
                traffic: row.traffic()?,
            }),
            RowType::Server => {
                pending.push((row.line, row.text("pxname").to_owned(), row.server()?))
            }
            RowType::Backend => {
                let name = row.text("pxname").to_owned();
                let mut servers = Vec::new();
                pending.retain(|(_, proxy, server)| {
                    if *proxy == name {
                        servers.push(server.clone());
                        false
                    } else {
                        true
                    }
                });
                backends.push(Backend {
                    status: row.text("status").to_owned(),
                    mode: row.optional_text("mode"),
                    balance: row.optional_text("algo"),
                    active_servers_up: row.number("act")?.unwrap_or(0),
                    backup_servers_up: row.number("bck")?.unwrap_or(0),
                    last_change_s: row.number("lastchg")?,
                    downtime_s: row.number("downtime")?,
                    traffic: row.traffic()?,
                    servers,
                    name,
                });
            }
            // Per-listener rows appear only with `option socket-stats`; the
            // frontend row already sums them.
            RowType::Listener => {}
        }
    }
    if let Some((line, proxy, server)) = pending.into_iter().next() {
        return Err(StatError::OrphanServer {
            line,
            proxy,
            server: server.name,
        });
    }
    Ok(Stats {
        frontends,
        backends,
    })
}

/// One data line with the header's column positions.
struct Row<'a> {
    columns: &'a HashMap<String, usize>,
    fields: Vec<String>,
    line: usize,
}

impl Row<'_> {
    /// The field of `column`, `""` when the column or the field is missing.
    fn text(&self, column: &str) -> &str {
        self.columns
            .get(column)
            .and_then(|&i| self.fields.get(i))
            .map_or("", String::as_str)
    }

    fn optional_text(&self, column: &str) -> Option<String> {
        Some(self.text(column))
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    }

    fn number<T: FromStr>(&self, column: &'static str) -> Result<Option<T>, StatError> {
        match self.text(column) {
            "" => Ok(None),
            text => text.parse().map(Some).map_err(|_| StatError::BadNumber {
                line: self.line,
                column,
                value: text.to_owned(),
            }),
        }
    }

    fn row_type(&self) -> Result<RowType, StatError> {
        match self.text("type") {
            "0" => Ok(RowType::Frontend),
            "1" => Ok(RowType::Backend),
            "2" => Ok(RowType::Server),
            "3" => Ok(RowType::Listener),
            other => Err(StatError::BadType {
                line: self.line,
                value: other.to_owned(),
            }),
        }
    }

    fn traffic(&self) -> Result<Traffic, StatError> {
        Ok(Traffic {
            current_sessions: self.number("scur")?.unwrap_or(0),
            max_sessions: self.number("smax")?.unwrap_or(0),
            session_limit: self.number("slim")?,
            total_sessions: self.number("stot")?.unwrap_or(0),
            bytes_in: self.number("bin")?.unwrap_or(0),
            bytes_out: self.number("bout")?.unwrap_or(0),
        })
    }

    fn server(&self) -> Result<Server, StatError> {
        let status = self.text("status").to_owned();
        let check = match self.text("check_status") {
            "" => None,
            text => {
                let (in_progress, result) = match text.strip_prefix("* ") {
                    Some(result) => (true, result),
                    None => (false, text),
                };
                Some(Check {
                    status: result.to_owned(),
                    in_progress,
                    code: self.number("check_code")?,
                    duration_ms: self.number("check_duration")?,
                    info: self.optional_text("last_chk"),
                    description: self.optional_text("check_desc"),
                })
            }
        };
        Ok(Server {
            name: self.text("svname").to_owned(),
            address: self.optional_text("addr"),
            state: ServerState::from_status(&status),
            status,
            check,
            weight: self.number("weight")?,
            backup: self.text("bck") == "1",
            last_change_s: self.number("lastchg")?,
            traffic: self.traffic()?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// haproxy 2.6.12 (bookworm): web1 passes an HTTP check, web2 is refused,
    /// db1 passes a TCP check, db2 has checks off.
    const CHECKS: &str = include_str!("../fixtures/show-stat-checks.csv");
    /// The same haproxy after traffic: web3 answers checks with 503, web4 is in
    /// maintenance, backend api has every server down, api2 is IPv6 and drained.
    const MIXED: &str = include_str!("../fixtures/show-stat-mixed.csv");
    /// Captured between two failed checks of web1 (`fall 2`).
    const GOING_DOWN: &str = include_str!("../fixtures/show-stat-going-down.csv");

    fn names<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<&str> {
        items.iter().map(name).collect()
    }

    #[test]
    fn frontends_backends_and_servers_in_order() {
        let stats = parse_stat(CHECKS).unwrap();
        assert_eq!(names(&stats.frontends, |f| &f.name), ["web", "db"]);
        assert_eq!(names(&stats.backends, |b| &b.name), ["web", "db"]);
        let web = stats.backend("web").unwrap();
        assert_eq!(names(&web.servers, |s| &s.name), ["web1", "web2"]);
        assert_eq!(
            names(&stats.backend("db").unwrap().servers, |s| &s.name),
            ["db1", "db2"]
        );
        let frontend = &stats.frontends[0];
        assert_eq!(frontend.status, "OPEN");
        assert_eq!(frontend.mode.as_deref(), Some("http"));
        assert_eq!(frontend.traffic.session_limit, Some(4096));
        assert_eq!(web.status, "UP");
        assert!(web.is_up());
        assert_eq!(web.balance.as_deref(), Some("roundrobin"));
        assert_eq!(web.active_servers_up, 1);
        assert_eq!(web.servers_in_rotation(), 1);
    }

    #[test]
    fn check_results_of_each_kind() {
        let stats = parse_stat(CHECKS).unwrap();
        let web = stats.backend("web").unwrap();
        let web1 = &web.servers[0];
        assert_eq!(web1.address.as_deref(), Some("192.0.2.21:8080"));
        assert_eq!((web1.status.as_str(), web1.state), ("UP", ServerState::Up));
        assert_eq!(web1.weight, Some(1));
        assert_eq!(
            web1.check,
            Some(Check {
                status: "L7OK".into(),
                in_progress: false,
                code: Some(200),
                duration_ms: Some(0),
                info: None,
                description: Some("Layer7 check passed".into()),
            })
        );
        let web2 = &web.servers[1];
        assert_eq!(web2.state, ServerState::Down);
        let check = web2.check.as_ref().unwrap();
        assert_eq!(check.summary(), "L4CON Connection refused");
        assert_eq!(
            check.description.as_deref(),
            Some("Layer4 connection problem")
        );
        let db = stats.backend("db").unwrap();
        assert_eq!(db.servers[0].check.as_ref().unwrap().summary(), "L4OK 0ms");
        let db2 = &db.servers[1];
        assert_eq!(
            (db2.status.as_str(), db2.state),
            ("no check", ServerState::NoCheck)
        );
        assert_eq!(db2.check, None);
        assert_eq!(db.servers_in_rotation(), 2);
    }

    #[test]
    fn traffic_maintenance_wrong_status_and_ipv6() {
        let stats = parse_stat(MIXED).unwrap();
        assert_eq!(
            stats.frontends[0].traffic,
            Traffic {
                current_sessions: 0,
                max_sessions: 1,
                session_limit: Some(4096),
                total_sessions: 3,
                bytes_in: 234,
                bytes_out: 219,
            }
        );
        let web = stats.backend("web").unwrap();
        assert_eq!(web.traffic.total_sessions, 3);
        assert_eq!(web.servers[0].traffic.total_sessions, 2);
        assert_eq!(
            web.servers[2].check.as_ref().unwrap().summary(),
            "L7STS 503 Service Unavailable"
        );
        let web4 = &web.servers[3];
        assert_eq!(
            (web4.status.as_str(), web4.state),
            ("MAINT", ServerState::Maint)
        );
        // HAProxy hides the check of a server in maintenance.
        assert_eq!(web4.check, None);
        assert_eq!(web.servers_in_rotation(), 1);
        let api = stats.backend("api").unwrap();
        assert_eq!(api.status, "DOWN");
        assert!(!api.is_up());
        assert_eq!(api.servers_in_rotation(), 0);
        assert_eq!(
            api.servers[1].address.as_deref(),
            Some("[2001:db8::5]:9000")
        );
        // Drained while its checks fail: HAProxy still prints DOWN, not DRAIN.
        assert_eq!(api.servers[1].state, ServerState::Down);
    }

    #[test]
    fn a_server_between_failed_checks_is_going_down() {
        let stats = parse_stat(GOING_DOWN).unwrap();
        let web1 = &stats.backend("web").unwrap().servers[0];
        assert_eq!(web1.status, "UP 1/2");
        assert_eq!(web1.state, ServerState::GoingDown);
        assert!(web1.state.in_rotation());
        assert_eq!(
            web1.check.as_ref().unwrap().summary(),
            "L4CON Connection refused"
        );
    }

    #[test]
    fn every_status_text_haproxy_prints() {
        let cases = [
            ("UP", ServerState::Up),
            ("UP 1/3", ServerState::GoingDown),
            ("DOWN", ServerState::Down),
            ("DOWN (agent)", ServerState::Down),
            ("DOWN 1/2", ServerState::GoingUp),
            ("NOLB", ServerState::NoLb),
            ("NOLB 1/2", ServerState::NoLb),
            ("DRAIN", ServerState::Drain),
            ("DRAIN 1/2", ServerState::Drain),
            ("DRAIN (agent)", ServerState::Drain),
            ("MAINT", ServerState::Maint),
            ("MAINT (via web/web1)", ServerState::Maint),
            ("MAINT (resolution)", ServerState::Maint),
            ("no check", ServerState::NoCheck),
            ("no", ServerState::Unknown),
            ("", ServerState::Unknown),
            ("STARTING", ServerState::Unknown),
        ];
        for (text, state) in cases {
            assert_eq!(ServerState::from_status(text), state, "{text:?}");
        }
    }

    /// A minimal reply: the header and the given rows.
    fn reply(rows: &[&str]) -> String {
        let mut text = "# pxname,svname,scur,stot,status,weight,type,check_status,check_duration,last_chk,addr,\n".to_owned();
        for row in rows {
            text.push_str(row);
            text.push('\n');
        }
        text.push('\n');
        text
    }

    #[test]
    fn quoted_fields_and_a_check_in_progress() {
        let stats = parse_stat(&reply(&[
            r#"be,s1,0,5,DOWN,1,2,* L4TOUT,2001,"timeout, at step 1",192.0.2.1:80,"#,
            "be,BACKEND,0,5,DOWN,0,1,,,,,",
        ]))
        .unwrap();
        let check = stats.backends[0].servers[0].check.clone().unwrap();
        assert!(check.in_progress);
        assert_eq!(check.status, "L4TOUT");
        assert_eq!(check.summary(), "L4TOUT timeout, at step 1");
        assert_eq!(check.code, None);
    }

    #[test]
    fn a_timeout_without_info_shows_its_duration() {
        let stats = parse_stat(&reply(&[
            "be,s1,0,5,DOWN,1,2,L4TOUT,2001,,192.0.2.1:80,",
            "be,BACKEND,0,5,DOWN,0,1,,,,,",
        ]))
        .unwrap();
        assert_eq!(
            stats.backends[0].servers[0]
                .check
                .as_ref()
                .unwrap()
                .summary(),
            "L4TOUT 2001ms"
        );
    }

    #[test]
    fn listener_rows_are_skipped() {
        let stats = parse_stat(&reply(&[
            "fe,FRONTEND,1,9,OPEN,,0,,,,,",
            "fe,sock-1,1,9,OPEN,,3,,,,192.0.2.1:80,",
        ]))
        .unwrap();
        assert_eq!(stats.frontends.len(), 1);
        assert!(stats.backends.is_empty());
    }

    #[test]
    fn replies_that_are_not_stats_are_rejected() {
        for (text, first) in [
            ("Permission denied\n\n", "Permission denied"),
            (
                "Unknown command, but maybe ...\n",
                "Unknown command, but maybe ...",
            ),
            ("", ""),
        ] {
            match parse_stat(text) {
                Err(StatError::NoHeader { first_line }) => assert_eq!(first_line, first),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let error = parse_stat("# pxname,svname,type\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the `show stat` header has no `status` column"
        );
    }

    #[test]
    fn malformed_rows_name_their_line() {
        let error = parse_stat(&reply(&["be,s1,x,5,UP,1,2,,,,,"])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 2: column `scur` is \"x\", not a number"
        );
        let error = parse_stat(&reply(&["be,s1,0,5,UP,1,7,,,,,"])).unwrap_err();
        assert_eq!(error.to_string(), "line 2: unknown row type \"7\"");
        let error = parse_stat(&reply(&["be,s1,0,5,UP,1,2,,,,,"])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 2: server be/s1 belongs to no backend"
        );
    }

    #[test]
    fn json_shape() {
        let stats = parse_stat(CHECKS).unwrap();
        let value = serde_json::to_value(&stats).unwrap();
        let server = &value["backends"][0]["servers"][1];
        assert_eq!(server["name"], "web2");
        assert_eq!(server["state"], "down");
        assert_eq!(server["status"], "DOWN");
        assert_eq!(server["check"]["status"], "L4CON");
        assert_eq!(server["check"]["info"], "Connection refused");
        assert_eq!(server["traffic"]["total_sessions"], 0);
        assert_eq!(value["backends"][1]["servers"][1]["state"], "no_check");
        assert_eq!(
            value["backends"][1]["servers"][1]["check"],
            serde_json::Value::Null
        );
    }
}
