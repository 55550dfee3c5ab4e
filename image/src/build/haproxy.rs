//! `/etc/haproxy/haproxy.cfg` rendered from the site file's `[lb]` section.
//!
//! The text depends on the site only (never on the node), so both boxes of a
//! load-balancer pair carry the same file and the VIP can move between them.
//! Output is deterministic: frontends and servers keep the site's order.
//!
//! Rules (docs/roles.md):
//! - `global`: master-worker, the runtime API on [`STATS_SOCKET`] (mode 600,
//!   admin level), workers drop to the role's `haproxy` user and chroot to
//!   [`CHROOT`]. No `log` target: in the foreground HAProxy prints its
//!   warnings and alerts (server up/down, no server left) on stderr, which
//!   cairn-init keeps in the service's log ring, and a `log stderr` line
//!   would print each of them twice; single requests are not logged. No
//!   `daemon`: cairn-init runs the master in the foreground (`-Ws`).
//! - `defaults`: short connect and check timeouts so a dead server is noticed
//!   quickly; client/server timeouts for ordinary request/response traffic.
//! - One `frontend` per `[[lb.frontend]]` binding the wildcard `*:<port>` (and
//!   `:::<port>` when a VIP is IPv6): the VIP is served as soon as it lands on
//!   the box, without `ip_nonlocal_bind`.
//! - One `backend` of the same name, `balance roundrobin`, one `server` per
//!   site backend with `check inter 1s fall 2 rise 2` when `check` is on
//!   (default), and `option httpchk GET <check_path>` when the frontend has a
//!   `check_path` (otherwise a check is a TCP connect).

use std::fmt::Write as _;
use std::net::SocketAddr;

use cairn_site::{FrontendMode, Site};

/// The runtime API socket (cairnctl, cairn-vipd, operators).
pub const STATS_SOCKET: &str = "/run/haproxy/admin.sock";
/// The workers' chroot (on the data partition; made at boot).
pub const CHROOT: &str = "/var/lib/haproxy";
/// Connections per process before HAProxy queues.
pub const MAXCONN: u32 = 4096;

/// The account HAProxy's workers run as (a user of the role).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// User name (for the comment).
    pub name: String,
    /// User id, also used as the group id.
    pub uid: u32,
}

/// Why haproxy.cfg could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum HaproxyError {
    /// The site file has no `[lb]` section.
    #[error("field `lb`: the lb role needs an [lb] section in the site file")]
    NoLbSection,
    /// The `[lb]` section has no frontend.
    #[error("field `lb.frontend`: the lb role needs at least one [[lb.frontend]]")]
    NoFrontends,
}

/// Renders haproxy.cfg for `site`, with workers running as `run_as`.
pub fn render(site: &Site, run_as: &RunAs) -> Result<String, HaproxyError> {
    let lb = site.lb.as_ref().ok_or(HaproxyError::NoLbSection)?;
    if lb.frontends.is_empty() {
        return Err(HaproxyError::NoFrontends);
    }
    let ipv6 = lb.vips.iter().any(|v| v.addr.is_ipv6());
    let mut t = String::new();
    // Writing into a String cannot fail; the results are ignored below.
    let _ = writeln!(
        t,
        "# HAProxy for cluster {:?}: rendered by `cairn build` from the site file's [lb]\n\
         # section, the same on every load balancer. The root is read-only: change the\n\
         # site file and rebuild instead of editing this file.\n",
        site.cluster.name
    );
    let _ = writeln!(
        t,
        "global\n    \
         master-worker\n    \
         stats socket {STATS_SOCKET} mode 600 level admin\n    \
         maxconn {MAXCONN}\n    \
         # workers run as {} and live in an empty chroot\n    \
         uid {}\n    \
         gid {}\n    \
         chroot {CHROOT}\n",
        run_as.name, run_as.uid, run_as.uid
    );
    t.push_str(
        "defaults\n    \
         retries 2\n    \
         option redispatch\n    \
         timeout connect 2s\n    \
         timeout check 2s\n    \
         timeout queue 5s\n    \
         timeout client 30s\n    \
         timeout server 30s\n    \
         timeout http-request 10s\n    \
         timeout http-keep-alive 5s\n",
    );
    for fe in &lb.frontends {
        let mode = match fe.mode {
            FrontendMode::Http => "http",
            FrontendMode::Tcp => "tcp",
        };
        let _ = write!(
            t,
            "\nfrontend {name}\n    mode {mode}\n    bind *:{port}\n",
            name = fe.name,
            port = fe.port
        );
        if ipv6 {
            let _ = writeln!(t, "    bind :::{} v6only", fe.port);
        }
        if fe.mode == FrontendMode::Http {
            t.push_str("    option forwardfor\n");
        }
        let _ = write!(
            t,
            "    default_backend {name}\n\nbackend {name}\n    mode {mode}\n    balance roundrobin\n",
            name = fe.name
        );
        if let Some(path) = &fe.check_path {
            let _ = writeln!(t, "    option httpchk GET {path}");
        }
        for b in &fe.backends {
            let _ = write!(t, "    server {} {}", b.name, server_address(b.address));
            if b.check {
                t.push_str(" check inter 1s fall 2 rise 2");
            }
            t.push('\n');
        }
    }
    Ok(t)
}

