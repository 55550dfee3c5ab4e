//! A static file server for the lab's update repository: `GET` and `HEAD` of
//! regular files under one directory, optionally slowed down to a byte rate so
//! a test can catch a box in the middle of writing an update.
//!
//! What it refuses, it answers with a status instead of a file: other methods
//! (405), paths with `..`, empty or hidden components (400 or 404), anything
//! that is not a regular file (404). Dot files are never served, so control
//! files such as the rate file can sit next to the content.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Name of the file, inside the served directory, whose content (a number of
/// KiB per second) slows every download while it exists.
pub const RATE_FILE: &str = ".rate-kib";

/// A request line the server understood.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET` (true) or `HEAD` (false).
    pub body: bool,
    /// The file under the root.
    pub path: PathBuf,
}

/// Why a request gets no file.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a request line.
    BadRequest,
    /// A method other than GET and HEAD.
    Method,
    /// A path that leaves the root, is hidden, or does not exist.
    NotFound,
}

impl Refusal {
    fn status(&self) -> &'static str {
        match self {
            Refusal::BadRequest => "400 Bad Request",
            Refusal::Method => "405 Method Not Allowed",
            Refusal::NotFound => "404 Not Found",
        }
    }
}

/// Parses the first line of a request into a path under `root`, refusing every
/// path that could leave it.
pub fn parse_request(root: &Path, line: &str) -> Result<Request, Refusal> {
    let mut words = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Err(Refusal::BadRequest);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Refusal::BadRequest);
    }
    let body = match method {
        "GET" => true,
        "HEAD" => false,
        _ => return Err(Refusal::Method),
    };
    let target = target.split(['?', '#']).next().unwrap_or_default();
    let Some(rel) = target.strip_prefix('/') else {
        return Err(Refusal::BadRequest);
    };
    let mut path = root.to_path_buf();
    for part in rel.split('/') {
        if part.is_empty() || part.starts_with('.') || part.contains('%') || part.contains('\\') {
            return Err(Refusal::NotFound);
        }
        path.push(part);
    }
    Ok(Request { body, path })
}

/// The rate limit in bytes per second, if the rate file holds a positive number.
pub fn rate_limit(root: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(root.join(RATE_FILE)).ok()?;
    let kib: u64 = text.trim().parse().ok()?;
    (kib > 0).then_some(kib * 1024)
}

/// Serves one connection: one request, then close.
pub fn serve(mut stream: TcpStream, root: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or_default();
    let request = parse_request(root, line);
    let opened = request.and_then(|r| {
        let f = File::open(&r.path).map_err(|_| Refusal::NotFound)?;
        let meta = f.metadata().map_err(|_| Refusal::NotFound)?;
        if meta.is_file() {
            Ok((r, f, meta.len()))
        } else {
            Err(Refusal::NotFound)
        }
    });
    let (request, mut file, len) = match opened {
        Ok(x) => x,
        Err(refusal) => {
            let msg = format!("{}\n", refusal.status());
            write!(
                stream,
                "HTTP/1.1 {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                refusal.status(),
                msg.len()
            )?;
            return stream.flush();
        }
    };
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )?;
    if request.body {
        copy_paced(&mut file, &mut stream, rate_limit(root))?;
    }
    stream.flush()
}

/// Copies everything from `from` to `to`, no faster than `rate` bytes per
/// second when given (checked every 64 KiB).
fn copy_paced(from: &mut impl Read, to: &mut impl Write, rate: Option<u64>) -> std::io::Result<()> {
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
        sent += n as u64;
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        PathBuf::from("/srv/repo")
    }

    #[test]
    fn files_under_the_root_are_found() {
        assert_eq!(
            parse_request(&root(), "GET /bundles/lb/x/0.2.0/root.img HTTP/1.1"),
            Ok(Request {
                body: true,
                path: root().join("bundles/lb/x/0.2.0/root.img")
            })
        );
        assert_eq!(
            parse_request(&root(), "HEAD /index.json?x=1 HTTP/1.0"),
            Ok(Request {
                body: false,
                path: root().join("index.json")
            })
        );
    }

    #[test]
    fn paths_that_leave_the_root_or_hide_are_refused() {
        for bad in [
            "GET /../etc/passwd HTTP/1.1",
            "GET /a/../../x HTTP/1.1",
            "GET /.rate-kib HTTP/1.1",
            "GET /a//b HTTP/1.1",
            "GET / HTTP/1.1",
            "GET /%2e%2e/x HTTP/1.1",
        ] {
            assert_eq!(parse_request(&root(), bad), Err(Refusal::NotFound), "{bad}");
        }
        assert_eq!(
            parse_request(&root(), "POST /index.json HTTP/1.1"),
            Err(Refusal::Method)
        );
        assert_eq!(
            parse_request(&root(), "GET index.json HTTP/1.1"),
            Err(Refusal::BadRequest)
        );
        assert_eq!(parse_request(&root(), "GET"), Err(Refusal::BadRequest));
    }

    #[test]
    fn serves_a_file_and_paces_it() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("blob"), &data).unwrap();
        std::fs::write(dir.path().join(RATE_FILE), "1024\n").unwrap();
        assert_eq!(rate_limit(dir.path()), Some(1024 * 1024));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let root = dir.path().to_path_buf();
        let t = std::thread::spawn(move || {
            for _ in 0..2 {
                let (s, _) = l.accept().unwrap();
                serve(s, &root).unwrap();
            }
        });
        let fetch = |path: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut raw = Vec::new();
            s.read_to_end(&mut raw).unwrap();
            raw
        };
        let started = Instant::now();
        let raw = fetch("/blob");
        // 200 000 bytes at 1 MiB/s cannot arrive in less than ~0.19 s.
        assert!(started.elapsed() >= Duration::from_millis(150));
        let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(raw.starts_with(b"HTTP/1.1 200 OK"));
        assert_eq!(&raw[at..], &data[..]);
        let missing = fetch("/nothing");
        assert!(missing.starts_with(b"HTTP/1.1 404"));
        t.join().unwrap();
    }
}
