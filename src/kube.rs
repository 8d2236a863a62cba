//! Kubernetes API lookups a mount may need: the IRSA role of a service account
//! (`eks.amazonaws.com/role-arn`), the region label of the pod's node, and the cluster's
//! service-account issuer keys (to verify pods' tokens locally). The client is created in
//! the background at start-up, or by the first lookup if that failed (start-up never waits
//! for the API server), requests are rate limited (`--qps`,
//! `--burst`), answers are bounded in size and cached briefly, and concurrent identical
//! lookups share one request, so a node-wide mount storm makes one request per service
//! account, per node and per key rotation.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::Api;
use moka::Expiry;
use tokio::sync::OnceCell;

use crate::metrics::Metrics;

/// The service-account annotation naming the IRSA role.
pub const ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// The node labels holding the region, the current one first.
pub const REGION_LABELS: &[&str] =
    &["topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region"];

/// How long lookups are reused: long enough to absorb a mount storm, short enough that an
/// annotation change takes effect quickly. A pod never changes nodes.
const ROLE_TTL: Duration = Duration::from_secs(30);
const REGION_TTL: Duration = Duration::from_secs(300);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The objects read here are small; a larger answer is refused before it is buffered.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
const CACHE_ENTRIES: u64 = 10_000;

/// A failed lookup, classified where it happens; names the object, says what to fix.
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

impl ClusterError {
    /// A short, bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::Forbidden { .. } => "forbidden",
            Self::Unavailable { .. } => "error",
            Self::InvalidName { .. } => "invalid_name",
        }
    }
}

/// The cluster's service-account token issuer, from its issuer discovery endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerKeys {
    /// `issuer` of `/.well-known/openid-configuration`: the `iss` of every pod token.
    pub issuer: String,
    /// `/openid/v1/jwks`: the public keys pod tokens are signed with.
    pub keys: jsonwebtoken::jwk::JwkSet,
}

/// Where the client configuration comes from.
#[derive(Debug, Clone)]
pub enum KubeSource {
    /// `KUBECONFIG` / `~/.kube/config`, else the in-cluster service account.
    Infer,
    /// A kubeconfig file.
    Kubeconfig(PathBuf),
}

/// A cached lookup answer and how long it may be served.
#[derive(Clone)]
struct Answer {
    value: Option<String>,
    ttl: Duration,
}

/// Each answer carries its own lifetime (an unscheduled pod's is zero: ask again next time).
struct AnswerExpiry;

impl<K> Expiry<K, Answer> for AnswerExpiry {
    fn expire_after_create(&self, _key: &K, answer: &Answer, _created: Instant) -> Option<Duration> {
        Some(answer.ttl)
    }
}

type Lookups<K> = moka::future::Cache<K, Answer>;

fn lookups<K: std::hash::Hash + Eq + Send + Sync + 'static>() -> Lookups<K> {
    moka::future::Cache::builder().max_capacity(CACHE_ENTRIES).expire_after(AnswerExpiry).build()
}

/// The real API server.
pub struct KubeLookup {
    api: Arc<ApiClient>,
    roles: Lookups<(String, String)>,
    pod_nodes: Lookups<(String, String)>,
    node_regions: Lookups<String>,
}

/// The client (created once) and its rate limit, shared by in-flight lookups.
struct ApiClient {
    source: KubeSource,
    client: OnceCell<kube::Client>,
    limiter: DefaultDirectRateLimiter,
    metrics: Arc<Metrics>,
}

impl KubeLookup {
    pub fn new(source: KubeSource, qps: u32, burst: u32, metrics: Arc<Metrics>) -> Self {
        let api = ApiClient { source, client: OnceCell::new(), limiter: limiter(qps, burst), metrics };
        Self { api: Arc::new(api), roles: lookups(), pod_nodes: lookups(), node_regions: lookups() }
    }
}

