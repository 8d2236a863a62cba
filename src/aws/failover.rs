//! A mount's fetches across its primary and optional failover region. Unlike ASCP, which asks
//! both regions for every object, the failover region is asked only for objects (and
//! collections, by the same rule) whose primary fetch failed in a way another region may cure
//! (server error, throttling, timeout, network); a client error (not found, access denied)
//! fails with the primary's message.

use std::collections::{BTreeSet, HashMap};

use super::{Entries, FetchError, FetchTarget, FetchedSecret, SecretRef, SecretStore};
use crate::class::Collection;

/// One object to fetch, with its name in the failover region when there is one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FetchItem {
    pub primary: SecretRef,
    pub failover: Option<SecretRef>,
}

/// Why an object could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchFailure {
    #[error("{0}")]
    Primary(FetchError),
    #[error("{primary}; failover: {failover}")]
    Both { primary: Box<FetchError>, failover: Box<FetchError> },
}

impl FetchFailure {
    /// The primary region's error: it decides the status code.
    pub fn primary(&self) -> &FetchError {
        match self {
            Self::Primary(e) => e,
            Self::Both { primary, .. } => primary,
        }
    }
}

/// The failover rule, for single objects and collections alike: only a failure another
/// region may cure (server error, throttling, timeout, network) is tried there.
fn fails_over(error: &FetchError) -> bool {
    error.class.is_transient()
}

/// The outcome of an object from its primary result and, when it was asked, the failover
/// region's.
fn settle<T>(
    primary: Result<T, FetchError>,
    failover: Option<Result<T, FetchError>>,
) -> Result<T, FetchFailure> {
    match (primary, failover) {
        (Ok(value), _) => Ok(value),
        (Err(primary), Some(failover)) if fails_over(&primary) => failover.map_err(|failover| {
            FetchFailure::Both { primary: Box::new(primary), failover: Box::new(failover) }
        }),
        (Err(primary), _) => Err(FetchFailure::Primary(primary)),
    }
}

