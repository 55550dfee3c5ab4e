//! `org.cairn.Vip1`, the interface cairn-vipd serves: `Instances`, open to every local uid,
//! and `SetMaintenance`, for uid 0 only.

use std::sync::Arc;

use zbus::Message;

use crate::dispatch::{CallError, Reply, Service, body, unknown_method};
use crate::error_names;
use crate::init_service::backend_error;
use crate::vip::{VIP_INTERFACE, VIP_PATH, VipBackend};

/// Introspection data for [`VIP_PATH`], so generic tools (`busctl introspect`) work.
pub(crate) const INTROSPECTION_XML: &str = r#"<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
  <interface name="org.cairn.Vip1">
    <method name="Instances">
      <arg name="instances" type="a(syssyysasasa(st)tb)" direction="out"/>
    </method>
    <method name="SetMaintenance">
      <arg name="on" type="b" direction="in"/>
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

/// A parsed call of an `org.cairn.Vip1` method.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum VipRequest {
    Instances,
    SetMaintenance(bool),
}

/// `org.cairn.Vip1` served from a [`VipBackend`].
pub(crate) struct VipService {
    pub(crate) backend: Arc<dyn VipBackend>,
}

impl Service for VipService {
    const INTERFACE: &'static str = VIP_INTERFACE;
    const PATH: &'static str = VIP_PATH;
    const SERVER: &'static str = "cairn-vipd";
    const INTROSPECTION_XML: &'static str = INTROSPECTION_XML;
    type Request = VipRequest;

    fn parse(member: &str, message: &Message) -> Result<VipRequest, CallError> {
        match member {
            "Instances" => {
                body::<()>(message, member)?;
                Ok(VipRequest::Instances)
            }
            "SetMaintenance" => Ok(VipRequest::SetMaintenance(
                body::<(bool,)>(message, member)?.0,
            )),
            other => Err(unknown_method(VIP_INTERFACE, other)),
        }
    }

