//! One Mount, start to end: request -> SecretProviderClass -> region -> credentials ->
//! fetch (all objects at once) -> render -> files for the driver, or written atomically.
//! Only the orchestration lives here: each stage is its own module, failures are
//! [`MountError`]s, and the server turns the outcome into the driver's response.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::aws::failover::{self, FetchFailure, FetchItem};
use crate::aws::{FetchTarget, SecretRef, SecretStore};
use crate::class::{CollectionObject, Limits, NamedObject, ParseKey, SecretObject, SecretProviderClass};
use crate::identity::CredentialSource;
use crate::kube::KubeLookup;
use crate::render::{self, Fetched, Rendered};
use crate::request::{self, MountInput, Pod};
use crate::write;

pub use crate::error::MountError;

/// Classes whose `objects` text is at most this long are parsed on the mount's own task
/// (20 objects are about 2 KiB).
const INLINE_PARSE_BYTES: usize = 8 * 1024;

/// Parsed classes by their text: replicas and rotation polls send the same class again and
/// again, and parsing 20 objects costs about as much CPU as a signed AWS call. Only valid
/// classes are kept (an error may depend on the mount's deadline), weighed by their text.
type Parsed = moka::future::Cache<(ParseKey, u32), Arc<SecretProviderClass>>;

/// Bytes of class text kept parsed (the parsed form takes a few times the text).
const PARSED_BYTES: u64 = 2 * 1024 * 1024;

/// Mount behaviour fixed at start-up.
#[derive(Debug, Clone)]
pub struct MountSettings {
    /// Return files to the driver instead of writing them.
    pub driver_writes_secrets: bool,
    /// The provider's `AWS_REGION`, used when the class names no region.
    pub default_region: Option<String>,
    /// Cap on the total bytes of a mount's files (the driver receives at most 4 MiB).
    pub max_response_bytes: usize,
    /// Cap on objects per SecretProviderClass.
    pub max_objects: usize,
    /// A mount that takes longer fails (waiting for a slot included).
    pub timeout: Duration,
    /// Mounts served at once; more wait (within `timeout`).
    pub max_concurrent: usize,
}

impl Default for MountSettings {
    fn default() -> Self {
        Self {
            driver_writes_secrets: false,
            default_region: None,
            max_response_bytes: 3 * 1024 * 1024 + 512 * 1024,
            max_objects: 500,
            timeout: Duration::from_secs(30),
            max_concurrent: 128,
        }
    }
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
    store: Arc<dyn SecretStore>,
    credentials: Arc<dyn CredentialSource>,
    cluster: Option<Arc<KubeLookup>>,
    warned: Warned,
    parsed: Parsed,
}

impl Mounter {
    /// `cluster` finds the region of the pod's node when neither the class nor the provider's
    /// environment names one.
    pub fn new(
        settings: MountSettings,
        store: Arc<dyn SecretStore>,
        credentials: Arc<dyn CredentialSource>,
        cluster: Option<Arc<KubeLookup>>,
    ) -> Self {
        let slots = Semaphore::new(settings.max_concurrent.max(1));
        let parsed = moka::future::Cache::builder()
            .max_capacity(PARSED_BYTES)
            .weigher(|(key, _): &(ParseKey, u32), _| {
                u32::try_from(key.text_bytes()).unwrap_or(u32::MAX).max(1)
            })
            .time_to_idle(Duration::from_secs(600))
            .build();
        Self { settings, slots, store, credentials, cluster, warned: Warned::default(), parsed }
    }

    /// The mount's region: the class's `region`, else the provider's `AWS_REGION`, else the
    /// `topology.kubernetes.io/region` label of the pod's node.
    async fn region(&self, class: &SecretProviderClass, pod: &Pod) -> Result<String, MountError> {
        if let Some(region) = class.region.clone().or_else(|| self.settings.default_region.clone()) {
            return Ok(region);
        }
        let no_region = || MountError::NoRegion { namespace: pod.namespace.clone(), pod: pod.name.clone() };
        let Some(cluster) = &self.cluster else { return Err(no_region()) };
        if pod.namespace.is_empty() || pod.name.is_empty() {
            return Err(no_region());
        }
        let region = cluster.node_region(&pod.namespace, &pod.name).await.map_err(MountError::Region)?;
        let region = region.ok_or_else(no_region)?;
        crate::class::check_region_name(&region).map_err(|problem| MountError::NodeRegion {
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            problem,
        })?;
        Ok(region)
    }