/// HAProxy's spelling of a server address: `192.0.2.1:80`, `[2001:db8::1]:80`.
fn server_address(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::*;

    fn haproxy_user() -> RunAs {
        RunAs {
            name: "haproxy".into(),
            uid: 110,
        }
    }

    fn example_site() -> Site {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        cairn_site::load_site(&root.join("examples/site.toml")).unwrap()
    }

    /// Two frontends (http with a health path, tcp), IPv6 VIP and server, a
    /// server without checks.
    const RICH: &str = r#"
[cluster]
name = "rich"

[[node]]
name = "lb1"
role = "lb"
mac = "52:54:00:00:00:11"
addresses = ["192.0.2.11/24", "2001:db8::11/64"]
priority = 200

[lb]
vrid = 7
vips = ["192.0.2.100/24", "2001:db8::100/64"]

[[lb.frontend]]
name = "web"
port = 80
check_path = "/healthz"

[[lb.frontend.backend]]
name = "web1"
address = "192.0.2.21:8080"

[[lb.frontend.backend]]
name = "web2"
address = "[2001:db8::22]:8080"

[[lb.frontend]]
name = "pg"
port = 5432
mode = "tcp"

[[lb.frontend.backend]]
name = "db1"
address = "198.51.100.5:5432"
check = false
"#;

    const EXAMPLE_CFG: &str = r#"# HAProxy for cluster "demo": rendered by `cairn build` from the site file's [lb]
# section, the same on every load balancer. The root is read-only: change the
# site file and rebuild instead of editing this file.

global
    master-worker
    stats socket /run/haproxy/admin.sock mode 600 level admin
    maxconn 4096
    # workers run as haproxy and live in an empty chroot
    uid 110
    gid 110
    chroot /var/lib/haproxy

defaults
    retries 2
    option redispatch
    timeout connect 2s
    timeout check 2s
    timeout queue 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 5s

frontend web
    mode http
    bind *:80
    option forwardfor
    default_backend web

backend web
    mode http
    balance roundrobin
    server web1 192.0.2.21:8080 check inter 1s fall 2 rise 2
    server web2 192.0.2.22:8080 check inter 1s fall 2 rise 2
"#;

    #[test]
    fn example_site_renders_the_golden_text() {
        assert_eq!(
            render(&example_site(), &haproxy_user()).unwrap(),
            EXAMPLE_CFG
        );
    }

    #[test]
    fn frontends_modes_health_paths_and_ipv6_render_in_site_order() {
        let site = cairn_site::parse_site(RICH, Path::new("rich.toml")).unwrap();
        let cfg = render(&site, &haproxy_user()).unwrap();
        let tail = cfg.split_once("\nfrontend web\n").unwrap().1;
        assert_eq!(
            tail,
            "    mode http\n    bind *:80\n    bind :::80 v6only\n    option forwardfor\n    default_backend web\n\n\
             backend web\n    mode http\n    balance roundrobin\n    option httpchk GET /healthz\n    \
             server web1 192.0.2.21:8080 check inter 1s fall 2 rise 2\n    \
             server web2 [2001:db8::22]:8080 check inter 1s fall 2 rise 2\n\n\
             frontend pg\n    mode tcp\n    bind *:5432\n    bind :::5432 v6only\n    default_backend pg\n\n\
             backend pg\n    mode tcp\n    balance roundrobin\n    server db1 198.51.100.5:5432\n"
        );
        // Rendering is a pure function of the site.
        assert_eq!(cfg, render(&site, &haproxy_user()).unwrap());
    }

    #[test]
    fn a_site_without_lb_or_frontends_is_refused() {
        let mut site = example_site();
        if let Some(lb) = site.lb.as_mut() {
            lb.frontends.clear();
        }
        assert_eq!(
            render(&site, &haproxy_user()).unwrap_err().to_string(),
            "field `lb.frontend`: the lb role needs at least one [[lb.frontend]]"
        );
        site.lb = None;
        assert_eq!(
            render(&site, &haproxy_user()).unwrap_err().to_string(),
            "field `lb`: the lb role needs an [lb] section in the site file"
        );
    }

    /// `haproxy -c` on the build host. The chroot and user lines are checked
    /// only at start-up, so `-c` accepts them without the box's directories.
    fn haproxy_check(cfg: &str) -> String {
        let haproxy = PathBuf::from("/usr/sbin/haproxy");
        assert!(
            haproxy.is_file(),
            "/usr/sbin/haproxy is missing on this host: `apt-get install -y haproxy` (cargo xtask setup) to validate rendered configs"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, cfg).unwrap();
        let o = Command::new(&haproxy)
            .arg("-c")
            .arg("-f")
            .arg(&file)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "haproxy -c refused:\n{text}\n{cfg}");
        text
    }

    #[test]
    fn host_haproxy_accepts_the_rendered_configs_without_warnings() {
        let rich = cairn_site::parse_site(RICH, Path::new("rich.toml")).unwrap();
        for site in [example_site(), rich] {
            let cfg = render(&site, &haproxy_user()).unwrap();
            let out = haproxy_check(&cfg);
            assert!(out.contains("Configuration file is valid"), "{out}");
            assert!(!out.contains("WARNING"), "{out}\n{cfg}");
        }
    }
}
