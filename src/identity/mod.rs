//! The AWS identity a mount fetches with: the pod's own, never the provider's. IRSA (the
//! service account's role, assumed with the pod's token) or EKS Pod Identity (the node's
//! agent, given the pod's token). Credentials are cached until shortly before they expire,
//! keyed by everything they derive from, so a pod only ever gets credentials made from its
//! own token, service account and role.

pub mod irsa;
pub mod pod_identity;
pub mod tokens;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::aws::ErrorClass;
use crate::cache::{Cache, Lookup};
use crate::class::{AssumeRole, AuthMethod};
use crate::kube::{ClusterError, ClusterLookup};
use crate::metrics::Metrics;
use crate::request::Pod;
pub use pod_identity::PodIdentityAgent;

/// Why no credentials could be had for a pod. Never carries a token or a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "the CSI driver passed no service account token: configure tokenRequests in the CSIDriver \
         secrets-store.csi.k8s.io with the audiences \"sts.amazonaws.com\" (IRSA) and \
         \"pods.eks.amazonaws.com\" (Pod Identity), e.g. Helm value tokenRequests of the driver's chart"
    )]
    NoTokens,
    #[error(
        "no service account token for audience {0:?}: add it to tokenRequests in the CSIDriver \
         secrets-store.csi.k8s.io (audiences \"sts.amazonaws.com\" and \"pods.eks.amazonaws.com\")"
    )]
    NoTokenForAudience(String),
    #[error("csi.storage.k8s.io/serviceAccount.tokens is not the driver's JSON: {0}")]
    BadTokens(String),
    #[error(
        "service account {namespace}/{service_account} has no eks.amazonaws.com/role-arn \
         annotation: annotate it with the IAM role the pod should use (IRSA), or set \
         usePodIdentity: \"true\" in the SecretProviderClass for EKS Pod Identity"
    )]
    NoRole { namespace: String, service_account: String },
    #[error("the mount request names no {0}; the CSI driver always sends it")]
    NoPodField(&'static str),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("STS AssumeRoleWithWebIdentity for role {role} in {region} failed: {message}")]
    Sts { role: String, region: String, class: ErrorClass, code: Option<String>, message: String },
    #[error("the EKS Pod Identity agent refused the pod's token (HTTP {status}): {message}")]
    AgentRejected { status: u16, message: String },
    #[error(
        "the EKS Pod Identity agent did not answer ({0}); check that the eks-pod-identity-agent \
         add-on runs on this node, or set preferredAddressType"
    )]
    AgentUnavailable(String),
    #[error("no AWS credentials are available to the provider: {0}")]
    NoCredentials(String),
}

impl IdentityError {
    /// Whether the cause may go away by itself (the driver retries the mount).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Sts { class, .. } => class.is_transient(),
            Self::AgentUnavailable(_) => true,
            Self::Cluster(ClusterError::Unavailable { .. }) => true,
            _ => false,
        }
    }

    /// The gRPC code for the driver.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::NoTokens | Self::NoTokenForAudience(_) | Self::BadTokens(_) | Self::NoPodField(_) => {
                Code::InvalidArgument
            }
            Self::Cluster(ClusterError::NotFound { .. }) => Code::NotFound,
            Self::Cluster(ClusterError::InvalidName { .. }) => Code::InvalidArgument,
            _ if self.is_transient() => Code::Unavailable,
            _ => Code::PermissionDenied,
        }
    }
}

/// Credentials and a key naming everything they derive from.
#[derive(Debug, Clone)]
pub struct Identity {
    pub credentials: SharedCredentialsProvider,
    /// Equal keys mean interchangeable credentials; it reveals no token.
    pub key: Arc<str>,
}

/// Produces the credentials a pod's mount uses.
pub trait CredentialSource: Send + Sync {
    /// Credentials for `pod`; `regions` are the mount's primary then failover region (STS is
    /// asked in the first that answers).
    fn credentials<'a>(
        &'a self,
        pod: &'a Pod,
        auth: AuthMethod,
        regions: &'a [String],
    ) -> BoxFuture<'a, Result<Identity, IdentityError>>;

    /// Credentials of `role`, assumed with `base` (the pod's own): role chaining.
    fn assume_role<'a>(
        &'a self,
        pod: &'a Pod,
        base: &'a Identity,
        role: &'a AssumeRole,
        regions: &'a [String],
    ) -> BoxFuture<'a, Result<Identity, IdentityError>> {
        let _ = (pod, base, regions);
        Box::pin(async move {
            Err(IdentityError::NoCredentials(format!(
                "cannot assume {} with this credential source",
                role.role_arn
            )))
        })
    }
}

