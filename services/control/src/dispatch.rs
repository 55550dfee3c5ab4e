//! The thin D-Bus layer of `org.cairn.Init1`: parse a method call, check the caller's uid,
//! forward to the backend, map errors in one place.
//!
//! Calls are answered one at a time per connection, and the next message is not read until
//! the reply has been written. A client that sends calls without reading replies therefore
//! stalls only itself. (zbus's `ObjectServer` spawns a task per call for its standard
//! interfaces, so such a client could make PID 1 queue replies without bound.)

use std::sync::Arc;

use zbus::Message;
use zbus::message::{Flags, Header, Type as MessageType};
use zbus::zvariant::Type;

use crate::backend::{BackendError, InitBackend};
use crate::server::MAX_LOG_LINES_PER_CALL;
use crate::types::{LogLine, PowerAction, ServiceStatus};
use crate::{INIT_INTERFACE, INIT_PATH, error_names};

const PEER_INTERFACE: &str = "org.freedesktop.DBus.Peer";
const BUS_INTERFACE: &str = "org.freedesktop.DBus";
const INTROSPECTABLE_INTERFACE: &str = "org.freedesktop.DBus.Introspectable";
const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";
const UNKNOWN_OBJECT: &str = "org.freedesktop.DBus.Error.UnknownObject";
const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";

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

/// A D-Bus error reply: its name and human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallError {
    pub(crate) name: &'static str,
    pub(crate) message: String,
}

impl CallError {
    fn new(name: &'static str, message: impl Into<String>) -> Self {
        CallError {
            name,
            message: message.into(),
        }
    }
}

/// The one place backend errors become D-Bus errors.
pub(crate) fn backend_error(error: BackendError) -> CallError {
    let name = match &error {
        BackendError::UnknownService(_) => error_names::UNKNOWN_SERVICE,
        BackendError::ShuttingDown => error_names::SHUTTING_DOWN,
        BackendError::Internal(_) => error_names::FAILED,
    };
    CallError::new(name, error.to_string())
}

/// A parsed method call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
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
    Ping,
    /// Bus clients (busctl, gdbus) greet the bus first; we answer as a bus would.
    Hello,
    Introspect,
}

impl Request {
    /// The D-Bus method name, for messages.
    fn method(&self) -> &'static str {
        match self {
            Request::ListServices => "ListServices",
            Request::Start(_) => "Start",
            Request::Stop(_) => "Stop",
            Request::Restart(_) => "Restart",
            Request::Logs { .. } => "Logs",
            Request::Power(_) => "Power",
            Request::Ping => "Ping",
            Request::Hello => "Hello",
            Request::Introspect => "Introspect",
        }
    }
}

