//! `org.cairn.Init1`, the interface cairn-init serves: parse its methods, check the caller's
//! uid, forward to the [`InitBackend`], map errors in one place.

use std::sync::Arc;

use zbus::Message;

use crate::backend::{BackendError, InitBackend};
use crate::dispatch::{CallError, Reply, Service, body, unknown_method};
use crate::server::MAX_LOG_LINES_PER_CALL;
use crate::types::PowerAction;
use crate::{INIT_INTERFACE, INIT_PATH, error_names};

/// Introspection data for [`INIT_PATH`], so generic tools (`busctl introspect`) work.
pub(crate) const INTROSPECTION_XML: &str = r#"<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
  <interface name="org.cairn.Init1">
    <method name="ListServices">
      <arg name="services" type="a(ssuubs)" direction="out"/>
    </method>
    <method name="Start">
      <arg name="name" type="s" direction="in"/>
    </method>
    <method name="Stop">
      <arg name="name" type="s" direction="in"/>
    </method>
    <method name="Restart">
      <arg name="name" type="s" direction="in"/>
    </method>
    <method name="Logs">
      <arg name="name" type="s" direction="in"/>
      <arg name="after_seq" type="t" direction="in"/>
      <arg name="max" type="u" direction="in"/>
      <arg name="lines" type="a(ttss)" direction="out"/>
    </method>
    <method name="Power">
      <arg name="action" type="s" direction="in"/>
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

/// The one place backend errors become D-Bus errors.
pub(crate) fn backend_error(error: BackendError) -> CallError {
    let name = match &error {
        BackendError::UnknownService(_) => error_names::UNKNOWN_SERVICE,
        BackendError::ShuttingDown => error_names::SHUTTING_DOWN,
        BackendError::Internal(_) => error_names::FAILED,
    };
    CallError::new(name, error.to_string())
}

/// A parsed call of an `org.cairn.Init1` method.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InitRequest {
    ListServices,
    Start(String),
    Stop(String),
    Restart(String),
    Logs {
        name: String,
        after_seq: u64,
        max: u32,
    },
    Power(String),
}

impl InitRequest {
    /// The D-Bus method name, for messages.
    fn method(&self) -> &'static str {
        match self {
            InitRequest::ListServices => "ListServices",
            InitRequest::Start(_) => "Start",
            InitRequest::Stop(_) => "Stop",
            InitRequest::Restart(_) => "Restart",
            InitRequest::Logs { .. } => "Logs",
            InitRequest::Power(_) => "Power",
        }
    }

    /// Whether the call changes services or power state, and so needs uid 0.
    fn mutates(&self) -> bool {
        matches!(
            self,
            InitRequest::Start(_)
                | InitRequest::Stop(_)
                | InitRequest::Restart(_)
                | InitRequest::Power(_)
        )
    }
}

/// `org.cairn.Init1` served from an [`InitBackend`].
pub(crate) struct InitService {
    pub(crate) backend: Arc<dyn InitBackend>,
}

impl Service for InitService {
    const INTERFACE: &'static str = INIT_INTERFACE;
    const PATH: &'static str = INIT_PATH;
    const SERVER: &'static str = "cairn-init";
    const INTROSPECTION_XML: &'static str = INTROSPECTION_XML;
    type Request = InitRequest;

    fn parse(member: &str, message: &Message) -> Result<InitRequest, CallError> {
        Ok(match member {
            "ListServices" => {
                body::<()>(message, member)?;
                InitRequest::ListServices
            }
            "Start" => InitRequest::Start(body::<(String,)>(message, member)?.0),
            "Stop" => InitRequest::Stop(body::<(String,)>(message, member)?.0),
            "Restart" => InitRequest::Restart(body::<(String,)>(message, member)?.0),
            "Logs" => {
                let (name, after_seq, max) = body::<(String, u64, u32)>(message, member)?;
                InitRequest::Logs {
                    name,
                    after_seq,
                    max,
                }
            }
            "Power" => InitRequest::Power(body::<(String,)>(message, member)?.0),
            other => return Err(unknown_method(INIT_INTERFACE, other)),
        })
    }

