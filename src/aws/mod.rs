//! AWS Secrets Manager and Parameter Store: fetching the objects of a mount concurrently,
//! with every error classified for failover and for the status the driver sees.

mod error;
pub mod failover;
#[cfg(test)]
pub(crate) mod fake;
pub mod fetch;
mod http;
mod listing;
mod parameterstore;
mod secretsmanager;
pub mod shared;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use futures::future::BoxFuture;
use tokio::sync::Semaphore;

pub use error::{Classified, ErrorClass, FailureKind, FetchError, classify};

use crate::class::{Collection, ObjectType};
pub use crate::fetched::{Entries, FetchedSecret};
use crate::metrics::Metrics;

/// One object version to fetch; also the key under which identical fetches are shared.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretRef {
    pub object_type: ObjectType,
    /// Name or ARN.
    pub name: String,
    /// Secrets Manager VersionId or Parameter Store version number.
    pub version: Option<String>,
    /// Secrets Manager VersionStage or Parameter Store label.
    pub version_label: Option<String>,
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.object_type {
            ObjectType::SecretsManager => "secret",
            ObjectType::SsmParameter => "parameter",
        };
        write!(f, "{kind} {}", crate::echo::quoted(&self.name))?;
        if let Some(version) = &self.version {
            write!(f, " version {version:?}")?;
        }
        if let Some(label) = &self.version_label {
            write!(f, " label {label:?}")?;
        }
        Ok(())
    }
}

/// The outcome of fetching a set of objects: one result per requested ref.
pub type FetchResults = HashMap<SecretRef, Result<FetchedSecret, FetchError>>;

/// Where and as whom to fetch.
#[derive(Clone, Debug)]
pub struct FetchTarget {
    pub region: String,
    pub credentials: SharedCredentialsProvider,
    /// Names the identity behind `credentials`: fetches are shared (and values cached) only
    /// between targets with the same identity.
    pub identity: Arc<str>,
}

/// A collection's entries on their way.
pub type Listing<'a> = BoxFuture<'a, Result<Entries, FetchError>>;

/// A source of secrets: the real AWS, or a fake in tests.
pub trait SecretStore: Send + Sync {
    /// Fetches every ref (deduplicated by the caller) in one region, concurrently.
    fn fetch<'a>(&'a self, target: &'a FetchTarget, refs: &'a [SecretRef]) -> BoxFuture<'a, FetchResults>;

    /// Fetches every entry of a collection (at most `max`), sorted by name.
    fn list<'a>(&'a self, target: &'a FetchTarget, collection: &'a Collection, max: usize) -> Listing<'a>;
}

/// How the provider talks to AWS.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// Overrides every service endpoint (otherwise `AWS_ENDPOINT_URL` and the SDK decide).
    pub endpoint_url: Option<String>,
    /// Appended to the user agent (`--eks-addon-version`).
    pub app_version: Option<String>,
    /// Limit for one HTTP attempt; the SDK retries throttling and 5xx within `call_timeout`.
    pub attempt_timeout: Duration,
    /// Limit for one API call including retries.
    pub call_timeout: Duration,
    pub connect_timeout: Duration,
}

/// Limit for one HTTP attempt (at most `--aws-timeout`): a stalled attempt is abandoned in
/// time for the SDK's retries.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Limit for opening a connection to AWS.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Loads the shared SDK configuration (one HTTP client for all SDK clients, timeouts,
/// retries, FIPS and endpoint settings from the environment). Pod credentials and regions
/// are set per call.
pub async fn load_sdk_config(settings: &AwsSettings) -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(settings.connect_timeout)
        .operation_attempt_timeout(settings.attempt_timeout)
        .operation_timeout(settings.call_timeout)
        .build();
    let version = settings.app_version.clone().unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());
    // Every client gets its region per mount; a fixed one here keeps the loader from asking
    // the EC2 metadata service for a region at start-up.
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .http_client(http::shared_client())
        .timeout_config(timeouts)
        // Every call has an attempt and an operation timeout and its bodies are small, so
        // the throughput monitor on every request and response body (timers re-armed at
        // each poll) only costs CPU per call.
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        // The driver retries failed mounts itself: keep the SDK's backoff short so a mount
        // reports the real cause (a 5xx, throttling) well within its deadline.
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(2)),
        );
    if let Ok(app_name) = aws_config::AppName::new(format!("csi-provider-aws-{version}")) {
        loader = loader.app_name(app_name);
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    http::warm_tls();
    loader.load().await
}

/// The configuration for STS AssumeRoleWithWebIdentity: the shared one without credentials,
/// since the call is authenticated by the pod's token, not signed.
pub fn sts_config(sdk: &SdkConfig) -> SdkConfig {
    let mut builder = sdk.to_builder();
    builder.set_credentials_provider(None);
    builder.build()
}

/// The real AWS: Secrets Manager GetSecretValue and SSM GetParameters.
#[derive(Clone)]
pub struct AwsStore {
    sdk: SdkConfig,
    /// Caps requests in flight so a node-wide mount storm stays within AWS quotas.
    limiter: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

// SDK clients are built per call, not cached: with the one shared HTTPS client
// ([`http`]) building one costs no I/O and no TLS set-up, and a cache keyed by the
// credentials measured no faster at node boot or rotation (BENCHMARKS.md).
impl AwsStore {
    pub fn new(sdk: SdkConfig, max_concurrent_requests: usize, metrics: Arc<Metrics>) -> Self {
        Self { sdk, limiter: Arc::new(Semaphore::new(max_concurrent_requests.max(1))), metrics }
    }

    /// A Secrets Manager client for one region and identity.
    fn secretsmanager_client(&self, target: &FetchTarget) -> aws_sdk_secretsmanager::Client {
        let config = aws_sdk_secretsmanager::config::Builder::from(&self.sdk)
            .region(aws_config::Region::new(target.region.clone()))
            .credentials_provider(target.credentials.clone())
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }

    /// A Parameter Store client for one region and identity.
    fn ssm_client(&self, target: &FetchTarget) -> aws_sdk_ssm::Client {
        let config = aws_sdk_ssm::config::Builder::from(&self.sdk)
            .region(aws_config::Region::new(target.region.clone()))
            .credentials_provider(target.credentials.clone())
            .build();
        aws_sdk_ssm::Client::from_conf(config)
    }
}

impl SecretStore for AwsStore {
    fn fetch<'a>(&'a self, target: &'a FetchTarget, refs: &'a [SecretRef]) -> BoxFuture<'a, FetchResults> {
        Box::pin(async move {
            let (secrets, parameters): (Vec<&SecretRef>, Vec<&SecretRef>) =
                refs.iter().partition(|r| r.object_type == ObjectType::SecretsManager);
            let (mut results, more) = futures::join!(
                secretsmanager::fetch_all(self, target, &secrets),
                parameterstore::fetch_all(self, target, &parameters),
            );
            results.extend(more);
            results
        })
    }

    fn list<'a>(&'a self, target: &'a FetchTarget, collection: &'a Collection, max: usize) -> Listing<'a> {
        Box::pin(listing::list(self, target, collection, max))
    }
}
