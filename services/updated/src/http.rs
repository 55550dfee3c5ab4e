//! A small HTTP/1.1 GET client for the repository: plain `http://` (the signatures carry the
//! trust), one request per connection, bounded connect and read timeouts, bodies streamed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Bound on connecting to the server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on each read or write once connected.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response header accepted.
const MAX_HEADER: usize = 16 * 1024;

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not `http://host[:port]/path`.
    #[error("{url}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// Connecting, sending or receiving failed.
    #[error("{url}: {source}")]
    Io {
        /// The URL.
        url: String,
        /// The error.
        source: std::io::Error,
    },
    /// The server answered something other than 200.
    #[error("{url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status line after the version, e.g. `404 Not Found`.
        status: String,
    },
    /// The response could not be understood or is too large.
    #[error("{url}: {reason}")]
    Response {
        /// The URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

/// `host[:port]` and path of an `http://` URL.
fn split_url(url: &str) -> Result<(String, String), HttpError> {
    let bad = |reason| HttpError::Url {
        url: url.to_owned(),
        reason,
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// URLs are supported"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if !url.chars().all(|c| c.is_ascii_graphic()) {
        return Err(bad("not printable ASCII"));
    }
    let authority = if host.ends_with(']') || !host.contains(':') {
        format!("{host}:80")
    } else {
        host.to_owned()
    };
    Ok((authority, path.to_owned()))
}

/// A response body being received; reads at most `len` bytes when the length is known.
pub struct Body {
    reader: std::io::Take<BufReader<TcpStream>>,
    /// `Content-Length`, if the server sent one.
    pub len: Option<u64>,
    url: String,
}

impl Body {
    /// The URL this body comes from, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader.read(buf)
    }
}

/// Sends `GET url` and returns the body of a 200 response.
pub fn get(url: &str) -> Result<Body, HttpError> {
    let (authority, path) = split_url(url)?;
    let io = |source| HttpError::Io {
        url: url.to_owned(),
        source,
    };
    let addrs: Vec<_> = authority.to_socket_addrs().map_err(io)?.collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let stream = stream.ok_or_else(|| io(last))?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    let host = authority.strip_suffix(":80").unwrap_or(&authority);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cairn-updated\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
    );
    (&stream).write_all(request.as_bytes()).map_err(io)?;
    let mut reader = BufReader::new(stream);
    let response = |reason: String| HttpError::Response {
        url: url.to_owned(),
        reason,
    };
    let mut header_bytes = 0usize;
    let mut line = String::new();
    let mut read_line = |reader: &mut BufReader<TcpStream>, line: &mut String| {
        line.clear();
        let n = reader
            .by_ref()
            .take((MAX_HEADER - header_bytes.min(MAX_HEADER)) as u64)
            .read_line(line)
            .map_err(io)?;
        header_bytes += n;
        if n == 0 || !line.ends_with('\n') {
            return Err(response("response header ends early or is too long".into()));
        }
        Ok(line.trim_end().to_owned())
    };
    let status_line = read_line(&mut reader, &mut line)?;
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .ok_or_else(|| response(format!("not an HTTP response: {status_line:?}")))?
        .to_owned();
    let mut len = None;
    loop {
        let header = read_line(&mut reader, &mut line)?;
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            len = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| response(format!("bad Content-Length {value:?}")))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && !value.eq_ignore_ascii_case("identity")
        {
            return Err(response(format!(
                "Transfer-Encoding {value} is not supported"
            )));
        }
    }
    if !status.starts_with("200") {
        return Err(HttpError::Status {
            url: url.to_owned(),
            status,
        });
    }
    Ok(Body {
        reader: reader.take(len.unwrap_or(u64::MAX)),
        len,
        url: url.to_owned(),
    })
}

/// GETs a small file whole, refusing more than `max` bytes.
pub fn get_small(url: &str, max: u64) -> Result<Vec<u8>, HttpError> {
    let body = get(url)?;
    if body.len.is_some_and(|l| l > max) {
        return Err(HttpError::Response {
            url: url.to_owned(),
            reason: format!("larger than {max} bytes"),
        });
    }
    let mut out = Vec::new();
    body.take(max + 1)
        .read_to_end(&mut out)
        .map_err(|source| HttpError::Io {
            url: url.to_owned(),
            source,
        })?;
    if out.len() as u64 > max {
        return Err(HttpError::Response {
            url: url.to_owned(),
            reason: format!("larger than {max} bytes"),
        });
    }
    Ok(out)
}

/// `base` (ending in `/`) joined with a relative `path`.
pub fn join(base: &str, path: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{path}")
    } else {
        format!("{base}/{path}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(response: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            s.write_all(response).unwrap();
        });
        format!("http://127.0.0.1:{port}/repo/index.json")
    }

    #[test]
    fn reads_a_body_with_and_without_length() {
        let url = serve_once(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello and more");
        assert_eq!(get_small(&url, 100).unwrap(), b"hello");
        let url = serve_once(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nto the end");
        assert_eq!(get_small(&url, 100).unwrap(), b"to the end");
    }

    #[test]
    fn errors_name_the_url_and_status() {
        let url = serve_once(b"HTTP/1.0 404 Not Found\r\n\r\n");
        let err = get(&url).err().unwrap().to_string();
        assert_eq!(err, format!("{url}: HTTP 404 Not Found"));
        let url = serve_once(b"HTTP/1.0 200 OK\r\nContent-Length: 500\r\n\r\n");
        assert!(
            get_small(&url, 100)
                .unwrap_err()
                .to_string()
                .contains("larger than 100")
        );
        let url = serve_once(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(get(&url).err().unwrap().to_string().contains("chunked"));
        assert!(get("https://example.com/").is_err());
        assert_eq!(join("http://h/r/", "index.json"), "http://h/r/index.json");
        assert_eq!(join("http://h/r", "x"), "http://h/r/x");
    }
}
