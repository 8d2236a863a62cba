//! Sharing fetches between mounts. When a node boots or the driver's rotation poll fires,
//! many pods mount the same objects at once: identical fetches in flight at the same time
//! (same identity, region, object and version selector) are made once and their result is
//! shared, so there is no staleness at all. With `--cache-ttl`, a value fetched by the same
//! identity is also served again until the TTL passes (bounded in entries and bytes; values
//! are zeroized when evicted).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::{FetchError, FetchResults, FetchTarget, FetchedSecret, SecretRef, SecretStore};
use crate::metrics::Metrics;

/// Everything that makes two fetches identical.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    identity: Arc<str>,
    region: String,
    secret: SecretRef,
}

type Batch = Shared<BoxFuture<'static, Arc<FetchResults>>>;

/// Counters of what the store did, for tests and metrics.
#[derive(Debug, Default)]
pub struct SharingStats {
    /// Objects fetched from AWS.
    pub fetched: AtomicU64,
    /// Objects that joined a fetch already in flight.
    pub joined: AtomicU64,
    /// Objects served from the value cache.
    pub cached: AtomicU64,
}

/// Limits of the opt-in value cache.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// How long a fetched value is served again; zero disables the cache.
    pub ttl: Duration,
    pub max_entries: usize,
    pub max_bytes: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { ttl: Duration::ZERO, max_entries: 10_000, max_bytes: 64 * 1024 * 1024 }
    }
}

struct Cached {
    value: FetchedSecret,
    expires: Instant,
}

#[derive(Default)]
struct State {
    /// Fetches in flight, by key, with the id of the batch that makes them.
    in_flight: HashMap<Key, (u64, Batch)>,
    values: HashMap<Key, Cached>,
    value_bytes: usize,
    next_batch: u64,
}

/// A [`SecretStore`] that shares identical fetches and optionally caches values.
pub struct SharedStore {
    inner: Arc<dyn SecretStore>,
    state: Arc<Mutex<State>>,
    cache: CacheSettings,
    pub stats: Arc<SharingStats>,
    metrics: Option<Arc<Metrics>>,
}

impl SharedStore {
    pub fn new(inner: Arc<dyn SecretStore>, cache: CacheSettings) -> Self {
        Self { inner, state: Arc::default(), cache, stats: Arc::default(), metrics: None }
    }

    /// Reports where objects came from as `object_fetches` metrics.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Values currently cached.
    pub fn cached_values(&self) -> usize {
        lock(&self.state).values.len()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SecretStore for SharedStore {
    fn fetch<'a>(&'a self, target: &'a FetchTarget, refs: &'a [SecretRef]) -> BoxFuture<'a, FetchResults> {
        Box::pin(async move {
            let key = |secret: &SecretRef| Key {
                identity: target.identity.clone(),
                region: target.region.clone(),
                secret: secret.clone(),
            };
            let mut results = FetchResults::new();
            let mut waits: Vec<(SecretRef, Batch)> = Vec::new();
            {
                let mut state = lock(&self.state);
                let now = Instant::now();
                let mut missing = Vec::new();
                for secret in refs {
                    let key = key(secret);
                    if let Some(cached) = state.values.get(&key).filter(|c| c.expires > now) {
                        results.insert(secret.clone(), Ok(cached.value.clone()));
                        self.stats.cached.fetch_add(1, Ordering::Relaxed);
                    } else if let Some((_, batch)) = state.in_flight.get(&key) {
                        waits.push((secret.clone(), batch.clone()));
                        self.stats.joined.fetch_add(1, Ordering::Relaxed);
                    } else {
                        missing.push(secret.clone());
                    }
                }
                if let Some(metrics) = &self.metrics {
                    metrics.object_fetches("cache", results.len() as u64);
                    metrics.object_fetches("shared", waits.len() as u64);
                    metrics.object_fetches("aws", missing.len() as u64);
                }
                if !missing.is_empty() {
                    self.stats.fetched.fetch_add(missing.len() as u64, Ordering::Relaxed);
                    let batch = self.start_batch(&mut state, target, missing.clone());
                    waits.extend(missing.into_iter().map(|secret| (secret, batch.clone())));
                }
            }
            for (secret, batch) in waits {
                let outcome = batch
                    .await
                    .get(&secret)
                    .cloned()
                    .unwrap_or_else(|| Err(super::failover::missing(&secret, target)));
                results.insert(secret, outcome);
            }
            results
        })
    }

