//! One scriptable [`SecretStore`] for the unit tests of the fetch stages (failover, sharing,
//! the mount pipeline): each test says how an object is answered; the store records what it
//! was asked.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use futures::future::BoxFuture;

use super::{ErrorClass, FetchError, FetchResults, FetchTarget, FetchedSecret, SecretRef, SecretStore};
use crate::class::{Collection, ObjectType};
use crate::secret::SecretBytes;

/// How one object is answered: given the target, the ref and how many refs were asked
/// before this fetch.
type Answer = dyn Fn(&FetchTarget, &SecretRef, usize) -> Result<FetchedSecret, FetchError> + Send + Sync;

pub struct FakeStore {
    answer: Box<Answer>,
    /// Collections: region -> outcome (listed empty unless an error is given).
    pub list_outcomes: HashMap<&'static str, ErrorClass>,
    /// Every fetch waits this long before answering.
    pub delay: Duration,
    /// Refs asked for, over all fetches.
    pub asked: AtomicUsize,
    /// Fetches that ran to completion (a dropped one does not).
    pub finished: AtomicUsize,
    /// (region, names) of every fetch, and the region of every listing.
    pub calls: Mutex<Vec<(String, Vec<String>)>>,
    pub listed: Mutex<Vec<String>>,
}

impl FakeStore {
    pub fn new(
        answer: impl Fn(&FetchTarget, &SecretRef, usize) -> Result<FetchedSecret, FetchError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self {
            answer: Box::new(answer),
            list_outcomes: HashMap::new(),
            delay: Duration::ZERO,
            asked: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            calls: Mutex::default(),
            listed: Mutex::default(),
        }
    }

    /// Answers every object with its own name as the value, version "1".
    pub fn echo() -> Self {
        Self::new(|_, r, _| Ok(value(&r.name, "1")))
    }

    pub fn with_delay(self, delay: Duration) -> Self {
        Self { delay, ..self }
    }

    pub fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }
}

impl SecretStore for FakeStore {
    fn fetch<'a>(&'a self, target: &'a FetchTarget, refs: &'a [SecretRef]) -> BoxFuture<'a, FetchResults> {
        Box::pin(async move {
            let before = self.asked.fetch_add(refs.len(), Ordering::SeqCst);
            let names = refs.iter().map(|r| r.name.clone()).collect();
            self.calls.lock().unwrap().push((target.region.clone(), names));
            tokio::time::sleep(self.delay).await;
            self.finished.fetch_add(1, Ordering::SeqCst);
            refs.iter().map(|r| (r.clone(), (self.answer)(target, r, before))).collect()
        })
    }

    fn list<'a>(&'a self, target: &'a FetchTarget, _: &'a Collection, _: usize) -> super::Listing<'a> {
        self.listed.lock().unwrap().push(target.region.clone());
        let result = match self.list_outcomes.get(target.region.as_str()) {
            Some(class) => Err(error(&secret("set"), &target.region, *class)),
            None => Ok(Vec::new()),
        };
        Box::pin(async move { result })
    }
}

pub fn value(value: &str, version: &str) -> FetchedSecret {
    FetchedSecret { value: SecretBytes::from(value.to_owned()), version: version.into() }
}

/// A failure of `r` in `region`, of `class`.
pub fn error(r: &SecretRef, region: &str, class: ErrorClass) -> FetchError {
    FetchError::for_ref(r, region, (class, None, class.label().into()))
}

/// The latest version of Secrets Manager secret `name`.
pub fn secret(name: &str) -> SecretRef {
    SecretRef {
        object_type: ObjectType::SecretsManager,
        name: name.into(),
        version: None,
        version_label: None,
    }
}

/// Test credentials of `identity` in `region`.
pub fn target(region: &str, identity: &str) -> FetchTarget {
    let credentials = SharedCredentialsProvider::new(Credentials::for_tests());
    FetchTarget { region: region.into(), credentials, identity: identity.into() }
}
