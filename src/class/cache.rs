//! Parsed classes, by their text, and their warnings, logged once. Replicas and rotation
//! polls send the same class again and again: parsing 20 objects costs about as much CPU as
//! a signed AWS call, and a class's warnings belong in the log at its first mount, not at
//! every poll.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{ClassError, Limits, Parameters, ParseKey, SecretProviderClass, TooManyObjects};

/// Classes whose `objects` text is at most this long are parsed on the mount's own task
/// (20 objects are about 2 KiB): a node-wide storm would otherwise wait on a blocking-thread
/// hand-off for each. A longer one is parsed on a blocking thread, so it never holds up the
/// runtime's async threads; its limits stop it at the mount's deadline.
const INLINE_PARSE_BYTES: usize = 8 * 1024;
/// Bytes of class text kept parsed (the parsed form takes a few times the text).
const PARSED_BYTES: u64 = 2 * 1024 * 1024;
/// A class not mounted for this long is parsed again next time.
const PARSED_IDLE: Duration = Duration::from_secs(600);
/// (namespace, class, warning) triples remembered as logged; beyond, the least recently
/// logged are forgotten (and logged again if they come back).
const WARNED_ENTRIES: u64 = 4096;

/// Why a class could not be used.
#[derive(Debug)]
pub enum ParseFailure {
    Invalid(ClassError),
    TooManyObjects(TooManyObjects),
    /// The parse did not finish (a panic on the blocking thread): a bug.
    Aborted,
}

/// The parsed classes and the warnings already logged; shared by all mounts.
pub struct ClassCache {
    /// Only valid classes are kept (an error may depend on the mount's deadline), weighed by
    /// their text.
    parsed: moka::future::Cache<(ParseKey, u32), Arc<SecretProviderClass>>,
    /// Digests of (namespace, class name, warning).
    warned: moka::sync::Cache<[u8; 16], ()>,
}

impl Default for ClassCache {
    fn default() -> Self {
        let parsed = moka::future::Cache::builder()
            .max_capacity(PARSED_BYTES)
            .weigher(|(key, _): &(ParseKey, u32), _| {
                u32::try_from(key.text_bytes()).unwrap_or(u32::MAX).max(1)
            })
            .time_to_idle(PARSED_IDLE)
            .build();
        Self { parsed, warned: moka::sync::Cache::new(WARNED_ENTRIES) }
    }
}

impl ClassCache {
    /// The class of `parameters` with the driver's default file mode, parsed once for every
    /// mount that sends the same text (concurrent ones included).
    pub async fn parse(
        &self,
        parameters: Parameters,
        default_mode: u32,
        limits: Limits,
    ) -> Result<Arc<SecretProviderClass>, ParseFailure> {
        let key = (parameters.parse_key(), default_mode);
        let small = parameters.objects.as_ref().is_none_or(|o| o.len() <= INLINE_PARSE_BYTES);
        // `None`: the parse did not finish.
        let parse = move || SecretProviderClass::parse_with(&parameters, default_mode, &limits).map_err(Some);
        let parsed = self.parsed.try_get_with(key, async move {
            if small {
                parse().map(Arc::new)
            } else {
                tokio::task::spawn_blocking(parse).await.unwrap_or(Err(None)).map(Arc::new)
            }
        });
        parsed.await.map_err(|e| match e.as_ref() {
            None => ParseFailure::Aborted,
            Some(e) => match e.too_many_objects() {
                Some(too_many) => ParseFailure::TooManyObjects(too_many),
                None => ParseFailure::Invalid(e.clone()),
            },
        })
    }

    /// Logs the warnings of class `class_name` in `namespace` that were not logged before.
    pub fn warn_once(&self, namespace: &str, class_name: &str, warnings: &[String]) {
        let fresh = self.fresh(namespace, class_name, warnings);
        if !fresh.is_empty() {
            tracing::warn!(
                class = %class_name,
                namespace = %namespace,
                "SecretProviderClass: {}",
                super::summary(&fresh, "warning(s)")
            );
        }
    }

