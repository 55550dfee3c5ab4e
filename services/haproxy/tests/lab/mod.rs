//! A real HAProxy (Debian's, from the host) in a network lab, for the
//! integration tests of cairn-haproxy and `cairnctl lb` (shared with
//! `#[path]`). Node `lb` (192.0.2.10) runs HAProxy with a config shaped like
//! the one `cairn build` renders (image/src/build/haproxy.rs), its stats socket
//! in the lab directory; node `web` holds 192.0.2.21, where a second HAProxy
//! stands in for a web server (200 to everything), and 192.0.2.22, where
//! nothing listens (checks are refused). Dropping the lab kills both HAProxys
//! and deletes the namespaces.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_haproxy::{RuntimeClient, Stats};
use cairn_labnet::{Lab, Spawn};

/// Debian bookworm's haproxy package.
pub const HAPROXY: &str = "/usr/sbin/haproxy";

/// The lb node's address and the frontends' ports.
pub const LB_ADDR: &str = "192.0.2.10";
/// `frontend web` (http, checks `GET /healthz`).
pub const WEB_PORT: u16 = 80;

/// The rendered config's shape with the lab's socket and chroot: `web` (http,
/// web1 up, web2 refused) and `db` (tcp, db1 checked, db2 without checks). No
/// `uid`/`gid`: the test's HAProxy workers stay root.
fn lb_config(dir: &Path) -> String {
    format!(
        "global\n    \
         master-worker\n    \
         stats socket {dir}/admin.sock mode 600 level admin\n    \
         maxconn 4096\n    \
         chroot {dir}/chroot\n\
         \n\
         defaults\n    \
         retries 2\n    \
         option redispatch\n    \
         timeout connect 2s\n    \
         timeout check 2s\n    \
         timeout queue 5s\n    \
         timeout client 30s\n    \
         timeout server 30s\n    \
         timeout http-request 10s\n    \
         timeout http-keep-alive 5s\n\
         \n\
         frontend web\n    \
         mode http\n    \
         bind *:80\n    \
         option forwardfor\n    \
         default_backend web\n\
         \n\
         backend web\n    \
         mode http\n    \
         balance roundrobin\n    \
         option httpchk GET /healthz\n    \
         server web1 192.0.2.21:8080 check inter 1s fall 2 rise 2\n    \
         server web2 192.0.2.22:8080 check inter 1s fall 2 rise 2\n\
         \n\
         frontend db\n    \
         mode tcp\n    \
         bind *:5432\n    \
         default_backend db\n\
         \n\
         backend db\n    \
         mode tcp\n    \
         balance roundrobin\n    \
         server db1 192.0.2.21:8080 check inter 1s fall 2 rise 2\n    \
         server db2 192.0.2.22:8080\n",
        dir = dir.display()
    )
}

/// The stand-in web server: 200 `ok` to every request on 192.0.2.21:8080.
const WEB_CONFIG: &str = "global\n    \
     maxconn 64\n\
     \n\
     defaults\n    \
     mode http\n    \
     timeout connect 2s\n    \
     timeout client 5s\n    \
     timeout server 5s\n\
     \n\
     frontend stand_in_web\n    \
     bind 192.0.2.21:8080\n    \
     http-request return status 200 content-type text/plain string ok\n";

/// A running HAProxy pair in its lab.
pub struct HaproxyLab {
    lab: Lab,
    /// The lb HAProxy's runtime API socket.
    pub socket: PathBuf,
}

