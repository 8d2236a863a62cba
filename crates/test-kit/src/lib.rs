//! The provider's test peers, shared by its integration tests (`tests/`), its bench
//! (`benches/mount.rs`) and the local quick start (`examples/local/run.sh`):
//!
//! - [`FakeKube`]: a stand-in Kubernetes API server with realistic service accounts, pods
//!   and nodes, metadata-only (PartialObjectMetadata) answers and service-account issuer
//!   discovery; [`FakeHttp`] under it answers fixed routes and records every request. The
//!   `stand-in-kube` binary serves one for the quick start.
//! - [`FakeAws`]: STS, Secrets Manager and Parameter Store with valid answers after an
//!   optional per-call latency, any of which a test can replace per operation and region.
//! - [`LatencyProxy`]: a fault-injecting proxy in front of an AWS endpoint.
//! - [`start_moto`]: moto in server mode (over HTTPS too), for the real AWS wire protocols.
//! - [`pod`]: the provider's image played under the Helm chart's own pod spec (podman).
//! - [`tls`]: a certificate authority made per test run, for peers over HTTPS.
//! - [`tokens`]: service-account tokens as kubelet issues them, and their signing keys.
//! - [`Binary`]: the provider binary started on a socket in a temporary directory, its log
//!   captured, with its metrics address, signals, exit and /proc usage.
//!
//! This is test code: it panics (`unwrap`, `expect`, `assert!`) where a test should fail.

mod aws;
mod binary;
mod http;
mod kube;
mod moto;
pub mod pod;
mod proxy;
pub mod tls;
pub mod tokens;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

pub use aws::{Answer, CONTENT_JSON, FakeAws, sts_answer};
pub use binary::{Binary, cpu_seconds, schedstat_ns};
pub use http::{FakeHttp, Recorded};
pub use kube::{FakeKube, WEB_ROLE};
pub use moto::start_moto;
pub use proxy::{Fault, LatencyProxy};

/// A loopback port nothing listens on (yet).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET `path` over HTTP/1.1 from `addr` (the provider's metrics listener): (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_get_within(addr, path, Duration::from_secs(10)).unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"))
}

/// As [`http_get`], failing when connecting or answering takes longer than `limit`.
pub fn http_get_within(addr: &str, path: &str, limit: Duration) -> std::io::Result<(u16, String)> {
    use std::net::ToSocketAddrs;
    let to = addr.to_socket_addrs()?.next().ok_or(std::io::ErrorKind::InvalidInput)?;
    let mut stream = std::net::TcpStream::connect_timeout(&to, limit)?;
    stream.set_read_timeout(Some(limit))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).unwrap_or("0").parse().unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((status, body))
}

/// The part of `log` around `needle`, for an assertion message.
pub fn excerpt(log: &str, needle: &str) -> String {
    let at = log.find(needle).unwrap_or(0);
    let start = log[..at].char_indices().rev().nth(400).map_or(0, |(i, _)| i);
    log[start..].chars().take(900).collect()
}

/// Polls `condition` every 20 ms until it holds; panics naming `what` after `limit`.
pub fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
