//! What the integration tests share besides the test kit (crates/test-kit: moto, the
//! stand-in Kubernetes API, fake AWS, the fault proxy, tokens, the binary harness, the chart
//! pod, re-exported here): the provider serving on a real Unix socket in this process, built
//! from [`settings`], and the driver's requests as tests write them.

pub use test_kit::*;

pub use csi_provider_aws::aws::AwsSettings;
pub use csi_provider_aws::aws::shared::CacheSettings;
pub use csi_provider_aws::compose::{IdentityMode, Settings};
pub use csi_provider_aws::kube::KubeSource;
pub use csi_provider_aws::mount::MountSettings;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use csi_provider_aws::aws::shared::SharingStats;
use csi_provider_aws::compose;
use csi_provider_aws::metrics::Metrics;
use csi_provider_aws::proto::csi_driver_provider_client::CsiDriverProviderClient;
use csi_provider_aws::proto::{MountRequest, MountResponse};
use csi_provider_aws::request::{DriverRequest, Pod};
use csi_provider_aws::secret::SecretString;
use csi_provider_aws::server;
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

/// The settings of a provider under test: the flags' defaults, with AWS at moto, the
/// driver-writes mode, the Pod Identity agent at refused ports (500 ms per attempt), a
/// Kubernetes rate limit no test waits on, and the stand-in API server that
/// [`Provider::start`] starts (`KubeSource::Infer` stands for it). Tests change what they
/// test with struct-update syntax.
pub fn settings() -> Settings {
    let mut settings = Settings::default();
    settings.aws.endpoint_url = Some(moto_url().to_owned());
    settings.mount.driver_writes_secrets = true;
    settings.kube_qps = 100;
    settings.kube_burst = 100;
    settings.identity = pod_identities("http://127.0.0.1:9/v1/credentials", "http://[::1]:9/v1/credentials");
    settings
}

/// [`settings`] with AWS at `url` (a fault proxy, a fake).
pub fn settings_at(url: &str) -> Settings {
    let mut settings = settings();
    settings.aws.endpoint_url = Some(url.to_owned());
    settings
}

/// Each pod's own identity, with the Pod Identity agent at these endpoints (500 ms per
/// attempt) and verified IRSA replicas sharing.
pub fn pod_identities(agent_ipv4: &str, agent_ipv6: &str) -> IdentityMode {
    IdentityMode::Pods {
        agent_ipv4: agent_ipv4.to_owned(),
        agent_ipv6: agent_ipv6.to_owned(),
        agent_timeout: Duration::from_millis(500),
        share_irsa: true,
    }
}

/// The provider serving on a Unix socket in a temp directory, in this process.
pub struct Provider {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub metrics: Arc<Metrics>,
    /// The stand-in API server, unless the settings named a kubeconfig.
    pub kube: Option<FakeKube>,
    pub sharing: Arc<SharingStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Provider {
    /// Starts with `settings`, against a new stand-in API server with the default objects
    /// unless `settings.kube` names a kubeconfig.
    pub async fn start(settings: Settings) -> Self {
        let kube = match settings.kube {
            KubeSource::Infer => Some(FakeKube::start().await),
            KubeSource::Kubeconfig(_) => None,
        };
        Self::start_with(settings, kube).await
    }

    /// Starts against `kube` (objects and discovery already in place, as a cluster has them
    /// before the provider starts).
    pub async fn start_with(mut settings: Settings, kube: Option<FakeKube>) -> Self {
        if let Some(kube) = &kube {
            settings.kube = KubeSource::Kubeconfig(kube.kubeconfig.clone());
        }
        let built = compose::build(settings).await.unwrap();
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

/// The default pod: shop/web-0 of service account web (the stand-in API server's), with
/// opaque tokens for both audiences.
pub fn web_pod() -> Pod {
    Pod {
        namespace: "shop".into(),
        name: "web-0".into(),
        uid: "0b1e6a9c-9d0d-4d53-a0f6-b3b5a6b0b001".into(),
        service_account: "web".into(),
        tokens: Some(SecretString::new(tokens_json("web-0"))),
    }
}

/// A MountRequest shaped like the driver's for [`web_pod`]: class `web-secrets` with
/// `parameters`, into `target`.
pub fn mount_request(parameters: &[(&str, &str)], target: &Path) -> MountRequest {
    DriverRequest::new("web-secrets", parameters.iter().copied(), web_pod())
        .target(target.display().to_string())
        .build()
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