/// `qps` requests a second on average, up to `burst` at once (client-go's token bucket).
fn limiter(qps: u32, burst: u32) -> DefaultDirectRateLimiter {
    let qps = NonZeroU32::new(qps).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(qps).allow_burst(burst))
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
                // Answers are read through a size limit, so a huge answer fails the lookup
                // instead of being buffered whole.
                let bounded = tower::util::MapResponseLayer::new(
                    |response: http::Response<Box<kube::client::DynBody>>| {
                        response.map(|body| http_body_util::Limited::new(body, MAX_ANSWER_BYTES))
                    },
                );
                Ok(kube::client::ClientBuilder::try_from(config)
                    .map_err(|e| e.to_string())?
                    .with_layer(&bounded)
                    .build())
            })
            .await
            .cloned()
            .map_err(|message: String| ClusterError::Unavailable { what: what.to_owned(), message })
    }

    /// Runs one request within its deadline, classifying the failure and recording it;
    /// `limited` requests wait for the `--qps` budget first.
    async fn call<T, F, Fut>(
        &self,
        resource: &'static str,
        what: &str,
        limited: bool,
        request: F,
    ) -> Result<T, ClusterError>
    where
        F: FnOnce(kube::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, kube::Error>>,
    {
        if limited {
            self.limiter.until_ready().await;
        }
        let started = Instant::now();
        // One deadline for everything, the client's set-up and the whole answer included: a
        // server that trickles its body is cut off at it, not after every byte.
        let whole = async {
            let client = self.client(what).await?;
            request(client).await.map_err(|e| classify(&e, what))
        };
        let result = match tokio::time::timeout(REQUEST_TIMEOUT, whole).await {
            Ok(result) => result,
            Err(_) => Err(ClusterError::Unavailable {
                what: what.to_owned(),
                message: format!("no whole answer within {REQUEST_TIMEOUT:?}"),
            }),
        };
        let outcome = result.as_ref().map_or_else(ClusterError::label, |_| "success");
        self.metrics.kube_request(resource, outcome);
        tracing::debug!(
            resource,
            outcome,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "kubernetes request"
        );
        result
    }
}

/// What a failed request means for the user. API errors carry the server's own reason;
/// other failures are described without the answer's body.
fn classify(err: &kube::Error, what: &str) -> ClusterError {
    let unavailable = |message: String| ClusterError::Unavailable { what: what.to_owned(), message };
    match err {
        kube::Error::Api(status) => match status.code {
            404 => ClusterError::NotFound { what: what.to_owned() },
            code @ (401 | 403) => ClusterError::Forbidden { what: what.to_owned(), status: code },
            code => unavailable(format!("HTTP {code}")),
        },
        kube::Error::SerdeError(_) | kube::Error::FromUtf8(_) => {
            unavailable("the answer is not a valid Kubernetes object".into())
        }
        kube::Error::Service(e) if is_too_large(e.as_ref()) => {
            unavailable(format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"))
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => unavailable("the request failed".into()),
        other => unavailable(other.to_string()),
    }
}

fn is_too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    crate::cause::find_cause::<http_body_util::LengthLimitError>(err).is_some()
}

/// Kubernetes object names are DNS labels/subdomains; anything else is refused before it
/// reaches a URL.
fn check_name(kind: &str, name: &str) -> Result<(), ClusterError> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with('.');
    if valid { Ok(()) } else { Err(ClusterError::InvalidName { what: format!("{kind} {name:?}") }) }
}