/// The provider's own credentials (the SDK's default chain), whatever the pod. For tests and
/// single-tenant setups only; the provider binary uses [`PodCredentials`].
pub struct ProviderCredentials(pub Option<SharedCredentialsProvider>);

impl CredentialSource for ProviderCredentials {
    fn credentials<'a>(
        &'a self,
        _pod: &'a Pod,
        _auth: AuthMethod,
        _regions: &'a [String],
    ) -> BoxFuture<'a, Result<Identity, IdentityError>> {
        let result =
            self.0.clone().map(|credentials| Identity { credentials, key: "provider".into() }).ok_or_else(
                || IdentityError::NoCredentials("the SDK's default credential chain found none".into()),
            );
        Box::pin(async move { result })
    }
}

/// Everything a cached credential derives from. The token is kept only as a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CredentialKey {
    method: &'static str,
    namespace: String,
    service_account: String,
    role: String,
    token_digest: [u8; 32],
}

/// The pod's own identity: IRSA or EKS Pod Identity, cached.
pub struct PodCredentials {
    sts: SdkConfig,
    cluster: Arc<dyn ClusterLookup>,
    agent: Arc<PodIdentityAgent>,
    cache: Cache<CredentialKey, Credentials, IdentityError>,
    metrics: Arc<Metrics>,
}

/// Credentials are used until this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// How long credentials without an expiry are reused.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(900);

impl PodCredentials {
    /// `sts` is the SDK configuration for STS (no credentials of its own: the call is unsigned).
    pub fn new(
        sts: SdkConfig,
        cluster: Arc<dyn ClusterLookup>,
        agent: PodIdentityAgent,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { sts, cluster, agent: Arc::new(agent), cache: Cache::new(10_000), metrics }
    }

    async fn resolve(
        &self,
        pod: &Pod,
        auth: AuthMethod,
        regions: &[String],
    ) -> Result<Identity, IdentityError> {
        if pod.namespace.is_empty() {
            return Err(IdentityError::NoPodField("csi.storage.k8s.io/pod.namespace"));
        }
        if pod.service_account.is_empty() {
            return Err(IdentityError::NoPodField("csi.storage.k8s.io/serviceAccount.name"));
        }
        let identity_key;
        let (result, lookup) = match auth {
            AuthMethod::Irsa => {
                let token = tokens::token_for(pod.tokens.as_ref(), tokens::IRSA_AUDIENCE)?;
                let role =
                    self.cluster.role_arn(&pod.namespace, &pod.service_account).await?.ok_or_else(|| {
                        IdentityError::NoRole {
                            namespace: pod.namespace.clone(),
                            service_account: pod.service_account.clone(),
                        }
                    })?;
                let key = key("irsa", pod, &role, &token);
                identity_key = key.name();
                let sts = self.sts.clone();
                let session = irsa::session_name(&pod.namespace, &pod.service_account);
                let regions = regions.to_vec();
                let metrics = self.metrics.clone();
                self.cache
                    .get_or_fetch(key, move || async move {
                        across_regions(&regions, &metrics, "AssumeRoleWithWebIdentity", |region| {
                            let (sts, role, token, session) = (&sts, &role, &token, &session);
                            async move { irsa::assume_role(sts, &region, role, token, session).await }
                        })
                        .await
                    })
                    .await
            }
            AuthMethod::PodIdentity(preference) => {
                let token = tokens::token_for(pod.tokens.as_ref(), tokens::POD_IDENTITY_AUDIENCE)?;
                let key = key("pod-identity", pod, "", &token);
                identity_key = key.name();
                let agent = self.agent.clone();
                self.cache
                    .get_or_fetch(key, move || async move {
                        agent.credentials(&token, preference).await.map(with_expiry)
                    })
                    .await
            }
        };
        let method = match auth {
            AuthMethod::Irsa => "irsa",
            AuthMethod::PodIdentity(_) => "pod_identity",
        };
        self.metrics.credential(method, source(result.is_ok(), lookup));
        let credentials = SharedCredentialsProvider::new(result?);
        Ok(Identity { credentials, key: identity_key })
    }
}

