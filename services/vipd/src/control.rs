//! Serving `org.cairn.Vip1` on the control socket: `Instances` from the published
//! [`Snapshot`], `SetMaintenance` as a [`Maintenance`] switch the main loop picks up.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_control::{BackendError, ControlServer, ServerError, VipBackend, VipInstanceStatus};

use crate::probe::Waker;
use crate::status::Snapshot;

/// The maintenance switch: written by the control thread, read by the main loop, which the
/// write wakes.
#[derive(Debug, Clone)]
pub struct Maintenance {
    on: Arc<AtomicBool>,
    waker: Waker,
}

impl Maintenance {
    /// A switch that starts off and wakes the main loop through `waker` when flipped.
    pub fn new(waker: Waker) -> Self {
        Maintenance {
            on: Arc::new(AtomicBool::new(false)),
            waker,
        }
    }

    /// Whether maintenance mode is requested.
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// Requests maintenance mode on or off and wakes the main loop.
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::Release);
        self.waker.wake();
    }
}

/// What the control thread answers from.
struct Backend {
    snapshot: Snapshot,
    maintenance: Maintenance,
}

impl VipBackend for Backend {
    fn instances(&self) -> Vec<VipInstanceStatus> {
        self.snapshot.read()
    }

    fn set_maintenance(&self, on: bool) -> Result<(), BackendError> {
        tracing::info!(
            "maintenance mode {} requested over the control API",
            if on { "on" } else { "off" }
        );
        self.maintenance.set(on);
        Ok(())
    }
}

/// Starts serving `org.cairn.Vip1` on `socket` from a `cairn-control` thread, answering
/// from `snapshot` and flipping `maintenance`. Call it after blocking signals: the thread
/// inherits the mask.
pub fn serve(
    socket: &Path,
    snapshot: &Snapshot,
    maintenance: &Maintenance,
) -> Result<ControlServer, ServerError> {
    let backend: Arc<dyn VipBackend> = Arc::new(Backend {
        snapshot: snapshot.clone(),
        maintenance: maintenance.clone(),
    });
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
        let (waker, wake_rx) = Waker::pair().unwrap();
        let maintenance = Maintenance::new(waker);
        let _server = serve(&sock, &snapshot, &maintenance).unwrap();
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
            maintenance: false,
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
        // SetMaintenance (the tests run as root) flips the switch and wakes the loop.
        assert!(!maintenance.is_on());
        client.set_maintenance(true).unwrap();
        assert!(maintenance.is_on());
        let mut byte = [0u8; 1];
        wake_rx.set_nonblocking(false).unwrap();
        wake_rx
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(std::io::Read::read(&mut &wake_rx, &mut byte).unwrap(), 1);
        client.set_maintenance(false).unwrap();
        assert!(!maintenance.is_on());
    }
}
