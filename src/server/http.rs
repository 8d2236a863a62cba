//! The HTTP listener on `--metrics-addr`: `/metrics` (Prometheus text), `/healthz` (the
//! process is alive: liveness) and `/readyz` (the socket is serving: readiness). Plain
//! HTTP/1.1, bounded in connections, request heads and time per connection.

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

use super::AcceptBackoff;
use crate::metrics::Metrics;

/// The default `--metrics-addr`: every address of both families, so kubelet's probes reach
/// it on IPv4, IPv6 and dual-stack pod networks alike.
pub const DEFAULT_ADDR: &str = "[::]:8989";

/// Binds `addr`. `[::]` listens on IPv6 and IPv4 (as mapped addresses) whatever the node's
/// `net.ipv6.bindv6only`; where the kernel has no IPv6 at all, it falls back to `0.0.0.0` on
/// the same port (and says so). Any other address is bound as given.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let dual_stack = matches!(addr, SocketAddr::V6(v6) if v6.ip().is_unspecified());
    if !dual_stack {
        return listen(addr, None);
    }
    match listen(addr, Some(false)) {
        Err(e) if ipv6_unavailable(&e) => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
            tracing::info!("IPv6 is not available on this node ({e}): listening on {v4} instead of {addr}");
            listen(v4, None)
        }
        other => other,
    }
}

/// Whether a failure to bind `[::]` means the node has no IPv6 (so IPv4 alone is right).
fn ipv6_unavailable(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT))
}

fn listen(addr: SocketAddr, only_v6: Option<bool>) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(only_v6) = only_v6 {
        socket.set_only_v6(only_v6)?;
    }
    // As every server's listener: a restarted provider rebinds at once over old connections
    // in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Most metrics connections served at once; more wait in the listen backlog. Scrapers and
/// probes need a handful; this bounds what a flood of connections can hold (an idle one
/// costs ~12 KiB, so ~6 MiB at the limit) while leaving room for probes beside a few
/// hundred half-sent requests, each dropped after [`HEADER_READ_TIMEOUT`].
const MAX_CONNECTIONS: usize = 512;
/// A client must send its request head within this, and an idle keep-alive connection is
/// closed after it: a half-sent request (slowloris) cannot hold a connection.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Everything one connection may take, responses included (a client that stops reading).
const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// hyper's smallest read buffer: a request here is a one-line GET.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Serves `/metrics`, `/healthz` and `/readyz` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD);
    let mut backoff = AcceptBackoff::new("metrics");
    loop {
        // A slot first: at the limit, connections wait unaccepted instead of piling up.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                backoff.failed(&e).await;
                continue;
            }
        };
        backoff.succeeded();
        let metrics = metrics.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(&req, &metrics)) }
            });
            let connection = http.serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
        });
    }
}

fn respond(req: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            (StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics.encode())
        }
        (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        (&Method::GET, "/readyz") if metrics.is_ready() => {
            (StatusCode::OK, "text/plain", "ready\n".to_owned())
        }
        (&Method::GET, "/readyz") => {
            (StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not serving the socket\n".to_owned())
        }
        _ => {
            (StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics, /healthz or /readyz\n".to_owned())
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_ipv6_stack_falls_back_to_ipv4() {
        for (errno, falls_back) in [
            (libc::EAFNOSUPPORT, true),
            (libc::EADDRNOTAVAIL, true),
            (libc::EPROTONOSUPPORT, true),
            (libc::EADDRINUSE, false),
            (libc::EACCES, false),
        ] {
            assert_eq!(ipv6_unavailable(&io::Error::from_raw_os_error(errno)), falls_back, "errno {errno}");
        }
    }

    #[tokio::test]
    async fn the_default_address_answers_ipv4_and_ipv6_clients() {
        let listener = bind("[::]:0".parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        for client in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
            let connected = tokio::net::TcpStream::connect(&client).await;
            assert!(connected.is_ok(), "{client}: {connected:?}");
            listener.accept().await.unwrap();
        }
    }

    #[tokio::test]
    async fn an_ipv4_address_is_bound_as_given() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(tokio::net::TcpStream::connect(format!("[::1]:{port}")).await.is_err());
    }
}
