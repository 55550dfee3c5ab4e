//! A blocking client of HAProxy's runtime API, the `stats socket` the lb role's
//! haproxy.cfg opens at `/run/haproxy/admin.sock` (docs/roles.md).
//!
//! Parsing is kept apart from I/O: [`parse_stat`] turns `show stat` CSV into
//! frontends, backends and their servers, [`parse_info`] turns `show info`
//! into the process facts; [`RuntimeClient`] sends one command per connection
//! with a deadline and hands the reply to them. `cairnctl lb` is the user.

mod client;
mod csv;
mod info;
mod stat;

pub use client::{ClientError, DEFAULT_SOCKET, DEFAULT_TIMEOUT, MAX_REPLY_BYTES, RuntimeClient};
pub use info::{Info, InfoError, parse_info};
pub use stat::{
    Backend, Check, Frontend, Server, ServerState, StatError, Stats, Traffic, parse_stat,
};
