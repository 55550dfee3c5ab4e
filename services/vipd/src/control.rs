//! Serving `org.cairn.Vip1` on the control socket from the published [`Snapshot`].

use std::path::Path;
use std::sync::Arc;

use cairn_control::{ControlServer, ServerError, VipBackend};

use crate::status::Snapshot;

/// Starts serving `org.cairn.Vip1` on `socket` from a `cairn-control` thread, answering
/// from `snapshot`. Call it after blocking signals: the thread inherits the mask.
pub fn serve(socket: &Path, snapshot: &Snapshot) -> Result<ControlServer, ServerError> {
    let backend: Arc<dyn VipBackend> = Arc::new(snapshot.clone());
    cairn_control::serve_vip(socket, backend)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn control_socket_answers_from_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("vipd.sock");
        let snapshot = Snapshot::default();
        let _server = serve(&sock, &snapshot).unwrap();
        let status = cairn_control::VipInstanceStatus {
            name: "web".into(),
            vrid: 51,
            interface: "eth0".into(),
            state: "master".into(),
            priority: 150,
            effective_priority: 50,
            master: "192.0.2.11".into(),
            vips: vec!["192.0.2.100/24".into()],
            checks: vec!["haproxy=failing (refused)".into()],
            counters: vec![("adverts_tx".into(), 3)],
            in_state_ms: 0,
        };
        snapshot.publish(vec![(status.clone(), Instant::now())]);
        let client =
            cairn_control::VipClient::connect_with_timeout(&sock, Duration::from_secs(5)).unwrap();
        let got = client.instances().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            cairn_control::VipInstanceStatus {
                in_state_ms: 0,
                ..got[0].clone()
            },
            status
        );
    }
}