    /// The warnings not seen before (now remembered).
    fn fresh(&self, namespace: &str, class_name: &str, warnings: &[String]) -> Vec<String> {
        let mut fresh = Vec::new();
        for warning in warnings {
            let mut digest = Sha256::new();
            for part in [namespace, class_name, warning.as_str()] {
                digest.update(part.as_bytes());
                digest.update([0]);
            }
            // 16 of the digest's 32 bytes: the conversion cannot fail.
            let key: [u8; 16] = digest.finalize()[..16].try_into().unwrap_or_default();
            if self.warned.entry(key).or_insert(()).is_fresh() {
                fresh.push(warning.clone());
            }
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::class::{SecretObject, Unread};

    fn parameters(objects: &str) -> Parameters {
        Parameters {
            objects: Some(objects.into()),
            region: Some("us-east-1".into()),
            ..Parameters::default()
        }
    }

    fn limits() -> Limits {
        Limits { deadline: Some(Instant::now() + Duration::from_secs(5)), ..Limits::default() }
    }

    #[tokio::test]
    async fn replicas_share_one_parse_but_another_mode_or_text_is_parsed_again() {
        let cache = ClassCache::default();
        let objects = "- {objectName: a, objectType: secretsmanager}";
        // Each replica's driver adds its pod's own name and uid (their values are not kept).
        let replica = |_pod: &str, objects: &str| {
            let mut parameters = parameters(objects);
            for key in ["csi.storage.k8s.io/pod.name", "csi.storage.k8s.io/pod.uid"] {
                parameters.other.insert(key.into(), Unread);
            }
            parameters
        };
        let first = cache.parse(replica("a-1", objects), 0o644, limits()).await.unwrap();
        let second = cache.parse(replica("a-2", objects), 0o644, limits()).await.unwrap();
        assert!(Arc::ptr_eq(&first, &second), "a replica's class is parsed again");
        let other_mode = cache.parse(replica("a-3", objects), 0o600, limits()).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &other_mode));
        let SecretObject::Named(object) = &other_mode.objects[0] else { panic!("not a single object") };
        assert_eq!(object.mode, 0o600);
        let changed = "- {objectName: b, objectType: secretsmanager}";
        let changed = cache.parse(replica("a-4", changed), 0o644, limits()).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &changed));
        // An unknown key is a warning of its own: it is part of what the class is.
        let mut typo = replica("a-5", objects);
        typo.other.insert("regoin".into(), Unread);
        let typo = cache.parse(typo, 0o644, limits()).await.unwrap();
        assert_eq!(typo.warnings.len(), 1, "{:?}", typo.warnings);
        assert!(first.warnings.is_empty());
    }

    #[tokio::test]
    async fn an_invalid_class_is_not_kept_and_says_why() {
        let cache = ClassCache::default();
        for _ in 0..2 {
            let failure = cache.parse(parameters("- {objectName: a}"), 0o644, limits()).await.unwrap_err();
            assert!(matches!(failure, ParseFailure::Invalid(_)), "{failure:?}");
        }
        assert_eq!(cache.parsed.entry_count(), 0);
        let few = Limits { max_objects: 1, ..limits() };
        let two =
            "- {objectName: a, objectType: secretsmanager}\n- {objectName: b, objectType: secretsmanager}";
        let failure = cache.parse(parameters(two), 0o644, few).await.unwrap_err();
        assert!(matches!(failure, ParseFailure::TooManyObjects(_)), "{failure:?}");
    }

    #[test]
    fn a_class_warns_once_not_at_every_rotation_poll() {
        let cache = ClassCache::default();
        let warnings = vec!["unknown key \"objectTpe\"".to_owned(), "unknown key \"x\"".to_owned()];
        assert_eq!(cache.fresh("ns", "c", &warnings), warnings);
        assert!(cache.fresh("ns", "c", &warnings).is_empty());
        assert_eq!(cache.fresh("ns", "c", &[warnings[0].clone(), "new".to_owned()]), vec!["new".to_owned()]);
        assert_eq!(cache.fresh("other", "c", &warnings).len(), 2, "another namespace's class of that name");
        for i in 0..WARNED_ENTRIES * 2 {
            cache.fresh("ns", &format!("c{i}"), &warnings[..1]);
        }
        cache.warned.run_pending_tasks();
        assert!(cache.warned.entry_count() <= WARNED_ENTRIES, "{}", cache.warned.entry_count());
    }
}
