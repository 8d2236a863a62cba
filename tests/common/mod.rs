//! Test fixtures shared by the integration tests: a real moto server for AWS, the provider
//! serving on a real Unix socket in this process, a gRPC client speaking to it like the CSI
//! driver, and a latency-adding TCP proxy in front of moto. The peers the bench shares too
//! (stand-in Kubernetes API, fake AWS, tokens, the binary harness) are the test kit's
//! (crates/test-kit), re-exported here.
#![allow(dead_code)]

pub use test_kit::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use csi_provider_aws::aws::AwsSettings;
use csi_provider_aws::aws::shared::{CacheSettings, SharingStats};
use csi_provider_aws::kube::KubeSource;
use csi_provider_aws::metrics::Metrics;
use csi_provider_aws::mount::MountSettings;
use csi_provider_aws::proto::csi_driver_provider_client::CsiDriverProviderClient;
use csi_provider_aws::proto::{MountRequest, MountResponse};
use csi_provider_aws::compose;
use csi_provider_aws::server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::Channel;

/// A moto server shared by the tests of one test binary: `MOTO_URL` if set, else one started
/// here (it exits when this test process does).
pub fn moto_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| std::env::var("MOTO_URL").unwrap_or_else(|_| start_moto(None)))
}

/// The provider binary of this build.
pub fn provider_binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_csi-provider-aws"))
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub fn test_credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new("testing", "testing", None, None, "tests"))
}

async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(moto_url())
        .credentials_provider(test_credentials())
        .load()
        .await
}

/// A Secrets Manager client on moto, for seeding test data.
pub async fn secrets_manager(region: &str) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&sdk_config(region).await)
}

/// A Parameter Store client on moto, for seeding test data.
pub async fn ssm(region: &str) -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::new(&sdk_config(region).await)
}

/// Creates a string secret and returns (ARN, VersionId).
pub async fn create_secret(region: &str, name: &str, value: &str) -> (String, String) {
    let out =
        secrets_manager(region).await.create_secret().name(name).secret_string(value).send().await.unwrap();
    (out.arn.unwrap(), out.version_id.unwrap())
}

/// Creates or overwrites a parameter and returns its version.
pub async fn put_parameter(
    region: &str,
    name: &str,
    value: &str,
    kind: aws_sdk_ssm::types::ParameterType,
) -> i64 {
    ssm(region)
        .await
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(kind)
        .overwrite(true)
        .send()
        .await
        .unwrap()
        .version
}

/// How to start a provider for a test.
#[derive(Clone, Debug)]
pub struct Options {
    pub driver_writes_secrets: bool,
    pub default_region: Option<String>,
    /// Where the provider sends AWS calls (moto by default; a proxy for fault tests).
    pub endpoint: Option<String>,
    pub call_timeout: Duration,
    /// A kubeconfig for the Kubernetes lookups; a default stand-in API server otherwise.
    pub kubeconfig: Option<PathBuf>,
    pub agent_ipv4: String,
    pub agent_ipv6: String,
    pub agent_timeout: Duration,
    /// Use fixed test credentials instead of the pod's identity.
    pub provider_credentials: bool,
    pub cache_ttl: Duration,
    pub mount_timeout: Duration,
    pub max_mount_bytes: usize,
    pub max_objects: usize,
    /// Let verified replicas share their service account's IRSA identity.
    pub share_irsa: bool,
    /// Kubernetes API `--qps`, `--burst`.
    pub kube_rate: (u32, u32),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            driver_writes_secrets: true,
            default_region: None,
            endpoint: None,
            call_timeout: Duration::from_secs(12),
            kubeconfig: None,
            agent_ipv4: "http://127.0.0.1:9/v1/credentials".into(),
            agent_ipv6: "http://[::1]:9/v1/credentials".into(),
            agent_timeout: Duration::from_millis(500),
            provider_credentials: false,
            cache_ttl: Duration::ZERO,
            mount_timeout: Duration::from_secs(30),
            max_mount_bytes: MountSettings::default().max_response_bytes,
            max_objects: MountSettings::default().max_objects,
            share_irsa: true,
            kube_rate: (100, 100),
        }
    }
}

