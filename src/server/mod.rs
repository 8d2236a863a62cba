//! The provider's gRPC server on its Unix socket: the driver's `CSIDriverProvider` service,
//! the standard health service and reflection (so `grpcurl` works without proto files),
//! stale-socket clean-up, a socket that heals (bound again when it is removed or replaced),
//! a private socket mode, HTTP/2 limits, and graceful shutdown; [`http`] is the metrics and
//! probes listener.
//!
//! Connections are served here rather than by tonic's `Server`, for three reasons: every
//! connection is wrapped in the `:authority` shim before h2 reads it; a failing accept (at
//! the descriptor limit) backs off instead of spinning; and at shutdown, connections with
//! nothing in flight are closed at once while in-flight mounts drain, instead of every idle
//! connection holding the process for the whole grace period.

mod accept;
mod budget;
pub mod http;
pub mod response;
mod service;
pub mod status;

use std::fs;
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

use accept::AcceptBackoff;
pub use response::{MAX_RESPONSE_BYTES, NO_OBJECTS_ID};
pub use service::DriverService;

use crate::metrics::Metrics;
use crate::mount::Mounter;
use crate::proto::csi_driver_provider_server::CsiDriverProviderServer;

/// The socket's file name inside `--provider-volume`, where the driver looks for it.
pub const SOCKET_NAME: &str = "aws.sock";

/// How often the provider checks that the socket file is still the one it bound.
const SOCKET_CHECK: Duration = Duration::from_secs(1);
/// How long in-flight mounts may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// At shutdown, a connection with nothing in flight for this long is closed: long enough
/// for h2 to flush a response just finished and for a live client to read the GOAWAY.
const IDLE_CLOSE: Duration = Duration::from_millis(500);
/// How often a draining connection checks whether it has gone idle.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// Streams one connection may have open at once. The driver multiplexes every mount of the
/// node over one connection and queues calls beyond the limit on its side, so this only
/// needs headroom over `--max-concurrent-mounts` (128) for health and Version calls; it
/// bounds what one client can make the server hold (without it, h2 allows unlimited streams).
const MAX_CONCURRENT_STREAMS: u32 = 256;
/// SETTINGS_MAX_HEADER_LIST_SIZE: a driver's request headers are a few hundred bytes.
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
/// The shim's cap on a decoded header block: the server's own limit, so a block h2 would
/// refuse fails the connection in the shim instead of being expanded for h2 to decode
/// (see the shim's `DEFAULT_MAX_HEADER_LIST_SIZE`).
const SHIM_MAX_HEADER_LIST_SIZE: usize = MAX_HEADER_LIST_SIZE as usize;
/// Streams a client may make the server reset for protocol errors before the connection is
/// closed (hyper's default; tonic would turn the limit off). Guards against reset floods.
const MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// Streams reset by the client before they were served that may be pending at once (h2's
/// default, made explicit): the "rapid reset" guard.
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// HTTP/2 PINGs on a connection quiet for this long; a client that does not answer within
/// the timeout is disconnected, so a vanished peer does not hold its streams.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// A client sends the HTTP/2 preface as soon as it connects (the driver, the sync controller,
/// grpcurl); a connection silent for this long is closed.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest Mount request accepted: a SecretProviderClass is a Kubernetes object (at most
/// ~1.5 MiB in etcd) plus the pod's tokens.
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// A failure to start or run the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {path:?}: {source}")]
    Socket { path: PathBuf, source: io::Error },
    #[error("gRPC reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
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
/// mounts finish (bounded), closes idle connections, and removes the socket file.
pub async fn run(
    listener: UnixListener,
    path: &Path,
    mounter: Arc<Mounter>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // Polled once before anything else: a signal handler behind `shutdown` is installed
    // before the slower set-up below, so a SIGTERM right after the socket appeared is not
    // fatal.
    let mut shutdown = std::pin::pin!(shutdown);
    let stop_at_once = futures::poll!(shutdown.as_mut()).is_ready();
    let mut listener = listener;
    let mut socket_id = file_id(path);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<CsiDriverProviderServer<DriverService>>().await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) = (reflection().build_v1()?, reflection().build_v1alpha()?);
    let service = CsiDriverProviderServer::new(DriverService::new(mounter, metrics.clone()))
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        // The service checks the response against the driver's limit itself, with a clear
        // message; this only keeps the encoder from ever sending more.
        .max_encoding_message_size(MAX_RESPONSE_BYTES);
    let routes = tonic::service::Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        .prepare();

    let rewrites = metrics.clone();
    let shim = h2_authority_shim::Config::default()
        .max_header_list_size(SHIM_MAX_HEADER_LIST_SIZE)
        .on_rewrite(move || rewrites.authority_rewritten());
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);

    let request_budget = Arc::new(tokio::sync::Semaphore::new(budget::TOTAL_BYTES));
    let (draining_tx, draining) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut backoff = AcceptBackoff::new("socket");
    metrics.set_ready(true);
    tracing::info!(socket = %path.display(), "serving the CSI driver");
    let mut check = tokio::time::interval(SOCKET_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // (`shutdown` may not be polled again once it has completed.)
    if !stop_at_once {
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = check.tick() => if file_id(path) != socket_id
                    && let Some((rebound, id)) = rebind(path, &metrics)
                {
                    listener = rebound;
                    socket_id = id;
                },
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tracing::trace!(open = connections.len() + 1, "accepted a connection");
                        backoff.succeeded();
                        let connection = Connection {
                            routes: routes.clone(),
                            h2: h2.clone(),
                            shim: shim.clone(),
                            request_budget: request_budget.clone(),
                        };
                        connections.spawn(connection.serve(stream, draining.clone()));
                    }
                    Err(e) => backoff.failed(&e).await,
                },
                // Reap finished connections, so the set holds only live ones.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }

    tracing::info!("shutting down: no new connections, finishing in-flight mounts");
    // Tell health checkers first, so nothing new is routed to a provider going away.
    health.set_not_serving::<CsiDriverProviderServer<DriverService>>().await;
    metrics.set_ready(false);
    drop(listener);
    let _ = draining_tx.send(true);
    let drained =
        tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} })
            .await;
    if drained.is_err() {
        tracing::warn!("in-flight mounts did not finish within {SHUTDOWN_GRACE:?}; exiting");
        connections.abort_all();
    }
    remove_if_ours(path, socket_id);
    Ok(())
}

