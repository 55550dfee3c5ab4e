//! A CRI client over containerd's unix socket: the k8s-cri crate's tonic
//! clients (runtime and image services, API v1) on one channel.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Why talking to the CRI failed.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The socket could not be reached.
    #[error("cannot connect to the CRI at {socket}: {source}")]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// A call failed.
    #[error("CRI {call}: {status}")]
    Call {
        /// The RPC.
        call: &'static str,
        /// The gRPC status (code and message).
        status: Box<tonic::Status>,
    },
    /// A call took longer than allowed.
    #[error("CRI {call}: no answer within {timeout_ms} ms")]
    Timeout {
        /// The RPC.
        call: &'static str,
        /// The limit.
        timeout_ms: u64,
    },
}

/// Both CRI services on one connection.
#[derive(Debug, Clone)]
pub struct Cri {
    /// RuntimeService: version, status, sandboxes, containers.
    pub runtime: RuntimeServiceClient<Channel>,
    /// ImageService: image status, pulls.
    pub images: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connects to the CRI at `socket` (bounded by `timeout`).
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Self, CriError> {
        let path = socket.to_owned();
        let err = |source| CriError::Connect {
            socket: socket.to_owned(),
            source,
        };
        // The URI is required by tonic but unused: the connector dials the socket.
        let channel =
            Endpoint::from_static("http://[::1]:50051")
                .connect_timeout(timeout)
                .timeout(timeout)
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
                .map_err(err)?;
        Ok(Self {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }
}

/// Maps a call's result into [`CriError`], naming the call.
pub fn call<T>(
    name: &'static str,
    r: Result<tonic::Response<T>, tonic::Status>,
) -> Result<T, CriError> {
    r.map(tonic::Response::into_inner)
        .map_err(|status| CriError::Call {
            call: name,
            status: Box::new(status),
        })
}
