//! Kubernetes API lookups a mount may need: the IRSA role of a service account
//! (`eks.amazonaws.com/role-arn`) and the region label of the pod's node. The client is
//! created on first use (start-up never needs the API server), requests are rate limited
//! (`--qps`, `--burst`), and answers are cached briefly so a node-wide mount storm makes one
//! request per service account and per node.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::OnceCell;

use crate::cache::Cache;
use crate::metrics::Metrics;

/// The service-account annotation naming the IRSA role.
pub const ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// The node labels holding the region, the current one first.
pub const REGION_LABELS: &[&str] =
    &["topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region"];

/// How long lookups are reused: long enough to absorb a mount storm, short enough that an
/// annotation change takes effect quickly.
const ROLE_TTL: Duration = Duration::from_secs(30);
const REGION_TTL: Duration = Duration::from_secs(300);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed lookup; names the object, says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("{what} was not found in the Kubernetes API")]
    NotFound { what: String },
    #[error(
        "the Kubernetes API refused to read {what} (HTTP {status}): the provider's RBAC needs get \
         on serviceaccounts, pods and nodes"
    )]
    Forbidden { what: String, status: u16 },
    #[error("cannot read {what} from the Kubernetes API: {message}")]
    Unavailable { what: String, message: String },
    #[error("{what} is not a valid Kubernetes name")]
    InvalidName { what: String },
}

/// Kubernetes lookups, behind a trait so the mount pipeline can be tested with fakes.
pub trait ClusterLookup: Send + Sync {
    /// The `eks.amazonaws.com/role-arn` annotation of a service account, if set.
    fn role_arn<'a>(
        &'a self,
        namespace: &'a str,
        service_account: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ClusterError>>;
    /// The region label of the node the pod runs on, if set.
    fn node_region<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ClusterError>>;
}

/// Where the client configuration comes from.
#[derive(Debug, Clone)]
pub enum KubeSource {
    /// `KUBECONFIG` / `~/.kube/config`, else the in-cluster service account.
    Infer,
    /// A kubeconfig file.
    Kubeconfig(PathBuf),
}

/// The real API server.
pub struct KubeLookup {
    api: Arc<ApiClient>,
    roles: Cache<(String, String), Option<String>, ClusterError>,
    pod_nodes: Cache<(String, String), Option<String>, ClusterError>,
    node_regions: Cache<String, Option<String>, ClusterError>,
}

/// The lazily created client and its rate limit, shared by in-flight lookups.
struct ApiClient {
    source: KubeSource,
    client: OnceCell<kube::Client>,
    limiter: RateLimiter,
    metrics: Arc<Metrics>,
}

impl KubeLookup {
    pub fn new(source: KubeSource, qps: u32, burst: u32, metrics: Arc<Metrics>) -> Self {
        let api =
            ApiClient { source, client: OnceCell::new(), limiter: RateLimiter::new(qps, burst), metrics };
        Self {
            api: Arc::new(api),
            roles: Cache::new(10_000),
            pod_nodes: Cache::new(10_000),
            node_regions: Cache::new(10_000),
        }
    }
}

impl ApiClient {
    /// The client, created on first use; a failure is retried at the next lookup.
    async fn client(&self, what: &str) -> Result<kube::Client, ClusterError> {
        self.client
            .get_or_try_init(|| async {
                let mut config = match &self.source {
                    KubeSource::Infer => kube::Config::infer().await.map_err(|e| e.to_string()),
                    KubeSource::Kubeconfig(path) => match kube::config::Kubeconfig::read_from(path) {
                        Ok(kubeconfig) => {
                            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                                .await
                                .map_err(|e| e.to_string())
                        }
                        Err(e) => Err(e.to_string()),
                    },
                }
                .map_err(|e| format!("no Kubernetes client configuration: {e}"))?;
                config.connect_timeout = Some(REQUEST_TIMEOUT);
                config.read_timeout = Some(REQUEST_TIMEOUT);
                kube::Client::try_from(config).map_err(|e| e.to_string())
            })
            .await
            .cloned()
            .map_err(|message| ClusterError::Unavailable { what: what.to_owned(), message })
    }