fn non_empty(value: Option<&String>) -> Option<String> {
    value.map(|s| s.trim()).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// Shares one lookup between concurrent callers and caches its answer; errors are not cached.
async fn cached<K, F>(cache: &Lookups<K>, key: K, lookup: F) -> Result<Option<String>, ClusterError>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Result<Answer, ClusterError>>,
{
    cache.try_get_with(key, lookup).await.map(|answer| answer.value).map_err(|e| (*e).clone())
}

impl KubeLookup {
    /// Gets ready for the first lookup (builds the client and its TLS set-up); a failure is
    /// left for that lookup to report.
    pub async fn prepare(&self) {
        if let Err(e) = self.api.client("the Kubernetes API").await {
            tracing::debug!("{e}; retried at the first lookup");
        }
    }

    /// The `eks.amazonaws.com/role-arn` annotation of a service account, if set.
    pub async fn role_arn(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<Option<String>, ClusterError> {
        check_name("namespace", namespace)?;
        check_name("service account", service_account)?;
        let key = (namespace.to_owned(), service_account.to_owned());
        cached(&self.roles, key, async {
            let what = format!("service account {namespace}/{service_account}");
            let account = self
                .api
                .call("serviceaccounts", &what, true, |client| async move {
                    Api::<ServiceAccount>::namespaced(client, namespace).get_metadata(service_account).await
                })
                .await?;
            let role = non_empty(account.metadata.annotations.as_ref().and_then(|a| a.get(ROLE_ANNOTATION)));
            Ok(Answer { value: role, ttl: ROLE_TTL })
        })
        .await
    }

    /// The region label of the node the pod runs on, if set.
    pub async fn node_region(&self, namespace: &str, pod: &str) -> Result<Option<String>, ClusterError> {
        check_name("namespace", namespace)?;
        check_name("pod", pod)?;
        let key = (namespace.to_owned(), pod.to_owned());
        let node = cached(&self.pod_nodes, key, async {
            let what = format!("pod {namespace}/{pod}");
            let object = self
                .api
                .call("pods", &what, true, |client| async move {
                    Api::<Pod>::namespaced(client, namespace).get(pod).await
                })
                .await?;
            let node = non_empty(object.spec.as_ref().and_then(|s| s.node_name.as_ref()));
            let ttl = if node.is_some() { REGION_TTL } else { Duration::ZERO };
            Ok(Answer { value: node, ttl })
        })
        .await?;
        let Some(node) = node else { return Ok(None) };
        check_name("node", &node)?;
        cached(&self.node_regions, node.clone(), async {
            let what = format!("node {node}");
            let object = self
                .api
                .call("nodes", &what, true, |client| async move {
                    Api::<Node>::all(client).get_metadata(&node).await
                })
                .await?;
            let labels = object.metadata.labels.unwrap_or_default();
            let region = REGION_LABELS.iter().find_map(|label| non_empty(labels.get(*label)));
            Ok(Answer { value: region, ttl: REGION_TTL })
        })
        .await
    }

    /// The service-account issuer and its keys, read afresh (callers cache them).
    pub async fn issuer_keys(&self) -> Result<IssuerKeys, ClusterError> {
        /// The part of the discovery document used here.
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
        }
        let get = |path: &'static str, what: &'static str| async move {
            let request = http::Request::get(path)
                .body(Vec::new())
                .map_err(|e| ClusterError::Unavailable { what: what.into(), message: e.to_string() })?;
            let resource = path.rsplit('/').next().unwrap_or(path);
            // Outside the --qps budget: the verifier reads the keys once a minute while mounts
            // verify tokens, or at a key rotation at most every 5 s, so a booting node's
            // service-account lookups keep the whole burst.
            self.api
                .call(resource, what, false, |client| async move { client.request_text(request).await })
                .await
        };
        // Both through the API server (as the built-in system:service-account-issuer-discovery
        // role allows), never the jwks_uri, which on EKS is a public URL.
        // Independent reads: both at once, one round trip.
        const DISCOVERY: &str = "service-account issuer discovery (/.well-known/openid-configuration)";
        const JWKS: &str = "service-account issuer keys (/openid/v1/jwks)";
        let (discovery, keys) = futures::try_join!(
            get("/.well-known/openid-configuration", DISCOVERY),
            get("/openid/v1/jwks", JWKS)
        )?;
        let discovery: Discovery = serde_json::from_str(&discovery).map_err(|_| {
            ClusterError::Unavailable { what: DISCOVERY.into(), message: "the answer has no issuer".into() }
        })?;
        let keys = serde_json::from_str(&keys).map_err(|_| ClusterError::Unavailable {
            what: JWKS.into(),
            message: "the answer is not a JSON Web Key Set".into(),
        })?;
        Ok(IssuerKeys { issuer: discovery.issuer, keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_allows_a_burst_then_waits() {
        let limiter = limiter(5, 10);
        for i in 0..10 {
            assert!(limiter.check().is_ok(), "request {i} of the burst");
        }
        assert!(limiter.check().is_err(), "the 11th must wait for the next token");
        let zero = super::limiter(0, 0);
        assert!(zero.check().is_ok() && zero.check().is_err(), "qps/burst 0 mean 1");
    }

    #[test]
    fn names_are_checked_before_they_reach_a_url() {
        for bad in ["", "UPPER", "a/b", "../x", ".hidden", "a b", &"x".repeat(254)] {
            let err = check_name("pod", bad).unwrap_err();
            assert!(matches!(err, ClusterError::InvalidName { .. }), "{bad:?}: {err:?}");
            assert_eq!(err.label(), "invalid_name");
        }
        for good in ["web-0", "kube-system", "ip-10-0-0-1.ec2.internal"] {
            assert!(check_name("pod", good).is_ok(), "{good}");
        }
    }
}