/// A successful reply body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    Empty,
    Services(Vec<ServiceStatus>),
    Logs(Vec<LogLine>),
    Xml(&'static str),
    Name(&'static str),
}

/// Decodes the body of `message` as `T`, or `InvalidArgs` naming the expected signature.
fn body<T>(message: &Message, method: &str) -> Result<T, CallError>
where
    T: for<'d> serde::Deserialize<'d> + Type,
{
    message.body().deserialize::<T>().map_err(|e| {
        CallError::new(
            INVALID_ARGS,
            format!("{method} takes arguments ({}): {e}", T::SIGNATURE),
        )
    })
}

/// Works out which method `message` calls and decodes its arguments.
pub(crate) fn parse(message: &Message) -> Result<Request, CallError> {
    let header = message.header();
    let path = header.path().map(|p| p.as_str()).unwrap_or("");
    let interface = header.interface().map(|i| i.as_str());
    let member = header.member().map(|m| m.as_str()).unwrap_or("");
    match (interface, member) {
        (Some(PEER_INTERFACE), "Ping") => return Ok(Request::Ping),
        (Some(BUS_INTERFACE), "Hello") => return Ok(Request::Hello),
        (Some(INTROSPECTABLE_INTERFACE), "Introspect") if path == INIT_PATH => {
            return Ok(Request::Introspect);
        }
        (Some(INIT_INTERFACE) | None, _) if path != INIT_PATH => {
            return Err(CallError::new(
                UNKNOWN_OBJECT,
                format!("no object at {path}; cairn-init serves {INIT_PATH}"),
            ));
        }
        (Some(INIT_INTERFACE) | None, _) => {}
        (Some(other), _) => {
            return Err(CallError::new(
                UNKNOWN_METHOD,
                format!("unknown interface {other}"),
            ));
        }
    }
    Ok(match member {
        "ListServices" => {
            body::<()>(message, member)?;
            Request::ListServices
        }
        "Start" => Request::Start(body::<(String,)>(message, member)?.0),
        "Stop" => Request::Stop(body::<(String,)>(message, member)?.0),
        "Restart" => Request::Restart(body::<(String,)>(message, member)?.0),
        "Logs" => {
            let (name, after_seq, max) = body::<(String, u64, u32)>(message, member)?;
            Request::Logs {
                name,
                after_seq,
                max,
            }
        }
        "Power" => Request::Power(body::<(String,)>(message, member)?.0),
        other => {
            return Err(CallError::new(
                UNKNOWN_METHOD,
                format!("{INIT_INTERFACE} has no method {other:?}"),
            ));
        }
    })
}

/// Answers requests of one connection, whose peer has uid `peer_uid` (from `SO_PEERCRED`).
pub(crate) struct Handler {
    pub(crate) backend: Arc<dyn InitBackend>,
    pub(crate) peer_uid: u32,
}

impl Handler {
    fn require_root(&self, request: &Request) -> Result<(), CallError> {
        if self.peer_uid == 0 {
            Ok(())
        } else {
            Err(CallError::new(
                error_names::ACCESS_DENIED,
                format!(
                    "uid {} may not call {}: changing services or power state needs uid 0",
                    self.peer_uid,
                    request.method()
                ),
            ))
        }
    }

    /// Checks access, validates arguments and forwards to the backend.
    pub(crate) fn handle(&self, request: Request) -> Result<Reply, CallError> {
        if matches!(
            request,
            Request::Start(_) | Request::Stop(_) | Request::Restart(_) | Request::Power(_)
        ) {
            self.require_root(&request)?;
        }
        let backend = &*self.backend;
        let empty =
            |result: Result<(), BackendError>| result.map(|()| Reply::Empty).map_err(backend_error);
        match request {
            Request::ListServices => Ok(Reply::Services(backend.list_services())),
            Request::Start(name) => empty(backend.start(service_name(&name)?)),
            Request::Stop(name) => empty(backend.stop(service_name(&name)?)),
            Request::Restart(name) => empty(backend.restart(service_name(&name)?)),
            Request::Logs {
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
            Request::Power(action) => {
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
            Request::Ping => Ok(Reply::Empty),
            Request::Hello => Ok(Reply::Name(":1.0")),
            Request::Introspect => Ok(Reply::Xml(INTROSPECTION_XML)),
        }
    }

    /// Answers one incoming message on `connection`; returns once the reply is written.
    pub(crate) async fn answer(
        &self,
        connection: &zbus::Connection,
        message: &Message,
    ) -> zbus::Result<()> {
        if message.message_type() != MessageType::MethodCall {
            return Ok(());
        }
        let outcome = parse(message).and_then(|request| self.handle(request));
        let header: Header<'_> = message.header();
        if header.primary().flags().contains(Flags::NoReplyExpected) {
            return Ok(());
        }
        match outcome {
            Ok(Reply::Empty) => connection.reply(&header, &()).await,
            Ok(Reply::Services(services)) => connection.reply(&header, &services).await,
            Ok(Reply::Logs(lines)) => connection.reply(&header, &lines).await,
            Ok(Reply::Xml(xml)) => connection.reply(&header, &xml).await,
            Ok(Reply::Name(name)) => connection.reply(&header, &name).await,
            Err(error) => {
                connection
                    .reply_error(&header, error.name, &error.message)
                    .await
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
    use std::sync::Mutex;

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

    fn handler(uid: u32) -> (Handler, Arc<Recorder>) {
        let recorder = Arc::new(Recorder::default());
        let handler = Handler {
            backend: recorder.clone(),
            peer_uid: uid,
        };
        (handler, recorder)
    }

    fn handler_root() -> (Handler, Arc<Recorder>) {
        handler(0)
    }

    fn call<B>(path: &str, interface: Option<&str>, member: &str, body: &B) -> Message
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        let mut builder = Message::method_call(path, member).unwrap();
        if let Some(interface) = interface {
            builder = builder.interface(interface).unwrap();
        }
        builder.build(body).unwrap()
    }

    fn init_call<B>(member: &str, body: &B) -> Message
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        call(INIT_PATH, Some(INIT_INTERFACE), member, body)
    }

    #[test]
    fn parses_every_method() {
        assert_eq!(
            parse(&init_call("ListServices", &())),
            Ok(Request::ListServices)
        );
        assert_eq!(
            parse(&init_call("Start", &("web",))),
            Ok(Request::Start("web".into()))
        );
        assert_eq!(
            parse(&init_call("Stop", &("web",))),
            Ok(Request::Stop("web".into()))
        );
        assert_eq!(
            parse(&init_call("Restart", &("web",))),
            Ok(Request::Restart("web".into()))
        );
        assert_eq!(
            parse(&init_call("Logs", &("web", 7u64, 3u32))),
            Ok(Request::Logs {
                name: "web".into(),
                after_seq: 7,
                max: 3
            })
        );
        assert_eq!(
            parse(&init_call("Power", &("reboot",))),
            Ok(Request::Power("reboot".into()))
        );
        // The interface field is optional in D-Bus.
        assert_eq!(
            parse(&call(INIT_PATH, None, "Start", &("web",))),
            Ok(Request::Start("web".into()))
        );
        assert_eq!(
            parse(&call("/anywhere", Some(PEER_INTERFACE), "Ping", &())),
            Ok(Request::Ping)
        );
        assert_eq!(
            parse(&call(
                "/org/freedesktop/DBus",
                Some(BUS_INTERFACE),
                "Hello",
                &()
            )),
            Ok(Request::Hello)
        );
        assert_eq!(
            parse(&call(
                INIT_PATH,
                Some(INTROSPECTABLE_INTERFACE),
                "Introspect",
                &()
            )),
            Ok(Request::Introspect)
        );
    }

    #[test]
    fn rejects_wrong_arguments_methods_and_objects() {
        let name = |m: &Message| parse(m).unwrap_err().name;
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
        let error = parse(&init_call("Start", &(5u32,))).unwrap_err();
        assert!(error.message.contains("(s)"), "{}", error.message);
    }

    #[test]
    fn mutating_calls_need_uid_0_and_never_reach_the_backend_otherwise() {
        let (handler, recorder) = handler(1000);
        for request in [
            Request::Start("web".into()),
            Request::Stop("web".into()),
            Request::Restart("web".into()),
            Request::Power("reboot".into()),
        ] {
            let method = request.method();
            let error = handler.handle(request).unwrap_err();
            assert_eq!(error.name, error_names::ACCESS_DENIED);
            assert_eq!(
                error.message,
                format!(
                    "uid 1000 may not call {method}: changing services or power state needs uid 0"
                )
            );
        }
        assert_eq!(recorder.calls(), Vec::<String>::new());
        assert_eq!(handler.handle(Request::Ping), Ok(Reply::Empty));
        assert_eq!(handler.handle(Request::Hello), Ok(Reply::Name(":1.0")));
        assert_eq!(
            handler.handle(Request::Introspect),
            Ok(Reply::Xml(INTROSPECTION_XML))
        );
        assert_eq!(
            handler.handle(Request::ListServices),
            Ok(Reply::Services(vec![]))
        );
        assert!(
            handler
                .handle(Request::Logs {
                    name: "web".into(),
                    after_seq: 0,
                    max: 1
                })
                .is_ok()
        );
        assert_eq!(recorder.calls(), ["list", "logs web 0 1"]);

        let (root, recorder) = handler_root();
        for request in [
            Request::Start("web".into()),
            Request::Stop("web".into()),
            Request::Restart("web".into()),
            Request::Power("poweroff".into()),
        ] {
            assert_eq!(root.handle(request), Ok(Reply::Empty));
        }
        assert_eq!(
            recorder.calls(),
            ["start web", "stop web", "restart web", "power poweroff"]
        );
    }

    #[test]
    fn arguments_are_validated_before_the_backend() {
        let (root, recorder) = handler_root();
        let error = root.handle(Request::Power("dance".into())).unwrap_err();
        assert_eq!(error.name, error_names::INVALID_ARGUMENT);
        assert_eq!(
            error.message,
            "unknown power action \"dance\" (expected \"reboot\" or \"poweroff\")"
        );
        let error = root.handle(Request::Start(String::new())).unwrap_err();
        assert_eq!(error.name, error_names::INVALID_ARGUMENT);
        assert!(recorder.calls().is_empty());
    }

    #[test]
    fn logs_max_is_capped_and_enforced() {
        let (handler, recorder) = handler(1000);
        // The recorder returns max + 5 lines; the handler trims to max.
        let Ok(Reply::Logs(lines)) = handler.handle(Request::Logs {
            name: "web".into(),
            after_seq: 0,
            max: 2,
        }) else {
            panic!("expected logs");
        };
        assert_eq!(lines.len(), 2);
        let Ok(Reply::Logs(lines)) = handler.handle(Request::Logs {
            name: "web".into(),
            after_seq: 0,
            max: u32::MAX,
        }) else {
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
    }
}
