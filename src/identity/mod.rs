//! The AWS identity a mount fetches with: the pod's own, never the provider's. IRSA (the
//! service account's role, assumed with the pod's token) or EKS Pod Identity (the node's
//! agent, given the pod's token). Credentials are cached until shortly before they expire,
//! keyed by everything they derive from.
//!
//! IRSA credentials depend only on the role, the session name (namespace and service
//! account) and the token's subject, so every replica of a service account may use the same
//! ones: a pod whose token the provider verified itself ([`verify`]) shares its service
//! account's identity class (credentials, in-flight fetches, cached values). A token that
//! cannot be verified is exchanged on its own and its credentials serve that token only.
//! Pod Identity credentials carry session tags naming the pod, so they stay per pod.

pub mod irsa;
pub mod pod_identity;
pub mod region;
pub mod tokens;
pub mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::aws::ErrorClass;
use crate::class::{AssumeRole, AuthMethod};
use crate::kube::{ClusterError, KubeLookup};
use crate::metrics::Metrics;
use crate::request::Pod;
use crate::secret::SecretString;
pub use pod_identity::PodIdentityAgent;
pub use verify::TokenVerifier;

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
}

/// Credentials and a key naming everything they derive from.
#[derive(Debug, Clone)]
pub struct Identity {
    pub credentials: SharedCredentialsProvider,
    /// Equal keys mean interchangeable credentials; it reveals no token.
    pub key: Arc<str>,
}

/// Credentials on their way.
pub type IdentityFuture<'a> = BoxFuture<'a, Result<Identity, IdentityError>>;

/// Produces the credentials a pod's mount uses.
pub trait CredentialSource: Send + Sync {
    /// Credentials for `pod`; `regions` are the mount's primary then failover region (STS is
    /// asked in the first that answers).
    fn credentials<'a>(&'a self, pod: &'a Pod, auth: AuthMethod, regions: &'a [String])
    -> IdentityFuture<'a>;

    /// Credentials of `role`, assumed with `base` (the pod's own): role chaining.
    fn assume_role<'a>(
        &'a self,
        _pod: &'a Pod,
        _base: &'a Identity,
        role: &'a AssumeRole,
        _regions: &'a [String],
    ) -> IdentityFuture<'a> {
        Box::pin(async move {
            Err(IdentityError::NoCredentials(format!(
                "cannot assume {} with this credential source",
                role.role_arn
            )))
        })
    }
}

/// Fixed credentials (e.g. the SDK's default chain), whatever the pod. For tests and
/// single-tenant setups only; the provider binary uses [`PodCredentials`].
pub struct FixedCredentials(pub SharedCredentialsProvider);

impl CredentialSource for FixedCredentials {
    fn credentials<'a>(
        &'a self,
        _pod: &'a Pod,
        _auth: AuthMethod,
        _regions: &'a [String],
    ) -> IdentityFuture<'a> {
        let identity = Identity { credentials: self.0.clone(), key: "fixed".into() };
        Box::pin(async move { Ok(identity) })
    }
}

/// Whose credentials these are: everything a cached credential derives from. Tokens appear
/// only as SHA-256 digests.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CredentialKey {
    /// A service account's IRSA role, shared by every pod whose token verified.
    IrsaClass { namespace: String, service_account: String, role: String },
    /// A service account's IRSA role, for one token that could not be verified.
    IrsaToken { namespace: String, service_account: String, role: String, token: [u8; 32] },
    /// EKS Pod Identity: per token (the agent's session tags name the pod).
    PodIdentity { namespace: String, service_account: String, token: [u8; 32] },
    /// A role assumed with a base identity (role chaining): the base's class, role, external id.
    Chained { base: Arc<str>, role: String, external_id: Option<String> },
}

