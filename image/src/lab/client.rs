//! Talking to a lab's keeper over `<state>/keeper.sock`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use super::protocol::{Request, Response};
use super::state::StateDir;

/// Asking the keeper failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody listens on the socket.
    #[error("no lab keeper answers on {socket}: {source} (is a lab up in this state directory?)")]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The conversation broke off.
    #[error("talking to the lab keeper on {socket}: {source}")]
    Io {
        /// The socket.
        socket: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The answer was not a response line.
    #[error("the lab keeper on {socket} answered {answer:?}: {source}")]
    Parse {
        /// The socket.
        socket: PathBuf,
        /// What came back.
        answer: String,
        /// Why it did not parse.
        source: serde_json::Error,
    },
}

/// Sends one request and reads the answer, waiting at most `timeout` for it.
pub fn ask(state: &StateDir, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let socket = state.socket();
    let stream = UnixStream::connect(&socket).map_err(|source| ClientError::Connect {
        socket: socket.clone(),
        source,
    })?;
    let io = |source| ClientError::Io {
        socket: socket.clone(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut writer = &stream;
    writer
        .write_all(format!("{}\n", req.to_line()).as_bytes())
        .map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    serde_json::from_str(answer.trim()).map_err(|source| ClientError::Parse {
        socket: socket.clone(),
        answer: answer.trim().to_string(),
        source,
    })
}