    fn handle(&self, request: InitRequest, peer_uid: u32) -> Result<Reply, CallError> {
        if request.mutates() && peer_uid != 0 {
            return Err(CallError::new(
                error_names::ACCESS_DENIED,
                format!(
                    "uid {peer_uid} may not call {}: changing services or power state needs uid 0",
                    request.method()
                ),
            ));
        }
        let backend = &*self.backend;
        let empty =
            |result: Result<(), BackendError>| result.map(|()| Reply::Empty).map_err(backend_error);
        match request {
            InitRequest::ListServices => Ok(Reply::Services(backend.list_services())),
            InitRequest::Start(name) => empty(backend.start(service_name(&name)?)),
            InitRequest::Stop(name) => empty(backend.stop(service_name(&name)?)),
            InitRequest::Restart(name) => empty(backend.restart(service_name(&name)?)),
            InitRequest::Logs {
                name,
                after_seq,
                max,
            } => {
                let max = max.min(MAX_LOG_LINES_PER_CALL);
                let mut lines = backend
                    .logs(service_name(&name)?, after_seq, max)
                    .map_err(backend_error)?;
                lines.truncate(max as usize);
                Ok(Reply::Logs(lines))
            }
            InitRequest::Power(action) => {
                let action = PowerAction::parse(&action).ok_or_else(|| {
                    CallError::new(
                        error_names::INVALID_ARGUMENT,
                        format!(
                            "unknown power action \"{action}\" (expected \"reboot\" or \"poweroff\")"
                        ),
                    )
                })?;
                empty(backend.power(action))
            }
        }
    }
}