    /// Serves one Mount within `--mount-timeout`, at most `--max-concurrent-mounts` at once.
    pub async fn mount(&self, input: MountInput) -> Result<MountOutcome, MountError> {
        let timeout = self.settings.timeout;
        let deadline = Instant::now() + timeout;
        tokio::time::timeout(timeout, async {
            let _slot = self.slots.acquire().await.map_err(|_| MountError::Deadline(timeout))?;
            self.mount_now(input, deadline).await
        })
        .await
        .unwrap_or(Err(MountError::Deadline(timeout)))
    }

    async fn mount_now(&self, mut input: MountInput, deadline: Instant) -> Result<MountOutcome, MountError> {
        // The driver passes the pod's volume directory; anything else would be written
        // relative to the provider's own working directory.
        if !self.settings.driver_writes_secrets {
            request::check_target_path(&input.target_path)?;
        }
        let class = self.parse_class(&mut input, deadline).await?;
        self.warned.log_new(&input, &class.warnings);
        let rendered = if class.objects.is_empty() {
            Rendered::default()
        } else {
            self.fetch_and_render(&class, &input.pod).await?
        };
        // The limit protects the driver's 4 MiB receive limit: it applies only when the files
        // travel in the response.
        let size = rendered.size();
        if self.settings.driver_writes_secrets && size > self.settings.max_response_bytes {
            return Err(MountError::TooLarge { size, limit: self.settings.max_response_bytes });
        }
        self.finish(input, class.objects.len(), rendered).await
    }

    /// The parsed class, from [`Parsed`] when the same text was parsed before. Parsing runs
    /// once for mounts that ask at the same time: a small class in place (tens of
    /// microseconds; a node-wide storm would otherwise wait on a blocking-thread hand-off
    /// each), a large one on a blocking thread, so it never holds up the runtime's async
    /// threads; its limits stop it at the mount's deadline.
    async fn parse_class(
        &self,
        input: &mut MountInput,
        deadline: Instant,
    ) -> Result<Arc<SecretProviderClass>, MountError> {
        let parameters = std::mem::take(&mut input.parameters);
        let default_mode = input.default_mode;
        let key = (parameters.parse_key(), default_mode);
        let limits =
            Limits { max_objects: self.settings.max_objects, deadline: Some(deadline), ..Limits::default() };
        let small = parameters.objects.as_ref().is_none_or(|o| o.len() <= INLINE_PARSE_BYTES);
        // `None`: the parse did not finish (a panic on the blocking thread).
        let parse = move || SecretProviderClass::parse_with(&parameters, default_mode, &limits).map_err(Some);
        let parsed = self.parsed.try_get_with(key, async move {
            if small {
                parse().map(Arc::new)
            } else {
                tokio::task::spawn_blocking(parse).await.unwrap_or(Err(None)).map(Arc::new)
            }
        });
        parsed.await.map_err(|e| match e.as_ref() {
            None => MountError::Internal("reading the SecretProviderClass"),
            Some(e) => match e.too_many_objects() {
                Some(too_many) => MountError::TooManyObjects(too_many),
                None => MountError::Class(e.clone()),
            },
        })
    }

    /// Fetches every object (singles in one batch, collections listed) and renders them;
    /// each object's own outcome travels with it, so nothing is matched up by position.
    async fn fetch_and_render(&self, class: &SecretProviderClass, pod: &Pod) -> Result<Rendered, MountError> {
        let region = self.region(class, pod).await?;
        class.check_regions(&region)?;
        let regions: Vec<String> =
            std::iter::once(region.clone()).chain(class.failover_region.clone()).collect();
        let started = Instant::now();
        let mut identity = self.credentials.credentials(pod, class.auth, &regions).await?;
        if let Some(role) = &class.assume_role {
            identity = self.credentials.assume_role(pod, &identity, role, &regions).await?;
        }
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "credentials ready");
        let target = |region: &String| FetchTarget {
            region: region.clone(),
            credentials: identity.credentials.clone(),
            identity: identity.key.clone(),
        };
        let primary = target(&region);
        let failover_target = class.failover_region.as_ref().map(target);
        let (store, failover) = (self.store.as_ref(), failover_target.as_ref());