impl HaproxyLab {
    /// Builds the lab, starts the stand-in web server, then (once it answers)
    /// the lb HAProxy, and waits (bounded) until the checks have settled:
    /// web1 `UP` with `L7OK`, web2 `DOWN`, db1 `L4OK`. Panics with
    /// a clear message when it cannot (not root, no `ip`, no haproxy).
    pub fn start() -> Self {
        cairn_labnet::require_root();
        assert!(
            Path::new(HAPROXY).exists(),
            "privileged test: {HAPROXY} is missing; install Debian's haproxy (apt-get install haproxy)"
        );
        let mut lab = Lab::new("hap").expect("create the lab");
        lab.add_node("lb", &[&format!("{LB_ADDR}/24")])
            .expect("add node lb");
        lab.add_node("web", &["192.0.2.21/24", "192.0.2.22/24"])
            .expect("add node web");
        let dir = lab.dir().to_owned();
        std::fs::create_dir_all(dir.join("chroot")).unwrap();
        let lb_cfg = dir.join("lb.cfg");
        let web_cfg = dir.join("web.cfg");
        std::fs::write(&lb_cfg, lb_config(&dir)).unwrap();
        std::fs::write(&web_cfg, WEB_CONFIG).unwrap();
        lab.spawn(
            "web",
            "web-haproxy",
            &Spawn::new(HAPROXY, &["-db", "-f", &web_cfg.display().to_string()]),
        )
        .expect("start the stand-in web server");
        // Start the lb only once web1 answers, so its first checks pass and it
        // never goes down (a server that fell must pass `rise 2` checks again).
        let lb_netns = lab.netns("lb");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let netns = lb_netns.clone();
            let answer = std::thread::spawn(move || {
                cairn_labnet::netns::enter(&netns).map_err(|e| e.to_string())?;
                let addr: SocketAddr = "192.0.2.21:8080".parse().unwrap();
                cairn_labnet::http::get(addr, Duration::from_secs(1))
            })
            .join()
            .unwrap();
            match answer {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => panic!(
                    "the stand-in web server never answered on 192.0.2.21:8080 ({e}); log:\n{}",
                    lab.process("web-haproxy")
                        .map(|p| p.log())
                        .unwrap_or_default()
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        // As cairn-init runs it: master-worker in the foreground.
        lab.spawn(
            "lb",
            "haproxy",
            &Spawn::new(HAPROXY, &["-Ws", "-f", &lb_cfg.display().to_string()]),
        )
        .expect("start haproxy");
        let this = HaproxyLab {
            socket: dir.join("admin.sock"),
            lab,
        };
        this.wait_for("checks to settle", |stats| {
            let check = |backend: &str, i: usize| {
                stats
                    .backend(backend)
                    .and_then(|b| b.servers.get(i))
                    .and_then(|s| s.check.as_ref())
                    .map(|c| c.status.clone())
            };
            let status = |backend: &str, i: usize| {
                stats
                    .backend(backend)
                    .and_then(|b| b.servers.get(i))
                    .map(|s| s.status.clone())
            };
            check("web", 0).as_deref() == Some("L7OK")
                && status("web", 0).as_deref() == Some("UP")
                && status("web", 1).as_deref() == Some("DOWN")
                && check("db", 0).as_deref() == Some("L4OK")
        });
        this
    }

    /// Polls `show stat` every 100 ms for up to 15 s until `ready` holds;
    /// panics with the last answer and HAProxy's log otherwise.
    pub fn wait_for(&self, what: &str, ready: impl Fn(&Stats) -> bool) {
        let client = RuntimeClient::new(&self.socket);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = String::from("nothing yet");
        while Instant::now() < deadline {
            match client.show_stat() {
                Ok(stats) if ready(&stats) => return,
                Ok(stats) => last = format!("{stats:#?}"),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "haproxy: waited 15 s for {what}; last answer: {last}\nhaproxy log:\n{}",
            self.log()
        );
    }

    /// One `GET /` through the lb's `web` frontend, made from inside the lb node.
    pub fn get(&self) -> Result<String, String> {
        let netns = self.lab.netns("lb");
        std::thread::spawn(move || {
            cairn_labnet::netns::enter(&netns).map_err(|e| e.to_string())?;
            let addr: SocketAddr = format!("{LB_ADDR}:{WEB_PORT}").parse().unwrap();
            cairn_labnet::http::get(addr, Duration::from_secs(5))
        })
        .join()
        .unwrap()
    }

    /// The pids running in `node`'s namespace and what they are (for failure messages).
    pub fn processes_in(&self, node: &str) -> String {
        let out = std::process::Command::new("ip")
            .args(["netns", "pids", &self.lab.netns(node)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|pid| {
                let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " ");
                format!("{pid} {cmdline}\n")
            })
            .collect()
    }

    /// The lb HAProxy's output so far.
    pub fn log(&self) -> String {
        self.lab
            .process("haproxy")
            .map(|p| p.log())
            .unwrap_or_default()
    }

    /// The lab directory (configs, socket, logs).
    pub fn dir(&self) -> &Path {
        self.lab.dir()
    }
}