/// Rejects an empty service name before it reaches the backend.
fn service_name(name: &str) -> Result<&str, CallError> {
    if name.is_empty() {
        Err(CallError::new(
            error_names::INVALID_ARGUMENT,
            "service name is empty",
        ))
    } else {
        Ok(name)
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
    use crate::types::{LogLine, ServiceStatus};
    use std::sync::Mutex;
    use zbus::zvariant::Type;

    /// Records what reaches it; `web` is the only service.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
    }

    impl Recorder {
        fn calls(&self) -> Vec<String> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
        fn record(&self, call: String) -> Result<(), BackendError> {
            if let Ok(mut calls) = self.calls.lock() {
                calls.push(call);
            }
            Ok(())
        }
    }

    impl InitBackend for Recorder {
        fn list_services(&self) -> Vec<ServiceStatus> {
            let _ = self.record("list".into());
            vec![]
        }
        fn start(&self, name: &str) -> Result<(), BackendError> {
            self.record(format!("start {name}"))
        }
        fn stop(&self, name: &str) -> Result<(), BackendError> {
            self.record(format!("stop {name}"))
        }
        fn restart(&self, name: &str) -> Result<(), BackendError> {
            self.record(format!("restart {name}"))
        }
        fn logs(&self, name: &str, after: u64, max: u32) -> Result<Vec<LogLine>, BackendError> {
            self.record(format!("logs {name} {after} {max}"))?;
            Ok((1..=u64::from(max) + 5)
                .map(|seq| LogLine {
                    seq,
                    t_ms: 0,
                    stream: "stdout".into(),
                    text: String::new(),
                })
                .collect())
        }
        fn power(&self, action: PowerAction) -> Result<(), BackendError> {
            self.record(format!("power {}", action.as_str()))
        }
    }

    fn handler(uid: u32) -> (Handler<InitService>, Arc<Recorder>) {
        let recorder = Arc::new(Recorder::default());
        let handler = Handler {
            service: Arc::new(InitService {
                backend: recorder.clone(),
            }),
            peer_uid: uid,
        };
        (handler, recorder)
    }

    fn handler_root() -> (Handler<InitService>, Arc<Recorder>) {
        handler(0)
    }

    fn init_call<B>(member: &str, body: &B) -> Message
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        call(INIT_PATH, Some(INIT_INTERFACE), member, body)
    }

    fn parse_init(message: &Message) -> Result<Call<InitRequest>, CallError> {
        parse::<InitService>(message)
    }

    fn method(request: InitRequest) -> Call<InitRequest> {
        Call::Method(request)
    }

    #[test]
    fn parses_every_method() {
        assert_eq!(
            parse_init(&init_call("ListServices", &())),
            Ok(method(InitRequest::ListServices))
        );
        assert_eq!(
            parse_init(&init_call("Start", &("web",))),
            Ok(method(InitRequest::Start("web".into())))
        );
        assert_eq!(
            parse_init(&init_call("Stop", &("web",))),
            Ok(method(InitRequest::Stop("web".into())))
        );
        assert_eq!(
            parse_init(&init_call("Restart", &("web",))),
            Ok(method(InitRequest::Restart("web".into())))
        );
        assert_eq!(
            parse_init(&init_call("Logs", &("web", 7u64, 3u32))),
            Ok(method(InitRequest::Logs {
                name: "web".into(),
                after_seq: 7,
                max: 3
            }))
        );
        assert_eq!(
            parse_init(&init_call("Power", &("reboot",))),
            Ok(method(InitRequest::Power("reboot".into())))
        );
        // The interface field is optional in D-Bus.
        assert_eq!(
            parse_init(&call(INIT_PATH, None, "Start", &("web",))),
            Ok(method(InitRequest::Start("web".into())))
        );
        assert_eq!(
            parse_init(&call("/anywhere", Some(PEER_INTERFACE), "Ping", &())),
            Ok(Call::Ping)
        );
        assert_eq!(
            parse_init(&call(
                "/org/freedesktop/DBus",
                Some(BUS_INTERFACE),
                "Hello",
                &()
            )),
            Ok(Call::Hello)
        );
        assert_eq!(
            parse_init(&call(
                INIT_PATH,
                Some(INTROSPECTABLE_INTERFACE),
                "Introspect",
                &()
            )),
            Ok(Call::Introspect)
        );
    }

    #[test]
    fn rejects_wrong_arguments_methods_and_objects() {
        let name = |m: &Message| parse_init(m).unwrap_err().name;
        assert_eq!(name(&init_call("Start", &(5u32,))), INVALID_ARGS);
        assert_eq!(name(&init_call("Logs", &("web", 1u32, 1u32))), INVALID_ARGS);
        assert_eq!(name(&init_call("ListServices", &("extra",))), INVALID_ARGS);
        assert_eq!(name(&init_call("Frobnicate", &())), UNKNOWN_METHOD);
        assert_eq!(
            name(&call(
                INIT_PATH,
                Some("org.example.Other"),
                "Start",
                &("web",)
            )),
            UNKNOWN_METHOD
        );
        assert_eq!(
            name(&call("/", Some(INIT_INTERFACE), "Start", &("web",))),
            UNKNOWN_OBJECT
        );
        // Introspection only on the object's path.
        assert_eq!(
            name(&call(
                "/",
                Some(INTROSPECTABLE_INTERFACE),
                "Introspect",
                &()
            )),
            UNKNOWN_METHOD
        );
        // The other control interface is not served here.
        assert_eq!(
            name(&call(
                crate::VIP_PATH,
                Some(crate::VIP_INTERFACE),
                "Instances",
                &()
            )),
            UNKNOWN_METHOD
        );
        let error = parse_init(&init_call("Start", &(5u32,))).unwrap_err();
        assert!(error.message.contains("(s)"), "{}", error.message);
        let error = parse_init(&call("/", None, "Start", &("web",))).unwrap_err();
        assert_eq!(
            error.message,
            "no object at /; cairn-init serves /org/cairn/Init1"
        );
        let error = parse_init(&init_call("Frobnicate", &())).unwrap_err();
        assert_eq!(
            error.message,
            "org.cairn.Init1 has no method \"Frobnicate\""
        );
    }

    #[test]
    fn mutating_calls_need_uid_0_and_never_reach_the_backend_otherwise() {
        let (handler, recorder) = handler(1000);
        for request in [
            InitRequest::Start("web".into()),
            InitRequest::Stop("web".into()),
            InitRequest::Restart("web".into()),
            InitRequest::Power("reboot".into()),
        ] {
            let name = request.method();
            let error = handler.handle(method(request)).unwrap_err();
            assert_eq!(error.name, error_names::ACCESS_DENIED);
            assert_eq!(
                error.message,
                format!(
                    "uid 1000 may not call {name}: changing services or power state needs uid 0"
                )
            );
        }
        assert_eq!(recorder.calls(), Vec::<String>::new());
        assert_eq!(handler.handle(Call::Ping), Ok(Reply::Empty));
        assert_eq!(handler.handle(Call::Hello), Ok(Reply::Name(":1.0")));
        assert_eq!(
            handler.handle(Call::Introspect),
            Ok(Reply::Xml(INTROSPECTION_XML))
        );
        assert_eq!(
            handler.handle(method(InitRequest::ListServices)),
            Ok(Reply::Services(vec![]))
        );
        assert!(
            handler
                .handle(method(InitRequest::Logs {
                    name: "web".into(),
                    after_seq: 0,
                    max: 1
                }))
                .is_ok()
        );
        assert_eq!(recorder.calls(), ["list", "logs web 0 1"]);

        let (root, recorder) = handler_root();
        for request in [
            InitRequest::Start("web".into()),
            InitRequest::Stop("web".into()),
            InitRequest::Restart("web".into()),
            InitRequest::Power("poweroff".into()),
        ] {
            assert_eq!(root.handle(method(request)), Ok(Reply::Empty));
        }
        assert_eq!(
            recorder.calls(),
            ["start web", "stop web", "restart web", "power poweroff"]
        );
    }

    #[test]
    fn arguments_are_validated_before_the_backend() {
        let (root, recorder) = handler_root();
        let error = root
            .handle(method(InitRequest::Power("dance".into())))
            .unwrap_err();
        assert_eq!(error.name, error_names::INVALID_ARGUMENT);
        assert_eq!(
            error.message,
            "unknown power action \"dance\" (expected \"reboot\" or \"poweroff\")"
        );
        let error = root
            .handle(method(InitRequest::Start(String::new())))
            .unwrap_err();
        assert_eq!(error.name, error_names::INVALID_ARGUMENT);
        assert!(recorder.calls().is_empty());
    }

    #[test]
    fn logs_max_is_capped_and_enforced() {
        let (handler, recorder) = handler(1000);
        // The recorder returns max + 5 lines; the handler trims to max.
        let Ok(Reply::Logs(lines)) = handler.handle(method(InitRequest::Logs {
            name: "web".into(),
            after_seq: 0,
            max: 2,
        })) else {
            panic!("expected logs");
        };
        assert_eq!(lines.len(), 2);
        let Ok(Reply::Logs(lines)) = handler.handle(method(InitRequest::Logs {
            name: "web".into(),
            after_seq: 0,
            max: u32::MAX,
        })) else {
            panic!("expected logs");
        };
        assert_eq!(lines.len(), MAX_LOG_LINES_PER_CALL as usize);
        assert_eq!(
            recorder.calls(),
            [
                "logs web 0 2".to_owned(),
                format!("logs web 0 {MAX_LOG_LINES_PER_CALL}")
            ]
        );
    }

    #[test]
    fn backend_errors_map_to_names_and_keep_their_message() {
        assert_eq!(
            backend_error(BackendError::UnknownService("web".into())),
            CallError::new(error_names::UNKNOWN_SERVICE, "no such service \"web\"")
        );
        assert_eq!(
            backend_error(BackendError::ShuttingDown),
            CallError::new(error_names::SHUTTING_DOWN, "cairn-init is shutting down")
        );
        assert_eq!(
            backend_error(BackendError::Internal("boom".into())),
            CallError::new(error_names::FAILED, "cairn-init failed: boom")
        );
    }

    #[test]
    fn error_names_are_valid_dbus_error_names() {
        for name in [
            error_names::UNKNOWN_SERVICE,
            error_names::ACCESS_DENIED,
            error_names::SHUTTING_DOWN,
            error_names::INVALID_ARGUMENT,
            error_names::FAILED,
        ] {
            assert!(name.starts_with("org.cairn.Error."), "{name}");
            assert!(zbus::names::ErrorName::try_from(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn introspection_matches_the_wire_types() {
        let services = <Vec<ServiceStatus> as Type>::SIGNATURE.to_string();
        let lines = <Vec<LogLine> as Type>::SIGNATURE.to_string();
        assert_eq!(services, "a(ssuubs)");
        assert_eq!(lines, "a(ttss)");
        assert!(INTROSPECTION_XML.contains(&format!("type=\"{services}\"")));
        assert!(INTROSPECTION_XML.contains(&format!("type=\"{lines}\"")));
        for method in ["ListServices", "Start", "Stop", "Restart", "Logs", "Power"] {
            assert!(
                INTROSPECTION_XML.contains(&format!("<method name=\"{method}\"")),
                "{method}"
            );
        }
        assert!(INTROSPECTION_XML.contains(&format!("<interface name=\"{INIT_INTERFACE}\"")));
    }
}
