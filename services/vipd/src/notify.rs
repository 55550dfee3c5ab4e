//! Readiness for the supervisor: `READY=1` to `$NOTIFY_SOCKET` (the sd_notify protocol that
//! cairn-init and systemd speak).

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `message` to the socket named by `$NOTIFY_SOCKET`; `Ok(false)` when the variable is
/// unset (not supervised). A leading `@` names an abstract socket.
pub fn notify(message: &str) -> io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(path) => {
            send_to(&path.to_string_lossy(), message)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Sends one datagram to `path` (`@name`: abstract).
pub fn send_to(path: &str, message: &str) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(path)?,
    };
    socket.send_to_addr(message.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reaches_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        send_to(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn ready_reaches_an_abstract_socket() {
        let name = format!("cairn-vipd-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(&format!("@{name}"), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert!(send_to("/nonexistent/notify.sock", "READY=1").is_err());
    }
}
