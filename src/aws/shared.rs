//! Sharing fetches between mounts. When a node boots or the driver's rotation poll fires,
//! many pods mount the same objects at once: identical fetches in flight at the same time
//! (same identity, region, object and version selector) are made once and their result is
//! shared, so there is no staleness at all. With `--cache-ttl`, a value fetched by the same
//! identity is also served again until the TTL passes (bounded in entries and bytes; values
//! are zeroized when evicted).
//!
//! In-flight sharing is kept by hand rather than with the cache's single-flight: a mount's
//! objects are fetched as one batch (Parameter Store takes ten names a call), while sharing
//! is per object. A batch lives only while some mount waits for it: when every waiting
//! mount is cancelled, its queued and running AWS calls are dropped with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared, WeakShared};

use super::{FetchResults, FetchTarget, FetchedSecret, Listing, SecretRef, SecretStore};
use crate::class::Collection;
use crate::metrics::Metrics;

/// Everything that makes two fetches identical.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    identity: Arc<str>,
    region: String,
    secret: SecretRef,
}

type BatchFuture = BoxFuture<'static, Arc<FetchResults>>;
type Batch = Shared<BatchFuture>;

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

impl CacheSettings {
    /// Values served again for `ttl` (zero: no cache), within the cache's fixed bounds.
    pub fn with_ttl(ttl: Duration) -> Self {
        Self { ttl, max_entries: 10_000, max_bytes: 64 * 1024 * 1024 }
    }
}

type Values = moka::sync::Cache<Key, FetchedSecret>;

/// The value cache: every entry weighs at least `max_bytes / max_entries`, so the one
/// weighted capacity bounds both the bytes and the number of entries.
fn value_cache(settings: &CacheSettings) -> Option<Values> {
    if settings.ttl.is_zero() {
        return None;
    }
    let floor = settings.max_bytes / settings.max_entries.max(1);
    let weigh = move |_: &Key, value: &FetchedSecret| {
        u32::try_from(value.value.len().max(floor).max(1)).unwrap_or(u32::MAX)
    };
    let cache = moka::sync::Cache::builder()
        .max_capacity(settings.max_bytes as u64)
        .weigher(weigh)
        .time_to_live(settings.ttl)
        .build();
    Some(cache)
}

/// Fetches in flight, by key: the batch making it (weakly held: a batch nobody waits for is
/// dropped) and the batch's id, so only that batch removes the entry.
#[derive(Default)]
struct InFlight {
    batches: HashMap<Key, (u64, WeakShared<BatchFuture>)>,
    next_batch: u64,
}

/// Dead entries (batches whose mounts were all cancelled) are pruned past this many.
const PRUNE_ABOVE: usize = 4096;

/// A [`SecretStore`] that shares identical fetches and optionally caches values.
pub struct SharedStore {
    inner: Arc<dyn SecretStore>,
    in_flight: Arc<Mutex<InFlight>>,
    values: Option<Values>,
    pub stats: Arc<SharingStats>,
    metrics: Option<Arc<Metrics>>,
}

impl SharedStore {
    pub fn new(inner: Arc<dyn SecretStore>, cache: CacheSettings) -> Self {
        let values = value_cache(&cache);
        Self { inner, in_flight: Arc::default(), values, stats: Arc::default(), metrics: None }
    }

    /// Reports where objects came from as `object_fetches` metrics.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Values currently cached.
    pub fn cached_values(&self) -> usize {
        self.values.as_ref().map_or(0, |values| {
            values.run_pending_tasks();
            usize::try_from(values.entry_count()).unwrap_or(usize::MAX)
        })
    }
}

fn lock(state: &Mutex<InFlight>) -> MutexGuard<'_, InFlight> {
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
            let mut missing = Vec::new();
            for secret in refs {
                let key = key(secret);
                if let Some(value) = self.values.as_ref().and_then(|values| values.get(&key)) {
                    results.insert(secret.clone(), Ok(value));
                } else {
                    missing.push((secret, key));
                }
            }
            {
                let mut in_flight = lock(&self.in_flight);
                let mut start = Vec::new();
                for (secret, key) in missing {
                    match in_flight.batches.get(&key).and_then(|(_, batch)| batch.upgrade()) {
                        Some(batch) => waits.push((secret.clone(), batch)),
                        None => start.push(key),
                    }
                }
                self.count(results.len(), waits.len(), start.len());
                if !start.is_empty() {
                    let batch = self.start_batch(&mut in_flight, target, start.clone());
                    waits.extend(start.into_iter().map(|key| (key.secret, batch.clone())));
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

    fn list<'a>(&'a self, target: &'a FetchTarget, collection: &'a Collection, max: usize) -> Listing<'a> {
        // Collections are listed afresh by every mount: their membership is what changes.
        self.inner.list(target, collection, max)
    }
}