impl CredentialKey {
    /// A printable digest of the whole key: equal names mean interchangeable credentials.
    fn name(&self) -> Arc<str> {
        let mut hasher = Sha256::new();
        let mut part = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        };
        let (texts, last): (Vec<&str>, Option<Vec<u8>>) = match self {
            Self::IrsaClass { namespace, service_account, role } => {
                (vec!["irsa-class", namespace, service_account, role], None)
            }
            Self::IrsaToken { namespace, service_account, role, token } => {
                (vec!["irsa-token", namespace, service_account, role], Some(token.to_vec()))
            }
            Self::PodIdentity { namespace, service_account, token } => {
                (vec!["pod-identity", namespace, service_account], Some(token.to_vec()))
            }
            // None and Some("") are different external ids.
            Self::Chained { base, role, external_id } => {
                let external = external_id.as_ref().map_or_else(|| "none".into(), |id| format!("some:{id}"));
                (vec!["chained", base, role], Some(external.into_bytes()))
            }
        };
        for text in texts {
            part(text.as_bytes());
        }
        if let Some(last) = last {
            part(&last);
        }
        hasher.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>().into()
    }
}

/// Cached credentials, when they must stop being served, and the digest of the token (or
/// base identity) they were made from, which tells "cached" from "shared" in the metrics.
#[derive(Clone)]
struct Held {
    credentials: Credentials,
    expires: Instant,
    made_from: [u8; 32],
}

struct HeldExpiry;

impl moka::Expiry<CredentialKey, Held> for HeldExpiry {
    fn expire_after_create(&self, _key: &CredentialKey, held: &Held, created: Instant) -> Option<Duration> {
        Some(held.expires.saturating_duration_since(created))
    }
}

/// The pod's own identity: IRSA or EKS Pod Identity, cached.
pub struct PodCredentials {
    sts: SdkConfig,
    cluster: Arc<KubeLookup>,
    agent: PodIdentityAgent,
    verifier: Arc<TokenVerifier>,
    cache: moka::future::Cache<CredentialKey, Held>,
    metrics: Arc<Metrics>,
}

/// Credentials are used until this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// How long credentials without an expiry are reused.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(900);
const CACHED_IDENTITIES: u64 = 10_000;

impl PodCredentials {
    /// `sts` is the SDK configuration for STS (no credentials of its own: the call is
    /// unsigned). `verifier` decides which IRSA tokens may share their class's identity.
    pub fn new(
        sts: SdkConfig,
        cluster: Arc<KubeLookup>,
        agent: PodIdentityAgent,
        verifier: Arc<TokenVerifier>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let cache =
            moka::future::Cache::builder().max_capacity(CACHED_IDENTITIES).expire_after(HeldExpiry).build();
        Self { sts, cluster, agent, verifier, cache, metrics }
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
        let (namespace, service_account) = (pod.namespace.clone(), pod.service_account.clone());
        match auth {
            AuthMethod::Irsa => {
                let token = tokens::token_for(pod.tokens.as_ref(), tokens::IRSA_AUDIENCE)?;
                let token_digest = digest(&token);
                // The role lookup and the token check are independent: both at once, so a
                // booting node pays one Kubernetes round trip, not two.
                let started = Instant::now();
                let (role, verdict) = futures::join!(
                    self.cluster.role_arn(&namespace, &service_account),
                    self.verifier.verify(&token, tokens::IRSA_AUDIENCE, &namespace, &service_account),
                );
                let role = role?.ok_or_else(|| IdentityError::NoRole {
                    namespace: namespace.clone(),
                    service_account: service_account.clone(),
                })?;
                let outcome = verdict.map_or_else(verify::Unverified::label, |()| "verified");
                tracing::debug!(
                    outcome,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "role and token verification"
                );
                self.metrics.token_verification(outcome);
                let key = match verdict {
                    Ok(()) => CredentialKey::IrsaClass { namespace, service_account, role: role.clone() },
                    Err(_) => CredentialKey::IrsaToken {
                        namespace,
                        service_account,
                        role: role.clone(),
                        token: token_digest,
                    },
                };
                let session = irsa::session_name(&pod.namespace, &pod.service_account);
                self.held("irsa", key, token_digest, async {
                    across_regions(regions, &self.metrics, "AssumeRoleWithWebIdentity", |region| {
                        let (sts, role, token, session) = (&self.sts, &role, &token, &session);
                        async move { irsa::assume_role(sts, &region, role, token, session).await }
                    })
                    .await
                })
                .await
            }
            AuthMethod::PodIdentity(preference) => {
                let token = tokens::token_for(pod.tokens.as_ref(), tokens::POD_IDENTITY_AUDIENCE)?;
                let token_digest = digest(&token);
                let key = CredentialKey::PodIdentity { namespace, service_account, token: token_digest };
                let fetch = async { self.agent.credentials(&token, preference).await.map(with_expiry) };
                self.held("pod_identity", key, token_digest, fetch).await
            }
        }
    }

