//! One Mount, start to end, in a straight line: the request's target -> the parsed class
//! -> its region -> the pod's credentials -> every object fetched at once -> the files ->
//! for the driver, or written atomically. Each step is one call into the stage that owns it
//! (the class cache with `class`, the region with `identity`, the fan-out with `aws`);
//! failures are [`MountError`]s, and the server turns the outcome into the driver's response.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::aws::fetch::fetch_class;
use crate::aws::{FetchTarget, SecretStore};
use crate::class::{ClassCache, Limits, SecretProviderClass};
use crate::identity::region::Regions;
use crate::identity::{CredentialSource, Identity};
use crate::render::{self, Rendered};
use crate::request::{self, MountInput, Pod};
use crate::write;

pub use crate::error::MountError;

/// Mount behaviour fixed at start-up.
#[derive(Debug, Clone)]
pub struct MountSettings {
    /// Return files to the driver instead of writing them.
    pub driver_writes_secrets: bool,
    /// The provider's `AWS_REGION`, used when the class names no region.
    pub default_region: Option<String>,
    /// Cap on the total bytes of a mount's file contents (`--max-mount-bytes`; the driver
    /// receives at most 4 MiB of encoded response, see `server::response`).
    pub max_contents_bytes: usize,
    /// Cap on objects per SecretProviderClass.
    pub max_objects: usize,
    /// A mount that takes longer fails (waiting for a slot included).
    pub timeout: Duration,
    /// Mounts served at once; more wait (within `timeout`).
    pub max_concurrent: usize,
}

/// What a successful mount produced: the rendered files (each with its object version),
/// whether the provider already wrote them, and counts for the log line.
#[derive(Debug)]
pub struct MountOutcome {
    pub rendered: Rendered,
    /// The files are under the target path; only their versions go back to the driver.
    pub written: bool,
    pub objects: usize,
}

/// Performs mounts; shared by all connections.
pub struct Mounter {
    settings: MountSettings,
    slots: Semaphore,
    classes: ClassCache,
    regions: Regions,
    credentials: Arc<dyn CredentialSource>,
    store: Arc<dyn SecretStore>,
}

impl Mounter {
    pub fn new(
        settings: MountSettings,
        regions: Regions,
        credentials: Arc<dyn CredentialSource>,
        store: Arc<dyn SecretStore>,
    ) -> Self {
        let slots = Semaphore::new(settings.max_concurrent.max(1));
        Self { settings, slots, classes: ClassCache::default(), regions, credentials, store }
    }

    /// Serves one Mount within `--mount-timeout` and the caller's own deadline (`grpc-timeout`,
    /// kubelet's as the driver passes it), whichever is earlier, at most
    /// `--max-concurrent-mounts` at once. At the deadline the mount's work is dropped: queued
    /// AWS calls never start.
    pub async fn mount(
        &self,
        input: MountInput,
        caller: Option<Duration>,
    ) -> Result<MountOutcome, MountError> {
        let ours = self.settings.timeout;
        let (timeout, expired) = match caller {
            Some(caller) if caller < ours => (caller, MountError::CallerDeadline(caller)),
            _ => (ours, MountError::Deadline(ours)),
        };
        let deadline = Instant::now() + timeout;
        match tokio::time::timeout(timeout, async {
            let _slot =
                self.slots.acquire().await.map_err(|_| MountError::Internal("waiting for a mount slot"))?;
            self.mount_now(input, deadline).await
        })
        .await
        {
            Ok(result) => result,
            Err(_) => Err(expired),
        }
    }

    async fn mount_now(&self, mut input: MountInput, deadline: Instant) -> Result<MountOutcome, MountError> {
        // The driver passes the pod's volume directory; anything else would be written
        // relative to the provider's own working directory.
        if !self.settings.driver_writes_secrets {
            request::check_target_path(&input.target_path)?;
        }
        let limits =
            Limits { max_objects: self.settings.max_objects, deadline: Some(deadline), ..Limits::default() };
        let parameters = std::mem::take(&mut input.parameters);
        let class = self.classes.parse(parameters, input.default_mode, limits).await?;
        self.classes.warn_once(&input.pod.namespace, &input.class_name, &class.warnings);
        let rendered = if class.objects.is_empty() {
            Rendered::default()
        } else {
            self.fetch_and_render(&class, &input.pod).await?
        };
        // The limit protects the driver's 4 MiB receive limit: it applies only when the files
        // travel in the response.
        let size = rendered.size();
        if self.settings.driver_writes_secrets && size > self.settings.max_contents_bytes {
            return Err(MountError::TooLarge { size, limit: self.settings.max_contents_bytes });
        }
        self.finish(input, class.objects.len(), rendered).await
    }

    /// The region, the pod's identity (and the class's role chain), every object, the files.
    async fn fetch_and_render(&self, class: &SecretProviderClass, pod: &Pod) -> Result<Rendered, MountError> {
        let region = self.regions.resolve(class, pod).await?;
        class.check_regions(&region)?;
        let regions: Vec<String> =
            std::iter::once(region.clone()).chain(class.parameters.failover_region.clone()).collect();
        let started = Instant::now();
        let mut identity = self.credentials.credentials(pod, class.parameters.auth, &regions).await?;
        if let Some(role) = &class.parameters.assume_role {
            identity = self.credentials.assume_role(pod, &identity, role, &regions).await?;
        }
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "credentials ready");
        let primary = target(&region, &identity);
        let failover = class.parameters.failover_region.as_ref().map(|region| target(region, &identity));
        let fetched = fetch_class(self.store.as_ref(), &primary, failover.as_ref(), class)
            .await
            .map_err(|failures| MountError::Fetch { failures, total: class.objects.len() })?;
        Ok(render::render(class.parameters.path_translation, &fetched)?)
    }

    /// Writes the files in provider-writes mode (all or nothing); else leaves them to the driver.
    async fn finish(
        &self,
        input: MountInput,
        objects: usize,
        rendered: Rendered,
    ) -> Result<MountOutcome, MountError> {
        if self.settings.driver_writes_secrets {
            return Ok(MountOutcome { rendered, written: false, objects });
        }
        let target = input.target_path;
        let rendered = tokio::task::spawn_blocking(move || {
            write::write_all(&target, &rendered.files).map(|()| rendered)
        })
        .await
        .map_err(|_| MountError::Internal("writing the files"))??;
        Ok(MountOutcome { rendered, written: true, objects })
    }
}

