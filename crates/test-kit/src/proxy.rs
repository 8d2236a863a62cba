//! A fault-injecting TCP proxy for AWS endpoints (moto or the fake): it delays each chunk,
//! records and counts the HTTP requests it forwards, and can answer the requests signed for
//! a region with an injected error, a reset or a stall.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy in front of moto that delays each chunk by `one_way` in each direction (so
/// an exchange costs about 2 x one_way more), records and counts the HTTP requests it
/// forwards, and can answer requests signed for a region with an injected error instead.
pub struct LatencyProxy {
    pub addr: SocketAddr,
    stats: Arc<Stats>,
}

/// What the proxy saw and what it injects.
#[derive(Default)]
struct Stats {
    /// TCP connections accepted.
    connections: AtomicUsize,
    requests: AtomicUsize,
    outstanding: AtomicUsize,
    max_outstanding: AtomicUsize,
    /// The head (and small body) of every request.
    log: std::sync::Mutex<Vec<String>>,
    /// region -> injected fault.
    faults: std::sync::Mutex<std::collections::HashMap<String, Fault>>,
}

/// What the proxy does to requests signed for a region.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Answer with this HTTP status and an AWS JSON error.
    Status(u16),
    /// Close the connection instead of answering.
    Reset,
    /// Forward, but this much later.
    Delay(Duration),
    /// Answer 200 with the first bytes of a body, then send nothing more (a stalled stream).
    Stall,
}

type Chunk = (tokio::time::Instant, Vec<u8>);

impl LatencyProxy {
    pub async fn start(upstream: &str, one_way: Duration) -> Self {
        let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let shared = stats.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let stats = shared.clone();
                stats.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else { return };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let (to_client, to_client_rx) = tokio::sync::mpsc::unbounded_channel::<Chunk>();
                    let (to_server, to_server_rx) = tokio::sync::mpsc::unbounded_channel::<Chunk>();
                    tokio::join!(
                        read_requests(cr, to_server, to_client.clone(), one_way, stats.clone()),
                        read_responses(sr, to_client, one_way, stats),
                        deliver(to_server_rx, sw),
                        deliver(to_client_rx, cw),
                    );
                });
            }
        });
        Self { addr, stats }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// The connections the provider opened to AWS.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// The most requests that were awaiting their responses at the same time.
    pub fn max_outstanding(&self) -> usize {
        self.stats.max_outstanding.load(Ordering::SeqCst)
    }

    pub fn reset_max_outstanding(&self) {
        self.stats.max_outstanding.store(0, Ordering::SeqCst);
    }

    /// Heads of the requests seen so far that contain `needle`.
    pub fn requests_containing(&self, needle: &str) -> Vec<String> {
        self.stats.log.lock().unwrap().iter().filter(|r| r.contains(needle)).cloned().collect()
    }

    /// Answers every request signed for `region` with `status` (a JSON AWS error).
    pub fn fail_region(&self, region: &str, status: u16) {
        self.fault(region, Fault::Status(status));
    }

    /// Applies `fault` to every request signed for `region`.
    pub fn fault(&self, region: &str, fault: Fault) {
        self.stats.faults.lock().unwrap().insert(region.to_owned(), fault);
    }

    pub fn heal(&self) {
        self.stats.faults.lock().unwrap().clear();
    }
}

/// The region in a SigV4 credential scope: `Credential=AKID/DATE/REGION/SERVICE/aws4_request`.
fn signed_region(head: &str) -> Option<String> {
    let scope = head.split("Credential=").nth(1)?;
    scope.split('/').nth(2).map(str::to_owned)
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn injected_response(status: u16) -> Vec<u8> {
    let (kind, reason) = match status {
        400 => ("ResourceNotFoundException", "Bad Request"),
        429 => ("ThrottlingException", "Too Many Requests"),
        500 => ("InternalServiceError", "Internal Server Error"),
        _ => ("ServiceUnavailable", "Service Unavailable"),
    };
    let body = format!(r#"{{"__type":"{kind}","message":"injected by the test proxy"}}"#);
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-ErrorType: {kind}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads the client's requests: counts and logs them, forwards them, or answers with an
/// injected error (swallowing the request's body).
async fn read_requests(
    mut from: tokio::net::tcp::OwnedReadHalf,
    to_server: tokio::sync::mpsc::UnboundedSender<Chunk>,
    to_client: tokio::sync::mpsc::UnboundedSender<Chunk>,
    delay: Duration,
    stats: Arc<Stats>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut swallow = 0usize;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if swallow > 0 {
            swallow = swallow.saturating_sub(n);
            continue;
        }
        let due = tokio::time::Instant::now() + delay;
        if chunk.starts_with(b"POST ") || chunk.starts_with(b"GET ") {
            let head = String::from_utf8_lossy(&chunk[..n.min(8192)]).into_owned();
            stats.requests.fetch_add(1, Ordering::SeqCst);
            let now = stats.outstanding.fetch_add(1, Ordering::SeqCst) + 1;
            stats.max_outstanding.fetch_max(now, Ordering::SeqCst);
            stats.log.lock().unwrap().push(head.clone());
            let fault = signed_region(&head).and_then(|r| stats.faults.lock().unwrap().get(&r).copied());
            match fault {
                Some(Fault::Status(status)) => {
                    let head_len = head.find("\r\n\r\n").map_or(n, |i| i + 4);
                    swallow = content_length(&head).saturating_sub(n.saturating_sub(head_len));
                    stats.outstanding.fetch_sub(1, Ordering::SeqCst);
                    let _ = to_client.send((due, injected_response(status)));
                    continue;
                }
                Some(Fault::Stall) => {
                    let head_len = head.find("\r\n\r\n").map_or(n, |i| i + 4);
                    swallow = content_length(&head).saturating_sub(n.saturating_sub(head_len));
                    let stalled = "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n\
                                   Content-Length: 4096\r\n\r\n{\"ARN\":\"arn:aws:secretsmanager:";
                    let _ = to_client.send((due, stalled.as_bytes().to_vec()));
                    continue;
                }
                Some(Fault::Reset) => {
                    stats.outstanding.fetch_sub(1, Ordering::SeqCst);
                    // An empty chunk tells the client side to close the connection.
                    let _ = to_client.send((due, Vec::new()));
                    break;
                }
                Some(Fault::Delay(extra)) => {
                    if to_server.send((due + extra, chunk.to_vec())).is_err() {
                        break;
                    }
                    continue;
                }
                None => {}
            }
        }
        if to_server.send((due, chunk.to_vec())).is_err() {
            break;
        }
    }
}

/// Reads the server's responses and passes them on.
async fn read_responses(
    mut from: tokio::net::tcp::OwnedReadHalf,
    to_client: tokio::sync::mpsc::UnboundedSender<Chunk>,
    delay: Duration,
    stats: Arc<Stats>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // A chunk starting with the status line starts a response (no pipelining in HTTP/1.1).
        if buf[..n].starts_with(b"HTTP/") {
            stats.outstanding.fetch_sub(1, Ordering::SeqCst);
        }
        if to_client.send((tokio::time::Instant::now() + delay, buf[..n].to_vec())).is_err() {
            break;
        }
    }
}

/// Writes each chunk when it is due, so chunks pipeline like on a real link.
async fn deliver(
    mut chunks: tokio::sync::mpsc::UnboundedReceiver<Chunk>,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    while let Some((due, chunk)) = chunks.recv().await {
        tokio::time::sleep_until(due).await;
        if chunk.is_empty() {
            break;
        }
        if to.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