    /// The cached credentials for `key`, or those `fetch` makes (one fetch for concurrent
    /// callers; errors are not cached), wrapped for the SDK; records where they came from.
    async fn held<F>(
        &self,
        method: &'static str,
        key: CredentialKey,
        made_from: [u8; 32],
        fetch: F,
    ) -> Result<Identity, IdentityError>
    where
        F: std::future::Future<Output = Result<(Credentials, Instant), IdentityError>>,
    {
        let entry = self
            .cache
            .entry(key.clone())
            .or_try_insert_with(async {
                let (credentials, expires) = fetch.await?;
                Ok::<_, IdentityError>(Held { credentials, expires, made_from })
            })
            .await
            .map_err(|e: Arc<IdentityError>| (*e).clone());
        let source = match &entry {
            Err(_) => "error",
            Ok(entry) if entry.is_fresh() => "fetched",
            Ok(entry) if entry.value().made_from == made_from => "cached",
            Ok(_) => "shared",
        };
        self.metrics.credential(method, source);
        let credentials = SharedCredentialsProvider::new(entry?.into_value().credentials);
        Ok(Identity { credentials, key: key.name() })
    }
}

impl CredentialSource for PodCredentials {
    fn credentials<'a>(
        &'a self,
        pod: &'a Pod,
        auth: AuthMethod,
        regions: &'a [String],
    ) -> IdentityFuture<'a> {
        Box::pin(self.resolve(pod, auth, regions))
    }

    fn assume_role<'a>(
        &'a self,
        pod: &'a Pod,
        base: &'a Identity,
        role: &'a AssumeRole,
        regions: &'a [String],
    ) -> IdentityFuture<'a> {
        Box::pin(async move {
            let key = CredentialKey::Chained {
                base: base.key.clone(),
                role: role.role_arn.clone(),
                external_id: role.external_id.clone(),
            };
            let session = irsa::session_name(&pod.namespace, &pod.service_account);
            // The chain is made from the base identity: its key stands in for the token.
            let made_from: [u8; 32] = Sha256::digest(base.key.as_bytes()).into();
            self.held("assume_role", key, made_from, async {
                across_regions(regions, &self.metrics, "AssumeRole", |region| {
                    let (sts, base, role, session) = (&self.sts, base.credentials.clone(), role, &session);
                    async move {
                        let external_id = role.external_id.as_deref();
                        irsa::chain_role(sts, &region, base, &role.role_arn, external_id, session).await
                    }
                })
                .await
            })
            .await
        })
    }
}

fn digest(token: &SecretString) -> [u8; 32] {
    Sha256::digest(token.expose().as_bytes()).into()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_keys_separate_everything_credentials_derive_from() {
        let class = |ns: &str, sa: &str, role: &str| CredentialKey::IrsaClass {
            namespace: ns.into(),
            service_account: sa.into(),
            role: role.into(),
        };
        let token = |t: u8| CredentialKey::IrsaToken {
            namespace: "ns".into(),
            service_account: "sa".into(),
            role: "r".into(),
            token: [t; 32],
        };
        let keys = [
            class("ns", "sa", "r"),
            class("ns", "sa", "other"),
            class("other", "sa", "r"),
            class("ns", "other", "r"),
            // Field boundaries are part of the digest: "ns"+"sa" is not "n"+"ssa".
            class("n", "ssa", "r"),
            token(1),
            token(2),
            CredentialKey::PodIdentity {
                namespace: "ns".into(),
                service_account: "sa".into(),
                token: [1; 32],
            },
            CredentialKey::Chained { base: "b".into(), role: "r".into(), external_id: None },
            CredentialKey::Chained { base: "b".into(), role: "r".into(), external_id: Some(String::new()) },
            CredentialKey::Chained { base: "c".into(), role: "r".into(), external_id: None },
        ];
        let names: std::collections::HashSet<Arc<str>> = keys.iter().map(CredentialKey::name).collect();
        assert_eq!(names.len(), keys.len(), "every key names its own identity");
        assert_eq!(class("ns", "sa", "r").name(), class("ns", "sa", "r").name(), "and names are stable");
    }
}
