//! The composition root: the provider's settings (from its flags, defaults included) and
//! the object graph built from them (AWS clients, shared store and value cache, Kubernetes
//! lookups, token verifier, credentials, regions, mounter), in one place used by the binary,
//! the integration tests and the benchmark.

use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;

use crate::aws::shared::{CacheSettings, SharedStore, SharingStats};
use crate::aws::{self, AwsSettings, AwsStore, load_sdk_config, sts_config};
use crate::cli::ServeArgs;
use crate::identity::region::Regions;
use crate::identity::{CredentialSource, FixedCredentials, PodCredentials, PodIdentityAgent, TokenVerifier};
use crate::kube::{KubeLookup, KubeSource};
use crate::metrics::Metrics;
use crate::mount::{MountSettings, Mounter};

/// Whose AWS identity mounts use.
#[derive(Clone)]
pub enum IdentityMode {
    /// Each pod's own (IRSA or EKS Pod Identity): what the provider does.
    Pods {
        agent_ipv4: String,
        agent_ipv6: String,
        agent_timeout: Duration,
        /// Replicas whose tokens verify share their service account's IRSA identity.
        share_irsa: bool,
    },
    /// Fixed credentials whatever the pod: single-tenant setups and tests only.
    Fixed(SharedCredentialsProvider),
}

/// Everything the object graph is built from.
#[derive(Clone)]
pub struct Settings {
    pub aws: AwsSettings,
    pub mount: MountSettings,
    pub cache: CacheSettings,
    /// AWS requests in flight at once across all mounts.
    pub max_aws_requests: usize,
    pub kube: KubeSource,
    pub kube_qps: u32,
    pub kube_burst: u32,
    pub identity: IdentityMode,
}

impl Settings {
    /// What the flags ask for, with the provider's own `AWS_REGION` (from its environment)
    /// as the mounts' default region.
    pub fn from_args(args: &ServeArgs, aws_region: Option<String>) -> Self {
        Self {
            aws: AwsSettings {
                endpoint_url: None,
                app_version: Some(args.eks_addon_version.clone()).filter(|v| !v.is_empty()),
                attempt_timeout: aws::ATTEMPT_TIMEOUT.min(args.aws_timeout),
                call_timeout: args.aws_timeout,
                connect_timeout: aws::CONNECT_TIMEOUT,
            },
            mount: MountSettings {
                driver_writes_secrets: args.driver_writes_secrets,
                default_region: aws_region.filter(|r| !r.trim().is_empty()),
                max_objects: args.max_objects,
                max_contents_bytes: usize::try_from(args.max_mount_bytes).unwrap_or(usize::MAX),
                timeout: args.mount_timeout,
                max_concurrent: args.max_concurrent_mounts,
            },
            cache: CacheSettings::with_ttl(args.cache_ttl),
            max_aws_requests: args.max_aws_requests,
            kube: KubeSource::Infer,
            kube_qps: args.qps,
            kube_burst: args.burst,
            identity: IdentityMode::Pods {
                agent_ipv4: args.pod_identity_agent_ipv4_endpoint.clone(),
                agent_ipv6: args.pod_identity_agent_ipv6_endpoint.clone(),
                agent_timeout: args
                    .pod_identity_http_timeout
                    .and_then(|t| t.0)
                    .unwrap_or(crate::identity::pod_identity::DEFAULT_TIMEOUT),
                share_irsa: args.share_irsa_identity,
            },
        }
    }
}

impl Default for Settings {
    /// The flags' defaults (the binary run without arguments), without `AWS_REGION`: every
    /// default is written once, in the flags' definitions.
    fn default() -> Self {
        Self::from_args(&ServeArgs::defaults(), None)
    }
}

/// The built object graph: what the server serves and what operators and tests observe.
pub struct Built {
    pub mounter: Arc<Mounter>,
    pub metrics: Arc<Metrics>,
    /// How many objects were fetched, joined in flight or served from the cache.
    pub sharing: Arc<SharingStats>,
}

/// Builds the object graph. Fails only on unusable settings (an agent URL that is not
/// `http://`); nothing here needs AWS or the API server to be reachable.
pub async fn build(settings: Settings) -> Result<Built, String> {
    let sdk = load_sdk_config(&settings.aws).await;
    let metrics = Arc::new(Metrics::new());
    let aws = AwsStore::new(sdk.clone(), settings.max_aws_requests, metrics.clone());
    let store = SharedStore::new(Arc::new(aws), settings.cache).with_metrics(metrics.clone());
    let sharing = store.stats.clone();
    // Never waited for: start-up does not need a reachable API server.
    let cluster =
        Arc::new(KubeLookup::new(settings.kube, settings.kube_qps, settings.kube_burst, metrics.clone()));
    let credentials: Arc<dyn CredentialSource> = match settings.identity {
        IdentityMode::Pods { agent_ipv4, agent_ipv6, agent_timeout, share_irsa } => {
            let agent = PodIdentityAgent::new(&agent_ipv4, &agent_ipv6, agent_timeout)?;
            let issuer =
                share_irsa.then(|| cluster.clone() as Arc<dyn crate::identity::verify::IssuerSource>);
            let verifier = Arc::new(TokenVerifier::new(issuer));
            // Ready before the first pod asks: the client's TLS set-up and the issuer keys are
            // then not paid by a booting node's first mounts, which never wait long for them
            // anyway. A failure is retried (and reported) by the first mount that needs it.
            verifier.prefetch();
            tokio::spawn({
                let cluster = cluster.clone();
                async move { cluster.prepare().await }
            });
            Arc::new(PodCredentials::new(sts_config(&sdk), cluster.clone(), agent, verifier, metrics.clone()))
        }
        IdentityMode::Fixed(credentials) => Arc::new(FixedCredentials(credentials)),
    };
    let regions = Regions::new(settings.mount.default_region.clone(), Some(cluster));
    let mounter = Arc::new(Mounter::new(settings.mount, regions, credentials, Arc::new(store)));
    Ok(Built { mounter, metrics, sharing })
}