impl SharedStore {
    fn count(&self, cached: usize, joined: usize, fetched: usize) {
        self.stats.cached.fetch_add(cached as u64, Ordering::Relaxed);
        self.stats.joined.fetch_add(joined as u64, Ordering::Relaxed);
        self.stats.fetched.fetch_add(fetched as u64, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.object_fetches("cache", cached as u64);
            metrics.object_fetches("shared", joined as u64);
            metrics.object_fetches("aws", fetched as u64);
        }
    }

    /// Registers a batch fetching `keys`. It runs while a mount awaits it; the mount that
    /// sees it finish settles the shared state (caches the values, unregisters the batch).
    /// Called with the lock held, so the batch cannot settle before it is registered.
    fn start_batch(&self, in_flight: &mut InFlight, target: &FetchTarget, keys: Vec<Key>) -> Batch {
        let id = in_flight.next_batch;
        in_flight.next_batch += 1;
        let inner = self.inner.clone();
        let state = self.in_flight.clone();
        let values = self.values.clone();
        let target = target.clone();
        let refs: Vec<SecretRef> = keys.iter().map(|key| key.secret.clone()).collect();
        let settle_keys = keys.clone();
        let future: BatchFuture = async move {
            let results = inner.fetch(&target, &refs).await;
            let mut in_flight = lock(&state);
            for key in settle_keys {
                if in_flight.batches.get(&key).is_some_and(|(batch, _)| *batch == id) {
                    in_flight.batches.remove(&key);
                }
                if let (Some(values), Some(Ok(value))) = (&values, results.get(&key.secret)) {
                    values.insert(key, value.clone());
                }
            }
            Arc::new(results)
        }
        .boxed();
        let batch = future.shared();
        if in_flight.batches.len() > PRUNE_ABOVE {
            in_flight.batches.retain(|_, (_, weak)| weak.upgrade().is_some());
        }
        if let Some(weak) = batch.downgrade() {
            for key in keys {
                in_flight.batches.insert(key, (id, weak.clone()));
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::fake::{FakeStore, secret, value};

    /// Answers after a short pause with a value that changes on every call.
    fn slow_store() -> FakeStore {
        FakeStore::new(|_, _, before| Ok(value(&format!("v{before}"), &before.to_string())))
            .with_delay(Duration::from_millis(200))
    }

    fn target(identity: &str) -> FetchTarget {
        crate::aws::fake::target("us-east-1", identity)
    }

    #[tokio::test]
    async fn concurrent_identical_fetches_are_made_once() {
        let inner = Arc::new(slow_store());
        let store = Arc::new(SharedStore::new(inner.clone(), CacheSettings::with_ttl(Duration::ZERO)));
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
        let inner = Arc::new(slow_store());
        let store =
            Arc::new(SharedStore::new(inner.clone(), CacheSettings::with_ttl(Duration::from_secs(60))));
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
        let inner = Arc::new(slow_store());
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
    async fn work_nobody_waits_for_stops_but_a_shared_fetch_goes_on() {
        let inner = Arc::new(slow_store());
        let store = Arc::new(SharedStore::new(inner.clone(), CacheSettings::with_ttl(Duration::ZERO)));
        let refs = vec![secret("a")];
        // Two mounts share a fetch; one is cancelled: the other still gets the value.
        let (s, r) = (store.clone(), refs.clone());
        let cancelled = tokio::spawn(async move { s.fetch(&target("p"), &r).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (s, r) = (store.clone(), refs.clone());
        let waiting = tokio::spawn(async move { s.fetch(&target("p"), &r).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        cancelled.abort();
        assert!(waiting.await.unwrap()[&refs[0]].is_ok());
        assert_eq!((inner.asked.load(Ordering::SeqCst), inner.finished.load(Ordering::SeqCst)), (1, 1));
        assert_eq!(store.stats.joined.load(Ordering::SeqCst), 1);

        // A mount nobody shares is cancelled: its fetch stops with it.
        let (s, r) = (store.clone(), refs.clone());
        let alone = tokio::spawn(async move { s.fetch(&target("p"), &r).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        alone.abort();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(inner.asked.load(Ordering::SeqCst), 2);
        assert_eq!(inner.finished.load(Ordering::SeqCst), 1, "the cancelled fetch did not run on");
    }

    #[tokio::test]
    async fn a_cancelled_mount_does_not_leave_a_stale_fetch_behind() {
        let inner = Arc::new(slow_store());
        let store = Arc::new(SharedStore::new(inner.clone(), CacheSettings::with_ttl(Duration::ZERO)));
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
