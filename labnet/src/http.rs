//! The two ends of the lab's HTTP check: the responder's request handling and the probe's
//! single GET, std only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The full response the responder sends for `body`.
pub fn response(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Serves one connection: reads the request head (up to 8 KiB or a 2 s timeout), answers
/// 200 with `body`, closes.
pub fn serve(mut stream: TcpStream, body: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_nodelay(true)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    stream.write_all(response(body).as_bytes())?;
    stream.flush()
}

/// Splits a raw HTTP/1.x response into status code and body.
pub fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("incomplete response ({} bytes)", raw.len()))?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "no status line".to_owned())?;
    Ok((status, body.trim().to_owned()))
}

/// One `GET /` to `addr` within `timeout` (connect, write and read together); the body
/// of a 200, or what went wrong.
pub fn get(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| "timed out".to_owned())
    };
    let mut s = TcpStream::connect_timeout(&addr, left()?).map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    s.set_write_timeout(Some(left()?))
        .map_err(|e| format!("timeout: {e}"))?;
    let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        s.set_read_timeout(Some(left().map_err(|e| format!("read: {e}"))?))
            .map_err(|e| format!("timeout: {e}"))?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    match parse_response(&raw)? {
        (200, body) => Ok(body),
        (code, _) => Err(format!("status {code}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_parses_back() {
        assert_eq!(
            parse_response(response("node-a\n").as_bytes()),
            Ok((200, "node-a".to_owned()))
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert_eq!(
            parse_response(b"HTTP/1.1 503 Busy\r\n\r\n"),
            Ok((503, String::new()))
        );
    }

    #[test]
    fn get_and_serve_talk_over_loopback() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            serve(s, "x\n").unwrap();
        });
        assert_eq!(get(addr, Duration::from_secs(5)), Ok("x".to_owned()));
        t.join().unwrap();
    }
}
