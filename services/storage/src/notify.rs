//! `STATUS=` lines for the supervisor (the sd_notify protocol cairn-init
//! speaks), so `cairnctl status` shows where the bootstrap stands.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// Sends `message` to `$NOTIFY_SOCKET`; `Ok(false)` when there is none.
pub fn notify(message: &str) -> std::io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        None => Ok(false),
        Some(path) => notify_to(Path::new(&path), message).map(|()| true),
    }
}

/// Sends `message` to the datagram socket at `path`.
pub fn notify_to(path: &Path, message: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    sock.send_to(message.as_bytes(), path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reaches_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        notify_to(&path, "STATUS=leader: waiting").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=leader: waiting");
        assert!(notify_to(&dir.path().join("none.sock"), "x").is_err());
    }
}