/// Binds the socket again after it was removed or replaced under the provider: the driver
/// finds providers by path, so a socket file that is not ours (or none) means no mount on the
/// node reaches us. `/readyz` says 503 until it is ours again; connections already open keep
/// being served.
fn rebind(path: &Path, metrics: &Metrics) -> Option<(UnixListener, Option<(u64, u64)>)> {
    metrics.set_ready(false);
    let what = match fs::symlink_metadata(path) {
        Err(_) => "was removed (another provider exiting, or someone deleting it)",
        Ok(_) => "was replaced by another file (another process bound the same path)",
    };
    tracing::warn!(
        socket = %path.display(),
        "the socket {what}: binding it again; if this repeats, two providers share --provider-volume"
    );
    match bind(path) {
        Ok(listener) => {
            metrics.set_ready(true);
            tracing::info!(socket = %path.display(), "serving the CSI driver again");
            Some((listener, file_id(path)))
        }
        Err(e) => {
            tracing::error!("{e}; trying again in {SOCKET_CHECK:?}");
            None
        }
    }
}

/// What every connection is served with.
struct Connection {
    routes: tonic::service::Routes,
    h2: http2::Builder<TokioExecutor>,
    shim: h2_authority_shim::Config,
    /// Request bytes read and not yet handled, across all connections.
    request_budget: Arc<tokio::sync::Semaphore>,
}

impl Connection {
    /// Serves one connection until the client closes it, or, once `draining` turns true,
    /// until nothing is in flight on it any more.
    async fn serve(self, stream: UnixStream, mut draining: watch::Receiver<bool>) {
        // Keep-alive pings start only after the HTTP/2 handshake: a client that never sends
        // a byte would hold its descriptor for ever.
        tokio::select! {
            sent = tokio::time::timeout(FIRST_BYTES_TIMEOUT, first_byte(&stream)) => match sent {
                Ok(true) => {}
                Ok(false) => return,
                Err(_) => {
                    tracing::debug!("closed a connection that sent nothing in {FIRST_BYTES_TIMEOUT:?}");
                    return;
                }
            },
            _ = draining.wait_for(|draining| *draining) => return,
        }
        let in_flight = Arc::new(AtomicUsize::new(0));
        let counter = in_flight.clone();
        let routes = self.routes;
        let (connection_budget, total_budget) =
            (Arc::new(tokio::sync::Semaphore::new(budget::CONNECTION_BYTES)), self.request_budget);
        let service = hyper::service::service_fn(move |request: ::http::Request<hyper::body::Incoming>| {
            let guard = InFlight::start(&counter);
            let request = request
                .map(|body| budget::Budgeted::new(body, connection_budget.clone(), total_budget.clone()));
            let call = routes.clone().oneshot(request);
            async move {
                let response = call.await?;
                // The request counts as in flight until its response body is done.
                Ok::<_, std::convert::Infallible>(response.map(move |body| {
                    body.map_frame(move |frame| {
                        let _in_flight = &guard;
                        frame
                    })
                }))
            }
        });
        let connection = self.h2.serve_connection(TokioIo::new(self.shim.wrap(stream)), service);
        let mut connection = std::pin::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                match result {
                    Ok(()) => tracing::trace!("connection closed by the client"),
                    Err(e) => tracing::debug!("connection ended: {e}"),
                }
                return;
            }
            _ = draining.wait_for(|draining| *draining) => {}
        }
        // GOAWAY: the client sends nothing new; streams already open finish.
        connection.as_mut().graceful_shutdown();
        let idle = async {
            let mut idle_for = Duration::ZERO;
            while idle_for < IDLE_CLOSE {
                tokio::time::sleep(DRAIN_POLL).await;
                idle_for = if in_flight.load(Ordering::SeqCst) == 0 {
                    idle_for + DRAIN_POLL
                } else {
                    Duration::ZERO
                };
            }
        };
        tokio::select! {
            _ = connection => {}
            () = idle => tracing::debug!("closed an idle connection at shutdown"),
        }
    }
}

/// Waits until the client has sent something, without taking it from the socket; `false`
/// when it closed first. (Readiness alone can be reported before any byte arrived.)
async fn first_byte(stream: &UnixStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    loop {
        if stream.readable().await.is_err() {
            return false;
        }
        let peeked =
            stream.try_io(tokio::io::Interest::READABLE, || socket2::SockRef::from(stream).peek(&mut byte));
        match peeked {
            Ok(n) => return n > 0,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return false,
        }
    }
}

/// Counts a request in flight on its connection until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn start(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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
