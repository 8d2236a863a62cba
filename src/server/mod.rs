//! The provider's gRPC server on its Unix socket: the driver's `CSIDriverProvider` service,
//! the standard health service and reflection (so `grpcurl` works without proto files),
//! stale-socket clean-up, a private socket mode, and graceful shutdown.

pub mod authority;
mod service;

use std::fs;
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;
use tonic::transport::server::{Connected, UdsConnectInfo};

pub use authority::AuthorityRewrite;
pub use service::ProviderService;

use crate::metrics::Metrics;
use crate::mount::Mounter;
use crate::proto::csi_driver_provider_server::CsiDriverProviderServer;

/// The socket's file name inside `--provider-volume`, where the driver looks for it.
pub const SOCKET_NAME: &str = "aws.sock";

/// How long in-flight mounts may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A failure to start or run the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {path:?}: {source}")]
    Socket { path: PathBuf, source: io::Error },
    #[error("gRPC reflection setup failed: {0}")]
    Reflection(String),
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

impl Connected for AuthorityRewrite<UnixStream> {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.get_ref().connect_info()
    }
}

/// Binds the socket: removes a stale one, and creates it with mode 0600 without ever
/// exposing it with a looser mode (bound in a private directory, then renamed into place).
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let fail = |source| ServerError::Socket { path: path.to_owned(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(fail)?;
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() || meta.is_file() || meta.file_type().is_symlink() => {
            fs::remove_file(path).map_err(fail)?;
        }
        Ok(_) => {
            return Err(fail(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a directory is in the way of the socket",
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let private = dir.join(format!(".{SOCKET_NAME}.{}", std::process::id()));
    let _ = fs::remove_dir_all(&private);
    fs::DirBuilder::new().mode(0o700).create(&private).map_err(fail)?;
    let staged = private.join(SOCKET_NAME);
    let bound = UnixListener::bind(&staged)
        .and_then(|listener| {
            fs::set_permissions(&staged, fs::Permissions::from_mode(0o600))?;
            fs::rename(&staged, path)?;
            Ok(listener)
        })
        .map_err(fail);
    let _ = fs::remove_dir_all(&private);
    bound
}

/// Serves on `listener` (bound at `path`) until `shutdown` completes, then lets in-flight
/// mounts finish (bounded) and removes the socket file.
pub async fn run(
    listener: UnixListener,
    path: &Path,
    mounter: Arc<Mounter>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let socket_id = file_id(path);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<CsiDriverProviderServer<ProviderService>>().await;
    let reflection = |builder: tonic_reflection::server::Builder<'static>| {
        builder
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure())
        .build_v1()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure())
        .build_v1alpha()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;

    let service = CsiDriverProviderServer::new(ProviderService::new(mounter, metrics.clone()))
        .max_decoding_message_size(16 * 1024 * 1024);
    // Old drivers send the socket path as :authority, which h2 rejects: rewrite it first.
    let incoming = UnixListenerStream::new(listener).map_ok(AuthorityRewrite::new);

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let stopping_metrics = metrics.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing in-flight mounts");
        // Tell health checkers first, so nothing new is routed to a provider going away.
        health.set_not_serving::<CsiDriverProviderServer<ProviderService>>().await;
        stopping_metrics.set_ready(false);
        let _ = stopping_tx.send(());
    };
    let serve = Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, signal);
    metrics.set_ready(true);
    tracing::info!(socket = %path.display(), "serving the CSI driver");

    let grace = async {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        result = serve => result.map_err(ServerError::from),
        () = grace => {
            tracing::warn!("in-flight mounts did not finish within {SHUTDOWN_GRACE:?}; exiting");
            Ok(())
        }
    };
    metrics.set_ready(false);
    remove_if_ours(path, socket_id);
    result
}

/// The identity of a file, to tell our socket from a successor's.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Removes the socket unless another provider (a newer pod during a rolling update) has
/// replaced it since we bound it.
fn remove_if_ours(path: &Path, ours: Option<(u64, u64)>) {
    if ours.is_some() && file_id(path) == ours {
        let _ = fs::remove_file(path);
    }
}