    /// `Instances` is read-only and open to every uid; `SetMaintenance` needs uid 0.
    fn handle(&self, request: VipRequest, peer_uid: u32) -> Result<Reply, CallError> {
        match request {
            VipRequest::Instances => Ok(Reply::Instances(self.backend.instances())),
            VipRequest::SetMaintenance(on) => {
                if peer_uid != 0 {
                    return Err(CallError::new(
                        error_names::ACCESS_DENIED,
                        format!(
                            "uid {peer_uid} may not call SetMaintenance: moving virtual IPs needs uid 0"
                        ),
                    ));
                }
                self.backend
                    .set_maintenance(on)
                    .map(|()| Reply::Empty)
                    .map_err(backend_error)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::dispatch::{
        BUS_INTERFACE, Call, Handler, INTROSPECTABLE_INTERFACE, INVALID_ARGS, PEER_INTERFACE,
        UNKNOWN_METHOD, UNKNOWN_OBJECT, parse, test_call as call,
    };
    use crate::vip::VipInstanceStatus;
    use crate::{INIT_INTERFACE, INIT_PATH};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use zbus::zvariant::Type;

    fn instance(name: &str) -> VipInstanceStatus {
        VipInstanceStatus {
            name: name.into(),
            vrid: 51,
            interface: "eth1".into(),
            state: "master".into(),
            priority: 100,
            effective_priority: 90,
            master: "192.0.2.2".into(),
            vips: vec!["192.0.2.10/24".into()],
            checks: vec!["web=failing (refused)".into()],
            counters: vec![("adverts_rx".into(), 7)],
            in_state_ms: 1234,
            maintenance: false,
        }
    }

    /// Counts `instances` calls; has two instances; remembers the last maintenance switch.
    #[derive(Default)]
    struct Counter {
        calls: AtomicUsize,
        maintenance: std::sync::Mutex<Option<bool>>,
    }

    impl VipBackend for Counter {
        fn instances(&self) -> Vec<VipInstanceStatus> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            vec![instance("lb-a"), instance("lb-b")]
        }

        fn set_maintenance(&self, on: bool) -> Result<(), crate::BackendError> {
            *self.maintenance.lock().unwrap() = Some(on);
            Ok(())
        }
    }

    fn handler(uid: u32) -> (Handler<VipService>, Arc<Counter>) {
        let counter = Arc::new(Counter::default());
        let handler = Handler {
            service: Arc::new(VipService {
                backend: counter.clone(),
            }),
            peer_uid: uid,
        };
        (handler, counter)
    }

    fn vip_call<B>(member: &str, body: &B) -> Message
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        call(VIP_PATH, Some(VIP_INTERFACE), member, body)
    }

    fn parse_vip(message: &Message) -> Result<Call<VipRequest>, CallError> {
        parse::<VipService>(message)
    }

    #[test]
    fn parses_every_method() {
        assert_eq!(
            parse_vip(&vip_call("Instances", &())),
            Ok(Call::Method(VipRequest::Instances))
        );
        assert_eq!(
            parse_vip(&call(VIP_PATH, None, "Instances", &())),
            Ok(Call::Method(VipRequest::Instances))
        );
        assert_eq!(
            parse_vip(&vip_call("SetMaintenance", &(true,))),
            Ok(Call::Method(VipRequest::SetMaintenance(true)))
        );
        assert_eq!(
            parse_vip(&call("/anywhere", Some(PEER_INTERFACE), "Ping", &())),
            Ok(Call::Ping)
        );
        assert_eq!(
            parse_vip(&call(
                "/org/freedesktop/DBus",
                Some(BUS_INTERFACE),
                "Hello",
                &()
            )),
            Ok(Call::Hello)
        );
        assert_eq!(
            parse_vip(&call(
                VIP_PATH,
                Some(INTROSPECTABLE_INTERFACE),
                "Introspect",
                &()
            )),
            Ok(Call::Introspect)
        );
    }

    #[test]
    fn rejects_wrong_arguments_methods_and_objects() {
        let error = |m: &Message| parse_vip(m).unwrap_err();
        assert_eq!(
            error(&vip_call("Instances", &("extra",))).name,
            INVALID_ARGS
        );
        assert_eq!(
            error(&vip_call("SetMaintenance", &("yes",))).name,
            INVALID_ARGS
        );
        let unknown = error(&vip_call("Start", &("web",)));
        assert_eq!(unknown.name, UNKNOWN_METHOD);
        assert_eq!(unknown.message, "org.cairn.Vip1 has no method \"Start\"");
        // Init1's interface and path are not served by cairn-vipd.
        assert_eq!(
            error(&call(INIT_PATH, Some(INIT_INTERFACE), "ListServices", &())).name,
            UNKNOWN_METHOD
        );
        let wrong_path = error(&call(INIT_PATH, Some(VIP_INTERFACE), "Instances", &()));
        assert_eq!(wrong_path.name, UNKNOWN_OBJECT);
        assert_eq!(
            wrong_path.message,
            "no object at /org/cairn/Init1; cairn-vipd serves /org/cairn/Vip1"
        );
        assert_eq!(
            error(&call(
                INIT_PATH,
                Some(INTROSPECTABLE_INTERFACE),
                "Introspect",
                &()
            ))
            .name,
            UNKNOWN_METHOD
        );
        assert_eq!(
            error(&call(
                VIP_PATH,
                Some("org.freedesktop.DBus.Properties"),
                "GetAll",
                &(VIP_INTERFACE,)
            ))
            .name,
            UNKNOWN_METHOD
        );
    }

    #[test]
    fn instances_is_open_to_every_uid_and_reaches_the_backend() {
        for uid in [0, 1000, 65534] {
            let (handler, counter) = handler(uid);
            assert_eq!(
                handler.handle(Call::Method(VipRequest::Instances)),
                Ok(Reply::Instances(vec![instance("lb-a"), instance("lb-b")]))
            );
            assert_eq!(counter.calls.load(Ordering::SeqCst), 1);
            assert_eq!(handler.handle(Call::Ping), Ok(Reply::Empty));
            assert_eq!(handler.handle(Call::Hello), Ok(Reply::Name(":1.0")));
            assert_eq!(
                handler.handle(Call::Introspect),
                Ok(Reply::Xml(INTROSPECTION_XML))
            );
            // The standard methods never reach the backend.
            assert_eq!(counter.calls.load(Ordering::SeqCst), 1);
        }
    }

    #[test]
    fn set_maintenance_needs_uid_0() {
        let (handler, counter) = handler(1000);
        let denied = handler
            .handle(Call::Method(VipRequest::SetMaintenance(true)))
            .unwrap_err();
        assert_eq!(denied.name, crate::error_names::ACCESS_DENIED);
        assert!(denied.message.contains("uid 1000"), "{}", denied.message);
        assert_eq!(*counter.maintenance.lock().unwrap(), None);
        let (handler, counter) = handler_root();
        assert_eq!(
            handler.handle(Call::Method(VipRequest::SetMaintenance(true))),
            Ok(Reply::Empty)
        );
        assert_eq!(*counter.maintenance.lock().unwrap(), Some(true));
        assert_eq!(
            handler.handle(Call::Method(VipRequest::SetMaintenance(false))),
            Ok(Reply::Empty)
        );
        assert_eq!(*counter.maintenance.lock().unwrap(), Some(false));
    }

    fn handler_root() -> (Handler<VipService>, Arc<Counter>) {
        handler(0)
    }

    #[test]
    fn introspection_matches_the_wire_types() {
        let instances = <Vec<VipInstanceStatus> as Type>::SIGNATURE.to_string();
        assert_eq!(instances, "a(syssyysasasa(st)tb)");
        assert!(INTROSPECTION_XML.contains(&format!("type=\"{instances}\"")));
        assert!(INTROSPECTION_XML.contains("<method name=\"Instances\""));
        assert!(INTROSPECTION_XML.contains(&format!("<interface name=\"{VIP_INTERFACE}\"")));
        assert!(INTROSPECTION_XML.contains("<method name=\"SetMaintenance\""));
        assert_eq!(INTROSPECTION_XML.matches("<method ").count(), 4);
    }
}