    fn list<'a>(
        &'a self,
        target: &'a FetchTarget,
        collection: &'a crate::class::Collection,
        max: usize,
    ) -> BoxFuture<'a, Result<super::listing::Entries, FetchError>> {
        // Collections are listed afresh by every mount: their membership is what changes.
        self.inner.list(target, collection, max)
    }
}

impl SharedStore {
    /// Starts fetching `refs` as one batch in its own task, so it completes (and settles the
    /// shared state) even if every mount waiting for it is cancelled. Called with the lock
    /// held, so the task cannot settle before the batch is registered.
    fn start_batch(&self, state: &mut State, target: &FetchTarget, refs: Vec<SecretRef>) -> Batch {
        let id = state.next_batch;
        state.next_batch += 1;
        let inner = self.inner.clone();
        let shared_state = self.state.clone();
        let target = target.clone();
        let cache = self.cache;
        let keys: Vec<Key> = refs
            .iter()
            .map(|secret| Key {
                identity: target.identity.clone(),
                region: target.region.clone(),
                secret: secret.clone(),
            })
            .collect();
        let settle_keys = keys.clone();
        let task = tokio::spawn(async move {
            let results = Arc::new(inner.fetch(&target, &refs).await);
            let mut state = lock(&shared_state);
            for key in settle_keys {
                if matches!(state.in_flight.get(&key), Some((batch, _)) if *batch == id) {
                    state.in_flight.remove(&key);
                }
                if let (false, Some(Ok(value))) = (cache.ttl.is_zero(), results.get(&key.secret)) {
                    store_value(&mut state, &cache, key, value.clone());
                }
            }
            results
        });
        let batch: Batch = async move { task.await.unwrap_or_default() }.boxed().shared();
        for key in keys {
            state.in_flight.insert(key, (id, batch.clone()));
        }
        batch
    }
}