    /// GETs one object as JSON, mapping HTTP errors to what the user must fix. Reading raw
    /// JSON (not typed objects) keeps the lookups working with any conformant API server
    /// and with minimal objects: only the fields we use matter.
    async fn get(
        &self,
        resource: &'static str,
        path: String,
        what: &str,
    ) -> Result<serde_json::Value, ClusterError> {
        let client = self.client(what).await?;
        self.limiter.acquire().await;
        let result = self.get_once(&client, &path, what).await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(ClusterError::NotFound { .. }) => "not_found",
            Err(ClusterError::Forbidden { .. }) => "forbidden",
            Err(ClusterError::Unavailable { .. } | ClusterError::InvalidName { .. }) => "error",
        };
        self.metrics.kube_request(resource, outcome);
        result
    }

    async fn get_once(
        &self,
        client: &kube::Client,
        path: &str,
        what: &str,
    ) -> Result<serde_json::Value, ClusterError> {
        let unavailable = |message: String| ClusterError::Unavailable { what: what.to_owned(), message };
        let request = http::Request::get(path)
            .header(http::header::ACCEPT, "application/json")
            .body(kube::client::Body::from(Vec::new()))
            .map_err(|e| unavailable(e.to_string()))?;
        let exchange = async {
            let response = client.send(request).await.map_err(|e| unavailable(e.to_string()))?;
            let status = response.status();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .map_err(|e| unavailable(e.to_string()))?
                .to_bytes();
            Ok::<_, ClusterError>((status, body))
        };
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT * 2, exchange)
            .await
            .map_err(|_| unavailable("no answer in time".into()))??;
        match status.as_u16() {
            200..=299 => {
                serde_json::from_slice(&body).map_err(|_| unavailable("the answer is not JSON".into()))
            }
            404 => Err(ClusterError::NotFound { what: what.to_owned() }),
            code @ (401 | 403) => Err(ClusterError::Forbidden { what: what.to_owned(), status: code }),
            code => Err(unavailable(format!("HTTP {code}"))),
        }
    }
}

/// Kubernetes object names are DNS labels/subdomains; anything else is refused before it
/// reaches a URL.
fn check_name(kind: &str, name: &str) -> Result<(), ClusterError> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err(ClusterError::Unavailable {
            what: format!("{kind} {name:?}"),
            message: "not a valid Kubernetes name".into(),
        })
    }
}

/// A string at a JSON pointer, if present and non-empty.
fn text_at(value: &serde_json::Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl ClusterLookup for KubeLookup {
    fn role_arn<'a>(
        &'a self,
        namespace: &'a str,
        service_account: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ClusterError>> {
        let api = self.api.clone();
        let (ns, sa) = (namespace.to_owned(), service_account.to_owned());
        Box::pin(async move {
            let key = (ns.clone(), sa.clone());
            let fetch = move || async move {
                let what = format!("service account {ns}/{sa}");
                check_name("namespace", &ns)?;
                check_name("service account", &sa)?;
                let path = format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}");
                let account = api.get("serviceaccounts", path, &what).await?;
                let role = text_at(
                    &account,
                    &format!("/metadata/annotations/{}", ROLE_ANNOTATION.replace('/', "~1")),
                );
                Ok((role, Instant::now() + ROLE_TTL))
            };
            self.roles.get_or_fetch(key, fetch).await.0
        })
    }

    fn node_region<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ClusterError>> {
        Box::pin(async move {
            let api = self.api.clone();
            let (ns, name) = (namespace.to_owned(), pod.to_owned());
            let node = self
                .pod_nodes
                .get_or_fetch((ns.clone(), name.clone()), move || async move {
                    let what = format!("pod {ns}/{name}");
                    check_name("namespace", &ns)?;
                    check_name("pod", &name)?;
                    let pod = api.get("pods", format!("/api/v1/namespaces/{ns}/pods/{name}"), &what).await?;
                    let node = text_at(&pod, "/spec/nodeName");
                    // A pod never changes nodes; an unscheduled one is asked again next time.
                    let ttl = if node.is_some() { REGION_TTL } else { Duration::ZERO };
                    Ok((node, Instant::now() + ttl))
                })
                .await
                .0?;
            let Some(node) = node else { return Ok(None) };
            let api = self.api.clone();
            self.node_regions
                .get_or_fetch(node.clone(), move || async move {
                    let what = format!("node {node}");
                    check_name("node", &node)?;
                    let object = api.get("nodes", format!("/api/v1/nodes/{node}"), &what).await?;
                    let region = REGION_LABELS.iter().find_map(|label| {
                        text_at(&object, &format!("/metadata/labels/{}", label.replace('/', "~1")))
                    });
                    Ok((region, Instant::now() + REGION_TTL))
                })
                .await
                .0
        })
    }
}

/// A token bucket: `qps` requests per second on average, up to `burst` at once.
pub struct RateLimiter {
    qps: f64,
    burst: f64,
    state: std::sync::Mutex<(f64, tokio::time::Instant)>,
}

impl RateLimiter {
    pub fn new(qps: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps: f64::from(qps.max(1)),
            burst,
            state: std::sync::Mutex::new((burst, tokio::time::Instant::now())),
        }
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = tokio::time::Instant::now();
                let (tokens, last) = *state;
                let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.qps).min(self.burst);
                if tokens >= 1.0 {
                    *state = (tokens - 1.0, now);
                    return;
                }
                *state = (tokens, now);
                Duration::from_secs_f64((1.0 - tokens) / self.qps)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_allows_a_burst_then_qps() {
        let limiter = RateLimiter::new(5, 10);
        let started = tokio::time::Instant::now();
        for _ in 0..10 {
            limiter.acquire().await;
        }
        assert!(started.elapsed() < Duration::from_millis(1), "the burst is immediate");
        for _ in 0..5 {
            limiter.acquire().await;
        }
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(990) && elapsed <= Duration::from_millis(1100),
            "{elapsed:?}"
        );
    }
}