impl CredentialSource for PodCredentials {
    fn credentials<'a>(
        &'a self,
        pod: &'a Pod,
        auth: AuthMethod,
        regions: &'a [String],
    ) -> BoxFuture<'a, Result<Identity, IdentityError>> {
        Box::pin(self.resolve(pod, auth, regions))
    }

    fn assume_role<'a>(
        &'a self,
        pod: &'a Pod,
        base: &'a Identity,
        role: &'a AssumeRole,
        regions: &'a [String],
    ) -> BoxFuture<'a, Result<Identity, IdentityError>> {
        Box::pin(async move {
            // Derived from the pod's identity: the key covers it, the role and the external id.
            let mut hasher = Sha256::new();
            for part in [base.key.as_ref(), role.role_arn.as_str(), role.external_id.as_deref().unwrap_or("")]
            {
                hasher.update(part.as_bytes());
                hasher.update([0]);
            }
            let key_name: Arc<str> =
                hasher.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>().into();
            let cache_key = CredentialKey {
                method: "assume-role",
                namespace: pod.namespace.clone(),
                service_account: pod.service_account.clone(),
                role: role.role_arn.clone(),
                token_digest: Sha256::digest(key_name.as_bytes()).into(),
            };
            let sts = self.sts.clone();
            let base_credentials = base.credentials.clone();
            let role = role.clone();
            let session = irsa::session_name(&pod.namespace, &pod.service_account);
            let regions = regions.to_vec();
            let metrics = self.metrics.clone();
            let (result, lookup) = self
                .cache
                .get_or_fetch(cache_key, move || async move {
                    across_regions(&regions, &metrics, "AssumeRole", |region| {
                        let (sts, base, role, session) = (&sts, base_credentials.clone(), &role, &session);
                        async move {
                            irsa::chain_role(
                                sts,
                                &region,
                                base,
                                &role.role_arn,
                                role.external_id.as_deref(),
                                session,
                            )
                            .await
                        }
                    })
                    .await
                })
                .await;
            self.metrics.credential("assume_role", source(result.is_ok(), lookup));
            Ok(Identity { credentials: SharedCredentialsProvider::new(result?), key: key_name })
        })
    }
}

impl CredentialKey {
    /// A printable digest of the whole key.
    fn name(&self) -> Arc<str> {
        let mut hasher = Sha256::new();
        for part in [self.method, &self.namespace, &self.service_account, &self.role] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        hasher.update(self.token_digest);
        let digest = hasher.finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect::<String>().into()
    }
}

fn key(method: &'static str, pod: &Pod, role: &str, token: &crate::secret::SecretString) -> CredentialKey {
    CredentialKey {
        method,
        namespace: pod.namespace.clone(),
        service_account: pod.service_account.clone(),
        role: role.to_owned(),
        token_digest: Sha256::digest(token.expose().as_bytes()).into(),
    }
}

/// The `credentials_total` source label of a lookup.
fn source(ok: bool, lookup: Lookup) -> &'static str {
    match (ok, lookup) {
        (false, _) => "error",
        (true, Lookup::Miss) => "fetched",
        (true, Lookup::Hit) => "cached",
        (true, Lookup::Shared) => "shared",
    }
}

/// Calls STS in each region in turn until one answers (another region's STS may answer when
/// this one is down); a client error stops at once. Records every call.
async fn across_regions<F, Fut>(
    regions: &[String],
    metrics: &Metrics,
    operation: &'static str,
    call: F,
) -> Result<(Credentials, Instant), IdentityError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Credentials, IdentityError>>,
{
    let mut last = None;
    for region in regions {
        let started = Instant::now();
        let result = call(region.clone()).await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(IdentityError::Sts { class, .. }) => class.label(),
            Err(_) => "client",
        };
        metrics.aws_request("sts", operation, outcome, started.elapsed());
        match result {
            Ok(credentials) => return Ok(with_expiry(credentials)),
            Err(e) if e.is_transient() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| IdentityError::NoCredentials("no region to call STS in".into())))
}

/// Pairs credentials with the instant the cache must stop serving them.
fn with_expiry(credentials: Credentials) -> (Credentials, Instant) {
    let lifetime = match credentials.expiry() {
        Some(expiry) => {
            let left = expiry.duration_since(SystemTime::now()).unwrap_or_default();
            // Short-lived credentials are used for half their life at most.
            left.saturating_sub(REFRESH_BEFORE_EXPIRY).max(left / 2)
        }
        None => DEFAULT_LIFETIME,
    };
    (credentials, Instant::now() + lifetime)
}
