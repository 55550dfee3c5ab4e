//! `org.cairn.Update1`, the interface cairn-updated serves: `Status`, open to every local uid,
//! and `Upgrade`, for uid 0 only.

use std::sync::Arc;

use zbus::Message;

use crate::dispatch::{CallError, Reply, Service, body, unknown_method};
use crate::error_names;
use crate::init_service::backend_error;
use crate::update::{UPDATE_INTERFACE, UPDATE_PATH, UpdateBackend};

/// Introspection data for [`UPDATE_PATH`], so generic tools (`busctl introspect`) work.
pub(crate) const INTROSPECTION_XML: &str = r#"<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
  <interface name="org.cairn.Update1">
    <method name="Status">
      <arg name="status" type="(sssa(sssbbbu)tssasstt)" direction="out"/>
    </method>
    <method name="Upgrade">
      <arg name="now" type="b" direction="in"/>
      <arg name="check" type="t" direction="out"/>
    </method>
  </interface>
  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"/>
  </interface>
  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect">
      <arg name="xml_data" type="s" direction="out"/>
    </method>
  </interface>
</node>
"#;

/// A parsed call of an `org.cairn.Update1` method.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum UpdateRequest {
    Status,
    Upgrade(bool),
}

/// `org.cairn.Update1` served from an [`UpdateBackend`].
pub(crate) struct UpdateService {
    pub(crate) backend: Arc<dyn UpdateBackend>,
}

impl Service for UpdateService {
    const INTERFACE: &'static str = UPDATE_INTERFACE;
    const PATH: &'static str = UPDATE_PATH;
    const SERVER: &'static str = "cairn-updated";
    const INTROSPECTION_XML: &'static str = INTROSPECTION_XML;
    type Request = UpdateRequest;

    fn parse(member: &str, message: &Message) -> Result<UpdateRequest, CallError> {
        match member {
            "Status" => {
                body::<()>(message, member)?;
                Ok(UpdateRequest::Status)
            }
            "Upgrade" => Ok(UpdateRequest::Upgrade(body::<(bool,)>(message, member)?.0)),
            other => Err(unknown_method(UPDATE_INTERFACE, other)),
        }
    }

    /// `Status` is open to every uid; `Upgrade` needs uid 0.
    fn handle(&self, request: UpdateRequest, peer_uid: u32) -> Result<Reply, CallError> {
        match request {
            UpdateRequest::Status => Ok(Reply::UpdateStatus(Box::new(self.backend.status()))),
            UpdateRequest::Upgrade(now) => {
                if peer_uid != 0 {
                    return Err(CallError::new(
                        error_names::ACCESS_DENIED,
                        format!(
                            "uid {peer_uid} may not call Upgrade: installing an update needs uid 0"
                        ),
                    ));
                }
                self.backend
                    .upgrade(now)
                    .map(Reply::Check)
                    .map_err(backend_error)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::BackendError;
    use crate::dispatch::{Call, Handler, INVALID_ARGS, UNKNOWN_METHOD, parse, test_call as call};
    use crate::update::{SlotStatus, UpdateStatus};
    use std::sync::Mutex;
    use zbus::zvariant::Type;

    fn status() -> UpdateStatus {
        UpdateStatus {
            state: "idle".into(),
            running_version: "0.1.0".into(),
            booted_slot: "a".into(),
            slots: vec![SlotStatus {
                slot: "a".into(),
                version: "0.1.0".into(),
                entry: "cairn-0.1.0.efi".into(),
                booted: true,
                default: true,
                blessed: true,
                tries_left: 0,
            }],
            last_check: 5,
            last_result: "up to date".into(),
            last_error: String::new(),
            failed: vec![],
            url: "http://192.0.2.250/".into(),
            requested: 1,
            done: 1,
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
            upgrades.push(now);
            Ok(upgrades.len() as u64 + 1)
        }
    }

    fn handler(uid: u32) -> (Handler<UpdateService>, Arc<Fake>) {
        let fake = Arc::new(Fake::default());
        let handler = Handler {
            service: Arc::new(UpdateService {
                backend: fake.clone(),
            }),
            peer_uid: uid,
        };
        (handler, fake)
    }

    #[test]
    fn parses_methods_and_rejects_bad_arguments() {
        let msg =
            |member: &str, body: &(bool,)| call(UPDATE_PATH, Some(UPDATE_INTERFACE), member, body);
        assert_eq!(
            parse::<UpdateService>(&call(UPDATE_PATH, Some(UPDATE_INTERFACE), "Status", &())),
            Ok(Call::Method(UpdateRequest::Status))
        );
        assert_eq!(
            parse::<UpdateService>(&msg("Upgrade", &(true,))),
            Ok(Call::Method(UpdateRequest::Upgrade(true)))
        );
        assert_eq!(
            parse::<UpdateService>(&msg("Status", &(true,)))
                .unwrap_err()
                .name,
            INVALID_ARGS
        );
        assert_eq!(
            parse::<UpdateService>(&call(UPDATE_PATH, Some(UPDATE_INTERFACE), "Upgrade", &()))
                .unwrap_err()
                .name,
            INVALID_ARGS
        );
        assert_eq!(
            parse::<UpdateService>(&msg("Reboot", &(true,)))
                .unwrap_err()
                .name,
            UNKNOWN_METHOD
        );
    }

    #[test]
    fn upgrade_needs_uid_0_and_status_does_not() {
        let (user, fake) = handler(1000);
        assert_eq!(
            user.handle(Call::Method(UpdateRequest::Status)),
            Ok(Reply::UpdateStatus(Box::new(status())))
        );
        let denied = user
            .handle(Call::Method(UpdateRequest::Upgrade(false)))
            .unwrap_err();
        assert_eq!(denied.name, error_names::ACCESS_DENIED);
        assert!(fake.upgrades.lock().unwrap().is_empty());
        let (root, fake) = handler(0);
        assert_eq!(
            root.handle(Call::Method(UpdateRequest::Upgrade(true))),
            Ok(Reply::Check(2))
        );
        assert_eq!(*fake.upgrades.lock().unwrap(), vec![true]);
    }

    #[test]
    fn introspection_matches_the_wire_types() {
        let sig = <UpdateStatus as Type>::SIGNATURE.to_string();
        assert_eq!(sig, "(sssa(sssbbbu)tssasstt)");
        assert!(INTROSPECTION_XML.contains(&format!("type=\"{sig}\"")));
        assert_eq!(INTROSPECTION_XML.matches("<method ").count(), 4);
    }
}