/// Caches a value, evicting expired and then soonest-expiring values to stay in bounds.
fn store_value(state: &mut State, cache: &CacheSettings, key: Key, value: FetchedSecret) {
    let size = value.value.len();
    if size > cache.max_bytes {
        return;
    }
    if let Some(old) = state.values.remove(&key) {
        state.value_bytes -= old.value.value.len();
    }
    let now = Instant::now();
    let mut freed = 0;
    state.values.retain(|_, c| {
        let keep = c.expires > now;
        if !keep {
            freed += c.value.value.len();
        }
        keep
    });
    state.value_bytes -= freed;
    while state.values.len() >= cache.max_entries || state.value_bytes + size > cache.max_bytes {
        let Some(soonest) = state.values.iter().min_by_key(|(_, c)| c.expires).map(|(k, _)| k.clone()) else {
            break;
        };
        if let Some(evicted) = state.values.remove(&soonest) {
            state.value_bytes -= evicted.value.value.len();
        }
    }
    state.value_bytes += size;
    state.values.insert(key, Cached { value, expires: now + cache.ttl });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;

    use super::*;
    use crate::class::ObjectType;
    use crate::secret::SecretBytes;

    /// Counts the refs it is asked for; answers after a short pause with a value that
    /// changes on every call.
    #[derive(Default)]
    struct SlowStore {
        asked: AtomicUsize,
    }

    impl SecretStore for SlowStore {
        fn fetch<'a>(
            &'a self,
            _target: &'a FetchTarget,
            refs: &'a [SecretRef],
        ) -> BoxFuture<'a, FetchResults> {
            Box::pin(async move {
                let n = self.asked.fetch_add(refs.len(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                refs.iter()
                    .map(|r| {
                        let value = FetchedSecret {
                            value: SecretBytes::from(format!("v{n}")),
                            version: format!("{n}"),
                        };
                        (r.clone(), Ok(value))
                    })
                    .collect()
            })
        }
    }

    fn target(identity: &str) -> FetchTarget {
        FetchTarget {
            region: "us-east-1".into(),
            credentials: SharedCredentialsProvider::new(Credentials::for_tests()),
            identity: identity.into(),
        }
    }

    fn secret(name: &str) -> SecretRef {
        SecretRef {
            object_type: ObjectType::SecretsManager,
            name: name.into(),
            version: None,
            version_label: None,
        }
    }

    #[tokio::test]
    async fn concurrent_identical_fetches_are_made_once() {
        let inner = Arc::new(SlowStore::default());
        let store = Arc::new(SharedStore::new(inner.clone(), CacheSettings::default()));
        let refs = vec![secret("a"), secret("b")];
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (store, refs) = (store.clone(), refs.clone());
            tasks.push(tokio::spawn(async move { store.fetch(&target("pod-1"), &refs).await }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().len(), 2);
        }
        assert_eq!(inner.asked.load(Ordering::SeqCst), 2, "one fetch per object for 50 mounts");
        // Without a cache the next mount fetches again: no staleness.
        store.fetch(&target("pod-1"), &refs).await;
        assert_eq!(inner.asked.load(Ordering::SeqCst), 4);
        assert_eq!(store.cached_values(), 0);
    }

    #[tokio::test]
    async fn identities_never_share() {
        let inner = Arc::new(SlowStore::default());
        let store = Arc::new(SharedStore::new(
            inner.clone(),
            CacheSettings { ttl: Duration::from_secs(60), ..Default::default() },
        ));
        let refs = vec![secret("a")];
        let (one, two) = (target("pod-1"), target("pod-2"));
        let (a, b) = tokio::join!(store.fetch(&one, &refs), store.fetch(&two, &refs));
        assert_eq!(inner.asked.load(Ordering::SeqCst), 2);
        assert_ne!(a[&refs[0]].as_ref().unwrap().version, b[&refs[0]].as_ref().unwrap().version);
        // Cached per identity.
        let again = store.fetch(&target("pod-2"), &refs).await;
        assert_eq!(inner.asked.load(Ordering::SeqCst), 2);
        assert_eq!(again[&refs[0]].as_ref().unwrap().version, b[&refs[0]].as_ref().unwrap().version);
        assert_eq!(store.stats.cached.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_cache_expires_and_stays_within_its_bounds() {
        let inner = Arc::new(SlowStore::default());
        let cache = CacheSettings { ttl: Duration::from_millis(300), max_entries: 3, max_bytes: 1 << 20 };
        let store = SharedStore::new(inner.clone(), cache);
        let refs: Vec<SecretRef> = (0..5).map(|i| secret(&format!("s{i}"))).collect();
        store.fetch(&target("p"), &refs).await;
        assert_eq!(store.cached_values(), 3);
        tokio::time::sleep(Duration::from_millis(400)).await;
        store.fetch(&target("p"), &refs[..1]).await;
        assert_eq!(inner.asked.load(Ordering::SeqCst), 6, "an expired value is fetched again");
    }

    #[tokio::test]
    async fn a_cancelled_mount_does_not_leave_a_stale_fetch_behind() {
        let inner = Arc::new(SlowStore::default());
        let store = Arc::new(SharedStore::new(inner.clone(), CacheSettings::default()));
        let refs = vec![secret("a")];
        let (s, r) = (store.clone(), refs.clone());
        let cancelled = tokio::spawn(async move { s.fetch(&target("p"), &r).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        cancelled.abort();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let later = store.fetch(&target("p"), &refs).await;
        assert_eq!(inner.asked.load(Ordering::SeqCst), 2, "the later mount fetches afresh");
        assert_eq!(later[&refs[0]].as_ref().unwrap().version, "1");
    }
}