        let requests: Vec<Request<'_>> = class
            .objects
            .iter()
            .map(|object| match object {
                SecretObject::Named(object) => Request::One(object, fetch_item(object, class)),
                SecretObject::Collection(object) => Request::Many(object),
            })
            .collect();
        // Identical objects share one fetch: every single object is in one batch, awaited
        // by each of them.
        let items: Vec<FetchItem> = requests
            .iter()
            .filter_map(|r| match r {
                Request::One(_, item) => Some(item.clone()),
                Request::Many(_) => None,
            })
            .collect();
        let batch = failover::fetch(store, &primary, failover, &items).map(Arc::new).shared();
        let outcomes = futures::future::join_all(requests.into_iter().map(|request| {
            let (batch, primary) = (batch.clone(), &primary);
            async move {
                match request {
                    Request::One(object, item) => match batch.await.get(&item) {
                        Some(result) => result.clone().map(|value| Fetched::One(object, value)),
                        None => Err(FetchFailure::Primary(failover::missing(&item.primary, primary))),
                    },
                    Request::Many(object) => {
                        failover::list(store, primary, failover, &object.collection, object.max_count)
                            .await
                            .map(|entries| Fetched::Many(object, entries))
                    }
                }
            }
        }))
        .await;
        drop(batch);

        let mut fetched = Vec::with_capacity(outcomes.len());
        let mut failures: Vec<FetchFailure> = Vec::new();
        for outcome in outcomes {
            match outcome {
                Ok(object) => fetched.push(object),
                Err(failure) if !failures.contains(&failure) => failures.push(failure),
                Err(_) => {}
            }
        }
        if !failures.is_empty() {
            return Err(MountError::Fetch { failures, total: class.objects.len() });
        }
        Ok(render::render(class.path_translation, &fetched)?)
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

/// One object of the class on its way to AWS.
enum Request<'c> {
    One(&'c NamedObject, FetchItem),
    Many(&'c CollectionObject),
}

/// What to fetch for an object, in its primary and failover regions.
fn fetch_item(object: &NamedObject, class: &SecretProviderClass) -> FetchItem {
    let primary = SecretRef {
        object_type: object.object_type,
        name: object.name.clone(),
        version: object.version.clone(),
        version_label: object.version_label.clone(),
    };
    let failover = class
        .failover_region
        .as_deref()
        .map(|region| SecretRef { name: object.name_in_failover(region), ..primary.clone() });
    FetchItem { primary, failover }
}

/// Warnings already logged, as digests of (namespace, class, warning): a class's warnings
/// are logged at its first mount, not at every rotation poll. Bounded: when full it is
/// forgotten wholesale, which at worst logs a warning again.
#[derive(Default)]
struct Warned(Mutex<HashSet<[u8; 16]>>);

const WARNED_MAX: usize = 4096;

impl Warned {
    /// Logs the class's warnings that were not logged before.
    fn log_new(&self, input: &MountInput, warnings: &[String]) {
        let fresh = self.fresh(&input.pod.namespace, &input.class_name, warnings);
        if !fresh.is_empty() {
            tracing::warn!(
                class = %input.class_name,
                namespace = %input.pod.namespace,
                "SecretProviderClass: {}",
                crate::class::summary(&fresh, "warning(s)")
            );
        }
    }

    /// The warnings of `class` in `namespace` not seen before (now remembered).
    fn fresh(&self, namespace: &str, class: &str, warnings: &[String]) -> Vec<String> {
        let Ok(mut seen) = self.0.lock() else { return Vec::new() };
        if seen.len() + warnings.len() > WARNED_MAX {
            seen.clear();
        }
        let mut fresh = Vec::new();
        for warning in warnings {
            let mut digest = Sha256::new();
            for part in [namespace, class, warning.as_str()] {
                digest.update(part.as_bytes());
                digest.update([0]);
            }
            // 16 of the digest's 32 bytes: the conversion cannot fail.
            let key: [u8; 16] = digest.finalize()[..16].try_into().unwrap_or_default();
            if seen.insert(key) {
                fresh.push(warning.clone());
            }
        }
        fresh
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
        (Mounter::new(settings, store.clone(), credentials.clone(), None), store, credentials)
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
        MountSettings { driver_writes_secrets: true, ..MountSettings::default() }
    }

    #[tokio::test]
    async fn replicas_share_one_parse_but_another_mode_or_text_is_parsed_again() {
        let (mounter, _, _) = setup(driver_writes(), Duration::ZERO);
        let deadline = Instant::now() + Duration::from_secs(5);
        let objects = "- {objectName: a, objectType: secretsmanager}";
        let replica = |pod: &str, mode: u32, objects: &str| {
            let mut input = input(objects);
            input.pod.name = pod.into();
            input.default_mode = mode;
            // The driver adds the pod's own values under the same keys (their values are not kept).
            for key in ["csi.storage.k8s.io/pod.name", "csi.storage.k8s.io/pod.uid"] {
                input.parameters.other.insert(key.into(), crate::class::Unread);
            }
            input
        };
        let first = mounter.parse_class(&mut replica("a-1", 0o644, objects), deadline).await.unwrap();
        let second = mounter.parse_class(&mut replica("a-2", 0o644, objects), deadline).await.unwrap();
        assert!(Arc::ptr_eq(&first, &second), "a replica's class is parsed again");
        let other_mode = mounter.parse_class(&mut replica("a-3", 0o600, objects), deadline).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &other_mode));
        let SecretObject::Named(object) = &other_mode.objects[0] else { panic!("not a single object") };
        assert_eq!(object.mode, 0o600);
        let changed = "- {objectName: b, objectType: secretsmanager}";
        let changed = mounter.parse_class(&mut replica("a-4", 0o644, changed), deadline).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &changed));
        // An unknown key is a warning of its own: it is part of what the class is.
        let mut typo = replica("a-5", 0o644, objects);
        typo.parameters.other.insert("regoin".into(), crate::class::Unread);
        let typo = mounter.parse_class(&mut typo, deadline).await.unwrap();
        assert_eq!(typo.warnings.len(), 1, "{:?}", typo.warnings);
        assert!(first.warnings.is_empty());
    }

    #[tokio::test]
    async fn no_objects_needs_no_credentials_and_returns_a_placeholder_version() {
        let (mounter, store, credentials) = setup(driver_writes(), Duration::ZERO);
        let response = response(mounter.mount(input("")).await.unwrap(), MAX_RESPONSE_BYTES).unwrap();
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
        let response = response(mounter.mount(input(objects)).await.unwrap(), MAX_RESPONSE_BYTES).unwrap();
        let files: Vec<&str> = response.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(files, vec!["one", "two"]);
        assert_eq!(store.asked(), 1);
    }

    #[tokio::test]
    async fn limits_and_deadline() {
        let settings = MountSettings { max_response_bytes: 3, ..driver_writes() };
        let (mounter, _, _) = setup(settings, Duration::ZERO);
        let err =
            mounter.mount(input("- {objectName: long-name, objectType: secretsmanager}")).await.unwrap_err();
        assert!(matches!(err, MountError::TooLarge { size: 9, limit: 3 }), "{err}");
        assert_eq!(status::code(&err), Code::ResourceExhausted);

        let settings = MountSettings { timeout: Duration::from_millis(50), ..driver_writes() };
        let (mounter, _, _) = setup(settings, Duration::from_secs(5));
        let err = mounter.mount(input("- {objectName: a, objectType: secretsmanager}")).await.unwrap_err();
        assert_eq!(status::code(&err), Code::DeadlineExceeded, "{err}");
    }

    #[tokio::test]
    async fn every_error_maps_to_a_code_and_a_bounded_label() {
        let (mounter, _, _) = setup(driver_writes(), Duration::ZERO);
        let err = mounter.mount(input("- {objectName: a}")).await.unwrap_err();
        assert_eq!((status::code(&err), status::label(&err)), (Code::InvalidArgument, "invalid_class"));
        let mut no_region = input("- {objectName: a, objectType: secretsmanager}");
        no_region.parameters.region = None;
        let err = mounter.mount(no_region).await.unwrap_err();
        assert_eq!((status::code(&err), status::label(&err)), (Code::InvalidArgument, "no_region"));
        let status: Status = err.into();
        assert!(status.message().contains("no AWS region"));
    }

    #[test]
    fn a_class_warns_once_not_at_every_rotation_poll() {
        let warned = Warned::default();
        let warnings = vec!["unknown key \"objectTpe\"".to_owned(), "unknown key \"x\"".to_owned()];
        assert_eq!(warned.fresh("ns", "c", &warnings), warnings);
        assert!(warned.fresh("ns", "c", &warnings).is_empty());
        assert_eq!(warned.fresh("ns", "c", &[warnings[0].clone(), "new".to_owned()]), vec!["new".to_owned()]);
        assert_eq!(warned.fresh("other", "c", &warnings).len(), 2, "another namespace's class of that name");
        for i in 0..WARNED_MAX {
            warned.fresh("ns", &format!("c{i}"), &warnings[..1]);
        }
        assert!(warned.0.lock().unwrap().len() <= WARNED_MAX);
    }
}