/// Fetches every item: each distinct ref once, primary region first, then the failover
/// region for the items that need it.
pub async fn fetch(
    store: &dyn SecretStore,
    primary: &FetchTarget,
    failover: Option<&FetchTarget>,
    items: &[FetchItem],
) -> HashMap<FetchItem, Result<FetchedSecret, FetchFailure>> {
    let refs: Vec<SecretRef> =
        items.iter().map(|i| i.primary.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let first = store.fetch(primary, &refs).await;

    let retry: Vec<SecretRef> = match failover {
        Some(_) => items
            .iter()
            .filter(|i| matches!(first.get(&i.primary), Some(Err(e)) if fails_over(e)))
            .filter_map(|i| i.failover.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        None => Vec::new(),
    };
    let second = match failover {
        Some(target) if !retry.is_empty() => store.fetch(target, &retry).await,
        _ => HashMap::new(),
    };

    items
        .iter()
        .map(|item| {
            let primary_result =
                first.get(&item.primary).cloned().unwrap_or_else(|| Err(missing(&item.primary, primary)));
            let failover_result = item.failover.as_ref().and_then(|f| second.get(f)).cloned();
            (item.clone(), settle(primary_result, failover_result))
        })
        .collect()
}

/// Lists a collection (at most `max` entries), under the same failover rule as objects.
pub async fn list(
    store: &dyn SecretStore,
    primary: &FetchTarget,
    failover: Option<&FetchTarget>,
    collection: &Collection,
    max: usize,
) -> Result<Entries, FetchFailure> {
    let first = store.list(primary, collection, max).await;
    let second = match (&first, failover) {
        (Err(e), Some(target)) if fails_over(e) => Some(store.list(target, collection, max).await),
        _ => None,
    };
    settle(first, second)
}

/// A store that forgot a ref is a bug; report it rather than panic.
pub(super) fn missing(r: &SecretRef, target: &FetchTarget) -> FetchError {
    FetchError::missing(&r.to_string(), r.object_type, &target.region)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::ErrorClass;
    use crate::aws::fake::{FakeStore, error, secret, value};

    type Outcome = ((&'static str, &'static str), Result<&'static str, ErrorClass>);

    /// Answers from a table of (region, name) -> outcome (else a client error).
    fn store(outcomes: &[Outcome]) -> FakeStore {
        let outcomes: HashMap<(String, String), Result<&'static str, ErrorClass>> =
            outcomes.iter().map(|((r, n), o)| ((r.to_string(), n.to_string()), *o)).collect();
        FakeStore::new(move |target, r, _| match outcomes.get(&(target.region.clone(), r.name.clone())) {
            Some(Ok(v)) => Ok(value(v, &format!("v-{}", target.region))),
            Some(Err(class)) => Err(error(r, &target.region, *class)),
            None => Err(error(r, &target.region, ErrorClass::Client)),
        })
    }

    fn target(region: &str) -> FetchTarget {
        crate::aws::fake::target(region, "test")
    }

    #[tokio::test]
    async fn failover_only_for_transient_primary_errors() {
        let outcomes = [
            (("east", "ok"), Ok("1")),
            (("east", "down"), Err(ErrorClass::Server)),
            (("east", "slow"), Err(ErrorClass::Timeout)),
            (("east", "throttled"), Err(ErrorClass::Throttled)),
            (("east", "missing"), Err(ErrorClass::Client)),
            (("west", "down"), Ok("2")),
            (("west", "slow"), Err(ErrorClass::Network)),
            (("west", "throttled"), Ok("3")),
            (("west", "missing"), Ok("never asked")),
        ];
        let store = store(&outcomes);
        let items: Vec<FetchItem> = ["ok", "down", "slow", "throttled", "missing"]
            .iter()
            .map(|n| FetchItem { primary: secret(n), failover: Some(secret(n)) })
            .collect();
        let results = fetch(&store, &target("east"), Some(&target("west")), &items).await;

        let value = |n: &str| results[&items.iter().find(|i| i.primary.name == n).unwrap().clone()].clone();
        assert_eq!(value("ok").unwrap().version, "v-east");
        assert_eq!(value("down").unwrap().version, "v-west");
        assert_eq!(value("throttled").unwrap().version, "v-west");
        assert!(matches!(value("slow"), Err(FetchFailure::Both { .. })));
        let missing = value("missing").unwrap_err();
        assert!(matches!(missing, FetchFailure::Primary(_)), "{missing}");
        assert_eq!(missing.primary().region, "east");

        let calls = store.calls.lock().unwrap();
        assert_eq!(calls.len(), 2);
        let mut asked_west = calls[1].1.clone();
        asked_west.sort();
        assert_eq!(
            (calls[1].0.as_str(), asked_west),
            ("west", vec!["down".into(), "slow".into(), "throttled".into()])
        );
    }

    #[tokio::test]
    async fn identical_refs_are_fetched_once_and_no_failover_without_region() {
        let store = store(&[]);
        let items = vec![
            FetchItem { primary: secret("a"), failover: None },
            FetchItem { primary: secret("a"), failover: None },
            FetchItem { primary: secret("b"), failover: None },
        ];
        let results = fetch(&store, &target("east"), None, &items).await;
        assert_eq!(results.len(), 2);
        let calls = store.calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].1, vec!["a".to_string(), "b".to_string()]);
    }

    #[tokio::test]
    async fn collections_fall_over_by_the_same_rule() {
        let set = Collection::ParameterPath { path: "/app/".into(), recursive: false };
        type Outcomes = &'static [(&'static str, Result<(), ErrorClass>)];
        let cases: [(Outcomes, &[&str], bool); 4] = [
            (&[("east", Ok(()))], &["east"], true),
            (&[("east", Err(ErrorClass::Throttled))], &["east", "west"], true),
            (&[("east", Err(ErrorClass::Client))], &["east"], false),
            (
                &[("east", Err(ErrorClass::Server)), ("west", Err(ErrorClass::Network))],
                &["east", "west"],
                false,
            ),
        ];
        for (outcomes, asked, ok) in cases {
            let mut store = FakeStore::echo();
            store.list_outcomes = outcomes.iter().filter_map(|(r, o)| Some((*r, o.err()?))).collect();
            let result = list(&store, &target("east"), Some(&target("west")), &set, 10).await;
            assert_eq!(result.is_ok(), ok, "{outcomes:?}: {result:?}");
            assert_eq!(*store.listed.lock().unwrap(), asked, "{outcomes:?}");
        }
    }
}