/// The provider serving on a Unix socket in a temp directory, in this process.
pub struct Provider {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub metrics: Arc<Metrics>,
    /// The stand-in API server when the test gave no kubeconfig.
    pub kube: Option<FakeKube>,
    pub sharing: Arc<SharingStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Provider {
    pub async fn start(options: Options) -> Self {
        let kube = match options.kubeconfig {
            Some(_) => None,
            None => Some(FakeKube::start().await),
        };
        Self::start_with(options, kube).await
    }

    /// Starts against `kube` (objects and discovery already in place, as a cluster has them
    /// before the provider starts), or `options.kubeconfig` when `kube` is `None`.
    pub async fn start_with(options: Options, kube: Option<FakeKube>) -> Self {
        let kubeconfig = match &kube {
            Some(kube) => kube.kubeconfig.clone(),
            None => options.kubeconfig.clone().unwrap_or_default(),
        };
        let settings = provider::Settings {
            aws: AwsSettings {
                endpoint_url: Some(options.endpoint.clone().unwrap_or_else(|| moto_url().to_owned())),
                call_timeout: options.call_timeout,
                attempt_timeout: options.call_timeout.min(Duration::from_secs(5)),
                ..AwsSettings::default()
            },
            mount: MountSettings {
                driver_writes_secrets: options.driver_writes_secrets,
                default_region: options.default_region.clone(),
                timeout: options.mount_timeout,
                max_response_bytes: options.max_mount_bytes,
                max_objects: options.max_objects,
                ..MountSettings::default()
            },
            cache: CacheSettings { ttl: options.cache_ttl, ..CacheSettings::default() },
            max_aws_requests: 64,
            kube: KubeSource::Kubeconfig(kubeconfig),
            kube_qps: options.kube_rate.0,
            kube_burst: options.kube_rate.1,
            identity: if options.provider_credentials {
                provider::IdentityMode::Fixed(test_credentials())
            } else {
                provider::IdentityMode::Pods {
                    agent_ipv4: options.agent_ipv4.clone(),
                    agent_ipv6: options.agent_ipv6.clone(),
                    agent_timeout: options.agent_timeout,
                    share_irsa: options.share_irsa,
                }
            },
        };
        let built = provider::build(settings).await.unwrap();
        let (mounter, metrics, sharing) = (built.mounter, built.metrics, built.sharing);
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("aws.sock");
        let listener = server::bind(&socket).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let path = socket.clone();
        let m = metrics.clone();
        let task = tokio::spawn(async move {
            server::run(listener, &path, mounter, m, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self { dir, socket, metrics, kube, sharing, stop: Some(stop), task: Some(task) }
    }

    /// A client that talks to the socket like the driver (authority `localhost`).
    pub async fn client(&self) -> CsiDriverProviderClient<Channel> {
        CsiDriverProviderClient::new(channel(&self.socket).await)
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

/// A gRPC channel over the Unix socket at `path`, as the driver dials it.
pub async fn channel(path: &Path) -> Channel {
    csi_provider_aws::commands::mount::connect(path).await.unwrap()
}

/// The service-account tokens the driver passes (tokenRequests for both audiences).
pub fn tokens_json(suffix: &str) -> String {
    serde_json::json!({
        "sts.amazonaws.com": {"token": format!("sts-token-{suffix}"), "expirationTimestamp": "2099-01-01T00:00:00Z"},
        "pods.eks.amazonaws.com": {"token": format!("pod-token-{suffix}"), "expirationTimestamp": "2099-01-01T00:00:00Z"},
    })
    .to_string()
}

/// The volume context the driver adds to every mount.
pub fn pod_context() -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    map.insert("csi.storage.k8s.io/serviceAccount.tokens".into(), tokens_json("web-0").into());
    for (k, v) in [
        ("csi.storage.k8s.io/pod.name", "web-0"),
        ("csi.storage.k8s.io/pod.namespace", "shop"),
        ("csi.storage.k8s.io/pod.uid", "0b1e6a9c-9d0d-4d53-a0f6-b3b5a6b0b001"),
        ("csi.storage.k8s.io/serviceAccount.name", "web"),
        ("secretProviderClass", "web-secrets"),
        ("providerName", "aws"),
    ] {
        map.insert(k.into(), v.into());
    }
    map
}

/// A MountRequest shaped like the driver's: class parameters overlaid with the pod context.
pub fn mount_request(parameters: &[(&str, &str)], target: &Path) -> MountRequest {
    let mut attributes = pod_context();
    for (k, v) in parameters {
        attributes.insert((*k).into(), (*v).into());
    }
    MountRequest {
        attributes: serde_json::Value::Object(attributes).to_string(),
        secrets: "{}".into(),
        target_path: target.display().to_string(),
        permission: "420".into(),
        current_object_version: Vec::new(),
    }
}

/// Files of a driver-writes response as (path, mode, contents).
pub fn files(response: &MountResponse) -> Vec<(String, i32, String)> {
    let mut out: Vec<_> = response
        .files
        .iter()
        .map(|f| (f.path.clone(), f.mode, String::from_utf8_lossy(&f.contents).into_owned()))
        .collect();
    out.sort();
    out
}

/// Object versions of a response as sorted (id, version).
pub fn versions(response: &MountResponse) -> Vec<(String, String)> {
    let mut out: Vec<_> = response.object_version.iter().map(|v| (v.id.clone(), v.version.clone())).collect();
    out.sort();
    out
}

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