/// Where and as whom to fetch in `region`.
fn target(region: &str, identity: &Identity) -> FetchTarget {
    FetchTarget {
        region: region.to_owned(),
        credentials: identity.credentials.clone(),
        identity: identity.key.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;

    use super::*;
    use crate::aws::fake::FakeStore;
    use crate::class::{AuthMethod, Parameters};
    use crate::identity::{Identity, IdentityFuture};
    use crate::server::response::{MAX_RESPONSE_BYTES, NO_OBJECTS_ID, response};
    use crate::server::status;
    use tonic::{Code, Status};

    /// Counts credential requests.
    #[derive(Default)]
    struct CountingCredentials(AtomicUsize);

    impl CredentialSource for CountingCredentials {
        fn credentials<'a>(&'a self, _: &'a Pod, _: AuthMethod, _: &'a [String]) -> IdentityFuture<'a> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let credentials = SharedCredentialsProvider::new(Credentials::for_tests());
            Box::pin(async move { Ok(Identity { credentials, key: "pod".into() }) })
        }
    }

    fn setup(
        settings: MountSettings,
        delay: Duration,
    ) -> (Mounter, Arc<FakeStore>, Arc<CountingCredentials>) {
        let store = Arc::new(FakeStore::echo().with_delay(delay));
        let credentials = Arc::new(CountingCredentials::default());
        let regions = Regions::new(None, None);
        (Mounter::new(settings, regions, credentials.clone(), store.clone()), store, credentials)
    }

    fn input(objects: &str) -> MountInput {
        MountInput {
            parameters: Parameters {
                objects: Some(objects.into()),
                region: Some("us-east-1".into()),
                ..Parameters::default()
            },
            pod: Pod::default(),
            class_name: "c".into(),
            default_mode: 0o644,
            target_path: "/t".into(),
        }
    }

    fn driver_writes() -> MountSettings {
        MountSettings { driver_writes_secrets: true, ..crate::compose::Settings::default().mount }
    }

    #[tokio::test]
    async fn no_objects_needs_no_credentials_and_returns_a_placeholder_version() {
        let (mounter, store, credentials) = setup(driver_writes(), Duration::ZERO);
        let response = response(mounter.mount(input(""), None).await.unwrap(), MAX_RESPONSE_BYTES).unwrap();
        assert_eq!(response.object_version.len(), 1);
        assert_eq!(response.object_version[0].id, NO_OBJECTS_ID);
        assert_eq!(credentials.0.load(Ordering::SeqCst), 0);
        assert_eq!(store.asked(), 0);
    }

    #[tokio::test]
    async fn identical_objects_are_fetched_once_but_written_twice() {
        let (mounter, store, _) = setup(driver_writes(), Duration::ZERO);
        let objects = "- {objectName: a, objectType: secretsmanager, objectAlias: one}\n\
                       - {objectName: a, objectType: secretsmanager, objectAlias: two}";
        let response =
            response(mounter.mount(input(objects), None).await.unwrap(), MAX_RESPONSE_BYTES).unwrap();
        let files: Vec<&str> = response.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(files, vec!["one", "two"]);
        assert_eq!(store.asked(), 1);
    }

    #[tokio::test]
    async fn limits_and_deadline() {
        let settings = MountSettings { max_contents_bytes: 3, ..driver_writes() };
        let (mounter, _, _) = setup(settings, Duration::ZERO);
        let err = mounter
            .mount(input("- {objectName: long-name, objectType: secretsmanager}"), None)
            .await
            .unwrap_err();
        assert!(matches!(err, MountError::TooLarge { size: 9, limit: 3 }), "{err}");
        assert_eq!(status::code(&err), Code::ResourceExhausted);

        let settings = MountSettings { timeout: Duration::from_millis(50), ..driver_writes() };
        let (mounter, _, _) = setup(settings, Duration::from_secs(5));
        let err =
            mounter.mount(input("- {objectName: a, objectType: secretsmanager}"), None).await.unwrap_err();
        assert_eq!(status::code(&err), Code::DeadlineExceeded, "{err}");
    }

    #[tokio::test]
    async fn every_error_maps_to_a_code_and_a_bounded_label() {
        let (mounter, _, _) = setup(driver_writes(), Duration::ZERO);
        let err = mounter.mount(input("- {objectName: a}"), None).await.unwrap_err();
        assert_eq!((status::code(&err), status::label(&err)), (Code::InvalidArgument, "invalid_class"));
        let mut no_region = input("- {objectName: a, objectType: secretsmanager}");
        no_region.parameters.region = None;
        let err = mounter.mount(no_region, None).await.unwrap_err();
        assert_eq!((status::code(&err), status::label(&err)), (Code::InvalidArgument, "no_region"));
        let status: Status = err.into();
        assert!(status.message().contains("no AWS region"));
    }
}
