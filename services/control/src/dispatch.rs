//! The thin D-Bus layer shared by every control interface: work out which method a message
//! calls, let the [`Service`] parse its arguments, check access and forward to its backend,
//! and write the reply or error.
//!
//! Calls are answered one at a time per connection, and the next message is not read until
//! the reply has been written. A client that sends calls without reading replies therefore
//! stalls only itself. (zbus's `ObjectServer` spawns a task per call for its standard
//! interfaces, so such a client could make the server queue replies without bound.)

use std::sync::Arc;

use zbus::Message;
use zbus::message::{Flags, Header, Type as MessageType};
use zbus::zvariant::Type;

use crate::types::{LogLine, ServiceStatus};
use crate::update::UpdateStatus;
use crate::vip::VipInstanceStatus;

pub(crate) const PEER_INTERFACE: &str = "org.freedesktop.DBus.Peer";
pub(crate) const BUS_INTERFACE: &str = "org.freedesktop.DBus";
pub(crate) const INTROSPECTABLE_INTERFACE: &str = "org.freedesktop.DBus.Introspectable";
pub(crate) const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";
pub(crate) const UNKNOWN_OBJECT: &str = "org.freedesktop.DBus.Error.UnknownObject";
pub(crate) const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";

/// One D-Bus interface served at one object path on a control socket.
///
/// The server owns the socket, handshake, frame guard and limits; a service only parses
/// its own methods and answers them. Implementations: `org.cairn.Init1`
/// ([`crate::init_service`]), `org.cairn.Vip1` ([`crate::vip_service`]) and
/// `org.cairn.Update1` ([`crate::update_service`]).
pub(crate) trait Service: Send + Sync + 'static {
    /// The interface name, e.g. `org.cairn.Init1`.
    const INTERFACE: &'static str;
    /// The one object path the interface is served at.
    const PATH: &'static str;
    /// The daemon that serves it, for error messages, e.g. `cairn-init`.
    const SERVER: &'static str;
    /// Introspection data for [`Self::PATH`], so generic tools (`busctl introspect`) work.
    const INTROSPECTION_XML: &'static str;

    /// A parsed call of one of the interface's own methods.
    type Request: std::fmt::Debug + PartialEq;

    /// Decodes a call of `member` on the interface (path and interface already checked).
    fn parse(member: &str, message: &Message) -> Result<Self::Request, CallError>;

    /// Checks access for a peer of uid `peer_uid`, validates arguments and forwards to the
    /// backend.
    fn handle(&self, request: Self::Request, peer_uid: u32) -> Result<Reply, CallError>;
}

/// A D-Bus error reply: its name and human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallError {
    pub(crate) name: &'static str,
    pub(crate) message: String,
}

impl CallError {
    pub(crate) fn new(name: &'static str, message: impl Into<String>) -> Self {
        CallError {
            name,
            message: message.into(),
        }
    }
}

/// The `UnknownMethod` error for a member `interface` does not have.
pub(crate) fn unknown_method(interface: &str, member: &str) -> CallError {
    CallError::new(
        UNKNOWN_METHOD,
        format!("{interface} has no method {member:?}"),
    )
}

/// A parsed method call: one of the standard methods every server answers, or one of the
/// service's own.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Call<R> {
    /// `org.freedesktop.DBus.Peer.Ping`, on any path.
    Ping,
    /// Bus clients (busctl, gdbus) greet the bus first; we answer as a bus would.
    Hello,
    /// `org.freedesktop.DBus.Introspectable.Introspect` on the service's path.
    Introspect,
    /// A method of the service's interface.
    Method(R),
}

/// A successful reply body. One variant per body type of all services: the reply is written
/// with a concrete type, so zbus derives its signature statically.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    Empty,
    Services(Vec<ServiceStatus>),
    Logs(Vec<LogLine>),
    Instances(Vec<VipInstanceStatus>),
    UpdateStatus(Box<UpdateStatus>),
    Check(u64),
    Xml(&'static str),
    Name(&'static str),
}

/// Decodes the body of `message` as `T`, or `InvalidArgs` naming the expected signature.
pub(crate) fn body<T>(message: &Message, method: &str) -> Result<T, CallError>
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
pub(crate) fn parse<S: Service>(message: &Message) -> Result<Call<S::Request>, CallError> {
    let header = message.header();
    let path = header.path().map(|p| p.as_str()).unwrap_or("");
    let interface = header.interface().map(|i| i.as_str());
    let member = header.member().map(|m| m.as_str()).unwrap_or("");
    match (interface, member) {
        (Some(PEER_INTERFACE), "Ping") => return Ok(Call::Ping),
        (Some(BUS_INTERFACE), "Hello") => return Ok(Call::Hello),
        (Some(INTROSPECTABLE_INTERFACE), "Introspect") if path == S::PATH => {
            return Ok(Call::Introspect);
        }
        // The interface field is optional in D-Bus.
        (None, _) => {}
        (Some(name), _) if name == S::INTERFACE => {}
        (Some(other), _) => {
            return Err(CallError::new(
                UNKNOWN_METHOD,
                format!("unknown interface {other}"),
            ));
        }
    }
    if path != S::PATH {
        return Err(CallError::new(
            UNKNOWN_OBJECT,
            format!("no object at {path}; {} serves {}", S::SERVER, S::PATH),
        ));
    }
    S::parse(member, message).map(Call::Method)
}

/// Answers requests of one connection, whose peer has uid `peer_uid` (from `SO_PEERCRED`).
pub(crate) struct Handler<S> {
    pub(crate) service: Arc<S>,
    pub(crate) peer_uid: u32,
}

impl<S: Service> Handler<S> {
    /// Answers the standard methods itself and hands the service's own to it.
    pub(crate) fn handle(&self, call: Call<S::Request>) -> Result<Reply, CallError> {
        match call {
            Call::Ping => Ok(Reply::Empty),
            Call::Hello => Ok(Reply::Name(":1.0")),
            Call::Introspect => Ok(Reply::Xml(S::INTROSPECTION_XML)),
            Call::Method(request) => self.service.handle(request, self.peer_uid),
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
        let outcome = parse::<S>(message).and_then(|call| self.handle(call));
        let header: Header<'_> = message.header();
        if header.primary().flags().contains(Flags::NoReplyExpected) {
            return Ok(());
        }
        match outcome {
            Ok(Reply::Empty) => connection.reply(&header, &()).await,
            Ok(Reply::Services(services)) => connection.reply(&header, &services).await,
            Ok(Reply::Logs(lines)) => connection.reply(&header, &lines).await,
            Ok(Reply::Instances(instances)) => connection.reply(&header, &instances).await,
            Ok(Reply::UpdateStatus(status)) => connection.reply(&header, &*status).await,
            Ok(Reply::Check(check)) => connection.reply(&header, &check).await,
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

/// Builds method-call messages for the services' unit tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_call<B>(path: &str, interface: Option<&str>, member: &str, body: &B) -> Message
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    let mut builder = Message::method_call(path, member).unwrap();
    if let Some(interface) = interface {
        builder = builder.interface(interface).unwrap();
    }
    builder.build(body).unwrap()
}
