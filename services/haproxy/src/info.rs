//! `show info`: facts about the HAProxy process, one `Key: value` per line.

use std::collections::HashMap;
use std::str::FromStr;

use serde::Serialize;

/// Why a `show info` reply could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    /// The reply has no `Version` line; HAProxy answered something else.
    #[error("not a `show info` reply (first line {first_line:?})")]
    NotInfo {
        /// The reply's first line.
        first_line: String,
    },
    /// A numeric field holds something else.
    #[error("`{key}` is {value:?}, not a number")]
    BadNumber {
        /// The key.
        key: &'static str,
        /// The value as received.
        value: String,
    },
}

/// The process facts `cairnctl lb` shows; absent keys are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Info {
    /// Product name (`Name`), `HAProxy`.
    pub name: Option<String>,
    /// Version (`Version`), e.g. `2.6.12-1+deb12u3`.
    pub version: String,
    /// Release date (`Release_date`).
    pub release_date: Option<String>,
    /// Seconds since the worker started (`Uptime_sec`).
    pub uptime_s: Option<u64>,
    /// The worker's pid (`Pid`).
    pub pid: Option<u32>,
    /// Processes (`Nbproc`; always 1 since 2.5).
    pub processes: Option<u32>,
    /// This process's number (`Process_num`).
    pub process_num: Option<u32>,
    /// Threads (`Nbthread`).
    pub threads: Option<u32>,
    /// Connections open now (`CurrConns`).
    pub current_connections: Option<u64>,
    /// Connections since start (`CumConns`).
    pub total_connections: Option<u64>,
    /// HTTP requests since start (`CumReq`).
    pub total_requests: Option<u64>,
    /// Connection limit (`Maxconn`).
    pub max_connections: Option<u64>,
    /// Jobs: listeners, sessions and other things keeping the process alive (`Jobs`).
    pub jobs: Option<u64>,
    /// Listening sockets (`Listeners`).
    pub listeners: Option<u64>,
    /// Whether the process is stopping after a reload or soft stop (`Stopping`).
    pub stopping: bool,
    /// The node name (`node`).
    pub node: Option<String>,
}

/// Parses a whole `show info` reply. Lines without `: ` and unknown keys are ignored.
pub fn parse_info(reply: &str) -> Result<Info, InfoError> {
    let fields: HashMap<&str, &str> = reply
        .lines()
        .filter_map(|line| line.split_once(": "))
        .map(|(key, value)| (key, value.trim()))
        .collect();
    let version = fields
        .get("Version")
        .ok_or_else(|| InfoError::NotInfo {
            first_line: reply.lines().next().unwrap_or_default().to_owned(),
        })?
        .to_string();
    let text = |key: &str| fields.get(key).map(|v| (*v).to_owned());
    Ok(Info {
        name: text("Name"),
        version,
        release_date: text("Release_date"),
        uptime_s: number(&fields, "Uptime_sec")?,
        pid: number(&fields, "Pid")?,
        processes: number(&fields, "Nbproc")?,
        process_num: number(&fields, "Process_num")?,
        threads: number(&fields, "Nbthread")?,
        current_connections: number(&fields, "CurrConns")?,
        total_connections: number(&fields, "CumConns")?,
        total_requests: number(&fields, "CumReq")?,
        max_connections: number(&fields, "Maxconn")?,
        jobs: number(&fields, "Jobs")?,
        listeners: number(&fields, "Listeners")?,
        stopping: number::<u32>(&fields, "Stopping")?.unwrap_or(0) != 0,
        node: text("node"),
    })
}

fn number<T: FromStr>(
    fields: &HashMap<&str, &str>,
    key: &'static str,
) -> Result<Option<T>, InfoError> {
    fields
        .get(key)
        .map(|value| {
            value.parse().map_err(|_| InfoError::BadNumber {
                key,
                value: (*value).to_owned(),
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// haproxy 2.6.12 (bookworm), 4 s after start.
    const INFO: &str = include_str!("../fixtures/show-info.txt");

    #[test]
    fn bookworm_info() {
        assert_eq!(
            parse_info(INFO).unwrap(),
            Info {
                name: Some("HAProxy".into()),
                version: "2.6.12-1+deb12u3".into(),
                release_date: Some("2025/10/03".into()),
                uptime_s: Some(4),
                pid: Some(24826),
                processes: Some(1),
                process_num: Some(1),
                threads: Some(2),
                current_connections: Some(0),
                total_connections: Some(14),
                total_requests: Some(1),
                max_connections: Some(4096),
                jobs: Some(5),
                listeners: Some(4),
                stopping: false,
                node: Some("vm".into()),
            }
        );
    }

    #[test]
    fn only_version_is_required() {
        let info = parse_info("Version: 3.0.0\nStopping: 1\n").unwrap();
        assert_eq!(info.version, "3.0.0");
        assert!(info.stopping);
        assert_eq!(info.uptime_s, None);
    }

    #[test]
    fn other_replies_are_rejected() {
        let error = parse_info("Permission denied\n\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "not a `show info` reply (first line \"Permission denied\")"
        );
        let error = parse_info("Version: 2.6\nUptime_sec: soon\n").unwrap_err();
        assert_eq!(error.to_string(), "`Uptime_sec` is \"soon\", not a number");
    }
}
