//! End-to-end tests of `org.cairn.Update1`: a fake cairn-updated served with `serve_update` on
//! a temp socket, called with `UpdateClient`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use cairn_control::{
    BackendError, ClientError, SlotStatus, UpdateBackend, UpdateClient, UpdateStatus, VipClient,
    serve_update,
};

fn status() -> UpdateStatus {
    UpdateStatus {
        state: "writing 3/18 MiB".into(),
        running_version: "0.1.0".into(),
        booted_slot: "b".into(),
        slots: vec![
            SlotStatus {
                slot: "a".into(),
                version: String::new(),
                entry: String::new(),
                booted: false,
                default: false,
                blessed: false,
                tries_left: 0,
            },
            SlotStatus {
                slot: "b".into(),
                version: "0.1.0".into(),
                entry: "cairn-0.1.0+2-1.efi".into(),
                booted: true,
                default: true,
                blessed: false,
                tries_left: 2,
            },
        ],
        last_check: 1_764_400_000,
        last_result: "installed 0.2.0".into(),
        last_error: "refused manifest: bad signature".into(),
        failed: vec!["0.1.5: did not become healthy in 3 boots; running 0.1.0 again".into()],
        url: "http://192.0.2.250:8080/".into(),
        requested: 4,
        done: 3,
    }
}

#[derive(Default)]
struct Fake {
    upgrades: Mutex<Vec<bool>>,
}

impl UpdateBackend for Fake {
    fn status(&self) -> UpdateStatus {
        status()
    }

    fn upgrade(&self, now: bool) -> Result<u64, BackendError> {
        let mut upgrades = self.upgrades.lock().unwrap();
        if upgrades.len() >= 2 {
            return Err(BackendError::Internal("updates are disabled".into()));
        }
        upgrades.push(now);
        Ok(4 + upgrades.len() as u64)
    }
}

#[test]
fn status_and_upgrade_round_trip() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "status_and_upgrade_round_trip must run as root: Upgrade needs uid 0"
    );
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("updated.sock");
    let fake = Arc::new(Fake::default());
    let _server = serve_update(&socket, fake.clone()).unwrap();
    let client = UpdateClient::connect(&socket).unwrap();
    assert_eq!(client.status().unwrap(), status());
    assert_eq!(client.upgrade(false).unwrap(), 5);
    assert_eq!(client.upgrade(true).unwrap(), 6);
    match client.upgrade(true) {
        Err(ClientError::DBus { name, message }) => {
            assert_eq!(name, "org.cairn.Error.Failed");
            assert!(message.contains("updates are disabled"), "{message}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(*fake.upgrades.lock().unwrap(), vec![false, true]);

    // A Vip1 client on the update socket gets a clear error.
    let vip = VipClient::connect(&socket).unwrap();
    match vip.instances() {
        Err(ClientError::DBus { name, .. }) => {
            assert_eq!(name, "org.freedesktop.DBus.Error.UnknownMethod")
        }
        other => panic!("expected UnknownMethod, got {other:?}"),
    }
}

#[test]
fn missing_socket_names_cairn_updated() {
    let dir = tempfile::tempdir().unwrap();
    let error = UpdateClient::connect(&dir.path().join("nope.sock")).unwrap_err();
    assert!(
        error.to_string().contains("is cairn-updated running?"),
        "{error}"
    );
}
