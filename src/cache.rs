//! A small async cache: concurrent requests for the same key share one fetch (so a storm of
//! identical mounts makes one call), and results are kept until their own expiry. Errors
//! are shared with the callers waiting at the time but never cached.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

type Pending<V, E> = Shared<BoxFuture<'static, Result<(V, Instant), E>>>;

enum Entry<V, E> {
    Ready { value: V, expires: Instant },
    Pending(Pending<V, E>),
}

/// Outcome of a lookup, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Served from a stored value.
    Hit,
    /// Joined a fetch another caller had started.
    Shared,
    /// Started a fetch.
    Miss,
}

/// Keyed values with per-entry expiry and in-flight sharing; at most `capacity` entries.
pub struct Cache<K, V, E> {
    entries: Mutex<HashMap<K, Entry<V, E>>>,
    capacity: usize,
}

impl<K, V, E> Cache<K, V, E>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    pub fn new(capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::new()), capacity: capacity.max(1) }
    }

    /// Returns the stored value for `key`, or joins/starts `fetch`, which yields the value and
    /// the instant it stops being valid (an instant in the past means "don't store").
    pub async fn get_or_fetch<F, Fut>(&self, key: K, fetch: F) -> (Result<V, E>, Lookup)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(V, Instant), E>> + Send + 'static,
    {
        let (pending, lookup) = {
            let mut entries = self.lock();
            match entries.get(&key) {
                Some(Entry::Ready { value, expires }) if *expires > Instant::now() => {
                    return (Ok(value.clone()), Lookup::Hit);
                }
                Some(Entry::Pending(pending)) => (pending.clone(), Lookup::Shared),
                _ => {
                    let pending = fetch().boxed().shared();
                    entries.insert(key.clone(), Entry::Pending(pending.clone()));
                    (pending, Lookup::Miss)
                }
            }
        };
        let result = pending.clone().await;
        let mut entries = self.lock();
        // Only the fetch that is still registered for the key may settle the entry.
        let still_ours = matches!(entries.get(&key), Some(Entry::Pending(p)) if p.ptr_eq(&pending));
        if still_ours {
            match &result {
                Ok((value, expires)) if *expires > Instant::now() => {
                    entries.insert(key, Entry::Ready { value: value.clone(), expires: *expires });
                    Self::evict(&mut entries, self.capacity);
                }
                _ => {
                    entries.remove(&key);
                }
            }
        }
        (result.map(|(value, _)| value), lookup)
    }

    /// Drops every entry (values are zeroized by their own `Drop` where they hold secrets).
    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Entry<V, E>>> {
        // A panic while holding the lock cannot leave the map inconsistent: keep going.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Removes expired entries, then the soonest-expiring ones, down to `capacity`.
    fn evict(entries: &mut HashMap<K, Entry<V, E>>, capacity: usize) {
        if entries.len() <= capacity {
            return;
        }
        let now = Instant::now();
        entries.retain(|_, e| !matches!(e, Entry::Ready { expires, .. } if *expires <= now));
        while entries.len() > capacity {
            let soonest = entries
                .iter()
                .filter_map(|(k, e)| match e {
                    Entry::Ready { expires, .. } => Some((k.clone(), *expires)),
                    Entry::Pending(_) => None,
                })
                .min_by_key(|(_, expires)| *expires);
            match soonest {
                Some((key, _)) => {
                    entries.remove(&key);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn later(secs: u64) -> Instant {
        Instant::now() + Duration::from_secs(secs)
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_and_later_ones_hit() {
        let cache: Arc<Cache<&str, u32, String>> = Arc::new(Cache::new(10));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("k", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Ok((7, later(60)))
                    })
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().0, Ok(7));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let (value, lookup) = cache.get_or_fetch("k", || async { Ok((8, later(60))) }).await;
        assert_eq!((value, lookup), (Ok(7), Lookup::Hit));
    }

    #[tokio::test]
    async fn errors_and_expired_values_are_not_kept() {
        let cache: Cache<&str, u32, String> = Cache::new(10);
        let (value, _) = cache.get_or_fetch("k", || async { Err("down".to_string()) }).await;
        assert_eq!(value, Err("down".into()));
        assert!(cache.is_empty());
        let (value, lookup) = cache.get_or_fetch("k", || async { Ok((1, Instant::now())) }).await;
        assert_eq!((value, lookup), (Ok(1), Lookup::Miss));
        let (value, lookup) = cache.get_or_fetch("k", || async { Ok((2, later(60))) }).await;
        assert_eq!((value, lookup), (Ok(2), Lookup::Miss), "an already-expired value is not stored");
    }

    #[tokio::test]
    async fn capacity_is_enforced_by_evicting_the_soonest_to_expire() {
        let cache: Cache<u32, u32, String> = Cache::new(3);
        for i in 0..5u32 {
            let expires = later(100 + u64::from(i));
            let _ = cache.get_or_fetch(i, move || async move { Ok((i, expires)) }).await;
        }
        assert_eq!(cache.len(), 3);
        let (_, lookup) = cache.get_or_fetch(4, || async { Ok((0, later(1))) }).await;
        assert_eq!(lookup, Lookup::Hit, "the latest-expiring entries stay");
        let (_, lookup) = cache.get_or_fetch(0, || async { Ok((0, later(1))) }).await;
        assert_eq!(lookup, Lookup::Miss);
    }
}
