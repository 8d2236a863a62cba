//! Verifying a pod's `sts.amazonaws.com` token locally, against the cluster's
//! service-account issuer keys. Only a token the provider verified itself lets a pod share
//! its service account's IRSA identity with the other replicas; any token that cannot be
//! verified is exchanged with STS on its own, exactly as without sharing.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};

use crate::kube::{ClusterError, IssuerKeys, KubeLookup};
use crate::secret::SecretString;

/// Keys this old are read again in the background (mounts go on with them meanwhile).
const KEYS_TTL: Duration = Duration::from_secs(60);
/// Keys this old are not used at all: a key the cluster retired stops verifying (and so
/// sharing) within this, whatever happens to the re-reads.
const KEYS_MAX_AGE: Duration = Duration::from_secs(110);
/// A token naming a key we do not have makes us re-read the keys, at most this often.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// The most a mount waits for a read of the keys; past it the token is exchanged on its own
/// while the read goes on. A read already this slow is not waited for again.
const DISCOVERY_WAIT: Duration = Duration::from_secs(1);
/// After discovery failed, tokens go unverified (each exchanged alone) this long before
/// discovery is tried again.
const FAILURE_BACKOFF: Duration = Duration::from_secs(30);
/// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds (kube-apiserver's).
const LEEWAY_SECONDS: u64 = 60;

/// Why a token was not verified; each case means "exchange it alone". Bounded labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unverified {
    /// Sharing is turned off (`--share-irsa-credentials=false`).
    Disabled,
    /// The issuer's keys could not be read (no RBAC, API down, not Kubernetes).
    NoDiscovery,
    /// Not a JWT, or a JWT without the claims a kubelet token has.
    Malformed,
    /// Signed with a key the issuer does not publish (after a refresh).
    UnknownKey,
    /// Not RS256.
    Algorithm,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    /// Not `system:serviceaccount:<namespace>:<service account>` of the request.
    WrongSubject,
    Expired,
    NotYetValid,
}

impl Unverified {
    /// The `token_verifications_total` outcome label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::NoDiscovery => "no_discovery",
            Self::Malformed => "malformed",
            Self::UnknownKey => "unknown_key",
            Self::Algorithm => "algorithm",
            Self::BadSignature => "bad_signature",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::WrongSubject => "wrong_subject",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
        }
    }
}

/// Checks a token against the issuer's keys: RS256 signature by a published key, `iss`,
/// `aud` containing `audience`, `sub` naming the service account, `exp`/`nbf`/`iat`. Pure.
/// A valid token's `exp` (seconds since the epoch) comes back: its verdict holds until then.
pub fn check(
    token: &str,
    issuer: &IssuerKeys,
    audience: &str,
    namespace: &str,
    service_account: &str,
) -> Result<u64, Unverified> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| Unverified::Malformed)?;
    if header.alg != Algorithm::RS256 {
        return Err(Unverified::Algorithm);
    }
    let kid = header.kid.ok_or(Unverified::Malformed)?;
    let jwk = issuer
        .keys
        .keys
        .iter()
        .find(|k| k.common.key_id.as_deref() == Some(kid.as_str()) && usable(k))
        .ok_or(Unverified::UnknownKey)?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| Unverified::UnknownKey)?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[issuer.issuer.as_str()]);
    validation.set_audience(&[audience]);
    validation.sub = Some(format!("system:serviceaccount:{namespace}:{service_account}"));
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    match jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation) {
        // Issued in the future: kube-apiserver refuses such a token, and so does sharing.
        Ok(data) if data.claims["iat"].as_u64().is_some_and(|iat| iat > now_seconds() + LEEWAY_SECONDS) => {
            Err(Unverified::NotYetValid)
        }
        Ok(data) => data.claims["exp"].as_u64().ok_or(Unverified::Malformed),
        Err(e) => Err(match e.kind() {
            ErrorKind::InvalidSignature => Unverified::BadSignature,
            ErrorKind::InvalidIssuer => Unverified::WrongIssuer,
            ErrorKind::InvalidAudience => Unverified::WrongAudience,
            ErrorKind::InvalidSubject => Unverified::WrongSubject,
            ErrorKind::ExpiredSignature => Unverified::Expired,
            ErrorKind::ImmatureSignature => Unverified::NotYetValid,
            ErrorKind::InvalidAlgorithm => Unverified::Algorithm,
            _ => Unverified::Malformed,
        }),
    }
}

/// An RSA signing key meant for RS256 (a JWK without `alg`/`use` is taken as such).
fn usable(jwk: &Jwk) -> bool {
    matches!(jwk.algorithm, AlgorithmParameters::RSA(_))
        && jwk.common.key_algorithm.is_none_or(|a| a == KeyAlgorithm::RS256)
        && jwk.common.public_key_use.as_ref().is_none_or(|u| *u == PublicKeyUse::Signature)
}

fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Where the issuer's keys come from: the API server's issuer discovery, or a fake in tests.
pub trait IssuerSource: Send + Sync + 'static {
    fn issuer_keys(&self) -> BoxFuture<'_, Result<IssuerKeys, ClusterError>>;
}

impl IssuerSource for KubeLookup {
    fn issuer_keys(&self) -> BoxFuture<'_, Result<IssuerKeys, ClusterError>> {
        Box::pin(KubeLookup::issuer_keys(self))
    }
}

/// A token verified with `keys`, valid until `exp` (seconds since the epoch).
#[derive(Clone)]
struct Remembered {
    keys: Arc<IssuerKeys>,
    exp: u64,
}

/// Tokens remembered as verified (a node's pods, with room to spare), and for how long at most.
const REMEMBERED_TOKENS: u64 = 10_000;
const REMEMBER_FOR: Duration = Duration::from_secs(600);

/// What a verdict depends on besides the keys: the token and what it was checked against.
/// Length-prefixed, so no two different questions share a key; a digest, so no token is kept.
fn remembered_key(token: &SecretString, audience: &str, namespace: &str, service_account: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in [token.expose(), audience, namespace, service_account] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// What is known about the issuer's keys.
#[derive(Default)]
struct State {
    /// The last keys read, and when.
    keys: Option<(Arc<IssuerKeys>, Instant)>,
    /// When the last read failed (mounts then do not wait for discovery for a while).
    failed_at: Option<Instant>,
    /// When the read under way started.
    reading_since: Option<Instant>,
}

/// Verifies tokens with the issuer keys read through the Kubernetes API: re-read in the
/// background every minute, and on rotation (a token naming an unknown key) at most every
/// few seconds, in one read at a time that no mount waits for longer than about a second.
pub struct TokenVerifier {
    cluster: Option<Arc<dyn IssuerSource>>,
    state: Arc<Mutex<State>>,
    /// Tokens verified, by [`remembered_key`]: a token seen again skips RS256 and the claims.
    verified: moka::sync::Cache<[u8; 32], Remembered>,
    /// Bumped when a read ends, for the mounts waiting on it.
    reads: Arc<watch::Sender<u64>>,
}

impl TokenVerifier {
    /// Verifies against `cluster`'s issuer keys; `None` verifies nothing (sharing off).
    pub fn new(cluster: Option<Arc<dyn IssuerSource>>) -> Self {
        let verified =
            moka::sync::Cache::builder().max_capacity(REMEMBERED_TOKENS).time_to_live(REMEMBER_FOR).build();
        Self { cluster, state: Arc::default(), verified, reads: Arc::new(watch::Sender::new(0)) }
    }

    /// Whether `token` is a valid token of `namespace`/`service_account` for `audience`.
    pub async fn verify(
        &self,
        token: &SecretString,
        audience: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<(), Unverified> {
        if self.cluster.is_none() {
            return Err(Unverified::Disabled);
        }
        let asked = remembered_key(token, audience, namespace, service_account);
        let check = |issuer: &Arc<IssuerKeys>| {
            self.remembered(&asked, issuer).map_or_else(
                || {
                    let exp = check(token.expose(), issuer, audience, namespace, service_account)?;
                    self.verified.insert(asked, Remembered { keys: issuer.clone(), exp });
                    Ok(())
                },
                Ok,
            )
        };
        match self.usable() {
            Some((keys, age)) => {
                if age >= KEYS_TTL {
                    self.start_read(true);
                }
                match check(&keys) {
                    // The issuer may have rotated its keys: read them again (unless just read).
                    Err(Unverified::UnknownKey) if age >= MIN_REFRESH_INTERVAL => {
                        self.start_read(true);
                        self.wait_for_read().await;
                        match self.usable() {
                            Some((newer, _)) if !Arc::ptr_eq(&newer, &keys) => check(&newer),
                            _ => Err(Unverified::UnknownKey),
                        }
                    }
                    verdict => verdict,
                }
            }
            None => {
                if lock(&self.state).failed_at.is_some_and(|at| at.elapsed() < FAILURE_BACKOFF) {
                    return Err(Unverified::NoDiscovery);
                }
                self.start_read(true);
                self.wait_for_read().await;
                self.usable().map_or(Err(Unverified::NoDiscovery), |(keys, _)| check(&keys))
            }
        }
    }

    /// Whether this very token was verified for the same service account and audience with
    /// these very keys, and has not expired since: the driver presents the same token at
    /// every rotation poll until kubelet renews it, and its verdict cannot change while the
    /// keys do not (a re-read that finds other keys makes new `issuer`, so a retired key's
    /// tokens are checked again).
    fn remembered(&self, asked: &[u8; 32], issuer: &Arc<IssuerKeys>) -> Option<()> {
        let known = self.verified.get(asked)?;
        (Arc::ptr_eq(&known.keys, issuer) && now_seconds() < known.exp).then_some(())
    }

    /// Starts reading the keys ahead of the first token (at start-up). A failure here sets
    /// no back-off: the API server may just not be reachable yet, so the first mount tries
    /// again.
    pub fn prefetch(&self) {
        self.start_read(false);
    }

    /// The keys, unless there are none or they are too old to use, with their age.
    fn usable(&self) -> Option<(Arc<IssuerKeys>, Duration)> {
        let state = lock(&self.state);
        let (keys, read_at) = state.keys.as_ref()?;
        let age = read_at.elapsed();
        (age < KEYS_MAX_AGE).then(|| (keys.clone(), age))
    }

    /// Starts a read of the keys in the background, unless one is under way. It runs to its
    /// end (bounded by the Kubernetes request timeout) whoever waits for it.
    fn start_read(&self, back_off_on_failure: bool) {
        let Some(cluster) = self.cluster.clone() else { return };
        {
            let mut state = lock(&self.state);
            if state.reading_since.is_some() {
                return;
            }
            state.reading_since = Some(Instant::now());
        }
        let (state, reads) = (self.state.clone(), self.reads.clone());
        tokio::spawn(async move {
            let read = cluster.issuer_keys().await;
            let mut state = lock(&state);
            state.reading_since = None;
            match read {
                // The same keys as before stay the same `Arc`: verdicts made with them hold.
                Ok(issuer) if state.keys.as_ref().is_some_and(|(keys, _)| **keys == issuer) => {
                    if let Some((_, read_at)) = state.keys.as_mut() {
                        *read_at = Instant::now();
                    }
                    state.failed_at = None;
                }
                Ok(issuer) => {
                    state.keys = Some((Arc::new(issuer), Instant::now()));
                    state.failed_at = None;
                }
                Err(e) if back_off_on_failure => {
                    tracing::warn!(
                        "cannot read the service-account issuer keys ({e}); pods' tokens are exchanged \
                         one by one until they can be read (grant get on the nonResourceURLs \
                         /.well-known/openid-configuration and /openid/v1/jwks)"
                    );
                    state.failed_at = Some(Instant::now());
                }
                // Not a warning yet: the first mount that needs the keys warns if they stay
                // unreadable.
                Err(e) => {
                    tracing::debug!("issuer discovery at start-up failed ({e}); the first mount tries again")
                }
            }
            drop(state);
            reads.send_modify(|n| *n += 1);
        });
    }

    /// Waits for the read under way to end, for at most what is left of [`DISCOVERY_WAIT`]
    /// since it started: a slow read holds no mount for longer, and once it is that slow no
    /// mount waits for it at all.
    async fn wait_for_read(&self) {
        let mut ended = self.reads.subscribe();
        let Some(since) = lock(&self.state).reading_since else { return };
        let Some(left) = DISCOVERY_WAIT.checked_sub(since.elapsed()) else { return };
        let _ = tokio::time::timeout(left, ended.changed()).await;
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use crate::kube::IssuerKeys;
    use crate::secret::SecretString;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn issuer(jwk: serde_json::Value) -> IssuerKeys {
        let keys = serde_json::from_value(serde_json::json!({ "keys": [jwk] })).unwrap();
        IssuerKeys { issuer: "https://issuer".into(), keys }
    }

    fn rsa_jwk(extra: serde_json::Value) -> serde_json::Value {
        let mut jwk = serde_json::json!({"kty": "RSA", "kid": "k", "n": "sXch", "e": "AQAB"});
        if let (Some(jwk), Some(extra)) = (jwk.as_object_mut(), extra.as_object()) {
            jwk.extend(extra.clone());
        }
        jwk
    }

    fn token(header: serde_json::Value) -> String {
        let claims = serde_json::json!({"sub": "system:serviceaccount:ns:sa", "aud": ["sts.amazonaws.com"]});
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(b"signature")
        )
    }

    #[test]
    fn only_rs256_tokens_naming_a_published_rsa_signing_key_get_to_the_signature_check() {
        let keys = issuer(rsa_jwk(serde_json::json!({})));
        let cases = [
            // Algorithm confusion: an HMAC "signed" with the public key must not pass.
            (token(serde_json::json!({"alg": "HS256", "kid": "k"})), Unverified::Algorithm),
            (token(serde_json::json!({"alg": "ES256", "kid": "k"})), Unverified::Algorithm),
            (token(serde_json::json!({"alg": "none", "kid": "k"})), Unverified::Malformed),
            (token(serde_json::json!({"alg": "RS256"})), Unverified::Malformed),
            (token(serde_json::json!({"alg": "RS256", "kid": "other"})), Unverified::UnknownKey),
            ("not.a.jwt".to_owned(), Unverified::Malformed),
            (String::new(), Unverified::Malformed),
        ];
        for (token, want) in cases {
            assert_eq!(check(&token, &keys, "sts.amazonaws.com", "ns", "sa"), Err(want), "{token}");
        }
        // A key published for encryption or another algorithm is not a signing key.
        for jwk in [rsa_jwk(serde_json::json!({"use": "enc"})), rsa_jwk(serde_json::json!({"alg": "RS512"}))]
        {
            let token = token(serde_json::json!({"alg": "RS256", "kid": "k"}));
            assert_eq!(
                check(&token, &issuer(jwk), "sts.amazonaws.com", "ns", "sa"),
                Err(Unverified::UnknownKey)
            );
        }
    }

    #[tokio::test]
    async fn without_a_cluster_nothing_verifies() {
        let verifier = TokenVerifier::new(None);
        let token = SecretString::new(token(serde_json::json!({"alg": "RS256", "kid": "k"})));
        assert_eq!(verifier.verify(&token, "sts.amazonaws.com", "ns", "sa").await, Err(Unverified::Disabled));
    }

    /// An RS256 signing key, as the cluster's issuer holds one.
    struct Signer {
        kid: &'static str,
        key: aws_lc_rs::rsa::KeyPair,
    }

    impl Signer {
        fn new(kid: &'static str) -> Self {
            Self { kid, key: aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap() }
        }

        fn jwk(&self) -> serde_json::Value {
            use aws_lc_rs::signature::KeyPair as _;
            let public = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(self.key.public_key());
            serde_json::json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                               "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e)})
        }

        /// A kubelet-like token of ns/sa issued `iat_offset` seconds from now.
        fn token(&self, iat_offset: i64) -> String {
            let now = now_seconds() as i64;
            let header = serde_json::json!({"alg": "RS256", "kid": self.kid});
            let claims = serde_json::json!({
                "iss": "https://issuer", "aud": ["sts.amazonaws.com"], "sub": "system:serviceaccount:ns:sa",
                "iat": now + iat_offset, "nbf": now, "exp": now + 3600,
            });
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let mut signature = vec![0u8; self.key.public_modulus_len()];
            let rng = aws_lc_rs::rand::SystemRandom::new();
            self.key
                .sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut signature)
                .unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
        }
    }

    /// Issuer discovery that serves whatever a test publishes, counting reads, after `delay`.
    struct Published {
        keys: std::sync::Mutex<Option<Vec<serde_json::Value>>>,
        reads: std::sync::atomic::AtomicUsize,
        delay: Duration,
    }

    impl Published {
        fn new(keys: &[&Signer], delay: Duration) -> Arc<Self> {
            let keys = Some(keys.iter().map(|k| k.jwk()).collect());
            Arc::new(Self { keys: std::sync::Mutex::new(keys), reads: Default::default(), delay })
        }

        /// `None`: discovery fails.
        fn publish(&self, keys: Option<&[&Signer]>) {
            *self.keys.lock().unwrap() = keys.map(|keys| keys.iter().map(|k| k.jwk()).collect());
        }

        fn reads(&self) -> usize {
            self.reads.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl IssuerSource for Published {
        fn issuer_keys(&self) -> BoxFuture<'_, Result<IssuerKeys, ClusterError>> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let keys = self.keys.lock().unwrap().clone();
                let keys =
                    keys.ok_or(ClusterError::Unavailable { what: "jwks".into(), message: "down".into() })?;
                let keys = serde_json::from_value(serde_json::json!({ "keys": keys })).unwrap();
                Ok(IssuerKeys { issuer: "https://issuer".into(), keys })
            })
        }
    }

    async fn verify(verifier: &TokenVerifier, token: &str) -> Result<(), Unverified> {
        verifier.verify(&SecretString::new(token.to_owned()), "sts.amazonaws.com", "ns", "sa").await
    }

    /// Lets the background read run.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_retired_key_stops_verifying_within_two_minutes_even_when_reads_fail() {
        let (old, new) = (Signer::new("old"), Signer::new("new"));
        let published = Published::new(&[&old], Duration::ZERO);
        let verifier = TokenVerifier::new(Some(published.clone()));
        assert_eq!(verify(&verifier, &old.token(0)).await, Ok(()));
        // The cluster retires the key: within the keys' lifetime its tokens still verify.
        published.publish(Some(&[&new]));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(verify(&verifier, &old.token(0)).await, Ok(()));
        assert_eq!(published.reads(), 1, "no read within a minute");
        // A minute on, a mount starts a read in the background; once it is in, the old key is gone.
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(verify(&verifier, &old.token(0)).await, Ok(()), "verified with the keys at hand");
        settle().await;
        assert_eq!(published.reads(), 2);
        assert_eq!(verify(&verifier, &old.token(0)).await, Err(Unverified::UnknownKey));
        assert_eq!(verify(&verifier, &new.token(0)).await, Ok(()));

        // When every read fails, keys are not used past their maximum age.
        let published = Published::new(&[&old], Duration::ZERO);
        let verifier = TokenVerifier::new(Some(published.clone()));
        assert_eq!(verify(&verifier, &old.token(0)).await, Ok(()));
        published.publish(None);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(verify(&verifier, &old.token(0)).await, Ok(()));
        settle().await;
        tokio::time::advance(KEYS_MAX_AGE - Duration::from_secs(61)).await;
        assert_eq!(verify(&verifier, &old.token(0)).await, Err(Unverified::NoDiscovery));
        assert!(KEYS_MAX_AGE < Duration::from_secs(120));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_read_holds_a_mount_at_most_a_second_and_then_none() {
        let key = Signer::new("k");
        let published = Published::new(&[&key], Duration::from_secs(30));
        let verifier = TokenVerifier::new(Some(published.clone()));
        let started = Instant::now();
        assert_eq!(verify(&verifier, &key.token(0)).await, Err(Unverified::NoDiscovery));
        assert_eq!(started.elapsed(), DISCOVERY_WAIT);
        // The read is under way and already slow: the next mounts do not wait for it.
        let again = Instant::now();
        assert_eq!(verify(&verifier, &key.token(0)).await, Err(Unverified::NoDiscovery));
        assert_eq!(again.elapsed(), Duration::ZERO);
        // Once it is in, tokens verify.
        tokio::time::advance(Duration::from_secs(30)).await;
        settle().await;
        assert_eq!(verify(&verifier, &key.token(0)).await, Ok(()));
        assert_eq!(published.reads(), 1, "one read for all of them");
    }

    #[tokio::test(start_paused = true)]
    async fn a_remembered_verdict_answers_only_the_question_it_was_asked() {
        let key = Signer::new("k");
        let published = Published::new(&[&key], Duration::ZERO);
        let verifier = TokenVerifier::new(Some(published.clone()));
        let token = SecretString::new(key.token(0));
        assert_eq!(verifier.verify(&token, "sts.amazonaws.com", "ns", "sa").await, Ok(()));
        let asked = remembered_key(&token, "sts.amazonaws.com", "ns", "sa");
        let keys = verifier.usable().unwrap().0;
        assert_eq!(verifier.remembered(&asked, &keys), Some(()));
        // The same token, remembered as verified for ns/sa, asked for under other names.
        let other = verifier.verify(&token, "sts.amazonaws.com", "ns", "other").await;
        assert_eq!(other, Err(Unverified::WrongSubject));
        let other = verifier.verify(&token, "pods.eks.amazonaws.com", "ns", "sa").await;
        assert_eq!(other, Err(Unverified::WrongAudience));
        assert_eq!(verifier.verify(&token, "sts.amazonaws.com", "ns", "sa").await, Ok(()));
        // A re-read that finds the same keys keeps them (and so the verdicts made with them).
        tokio::time::advance(KEYS_TTL).await;
        assert_eq!(verifier.verify(&token, "sts.amazonaws.com", "ns", "sa").await, Ok(()));
        settle().await;
        assert_eq!(published.reads(), 2);
        assert!(Arc::ptr_eq(&verifier.usable().unwrap().0, &keys));
        assert_eq!(verifier.remembered(&asked, &keys), Some(()));
    }

    #[test]
    fn a_token_issued_in_the_future_does_not_verify() {
        let key = Signer::new("k");
        let keys = serde_json::from_value(serde_json::json!({ "keys": [key.jwk()] })).unwrap();
        let issuer = IssuerKeys { issuer: "https://issuer".into(), keys };
        let check = |token: &str| check(token, &issuer, "sts.amazonaws.com", "ns", "sa");
        assert!(check(&key.token(0)).is_ok());
        assert!(check(&key.token(30)).is_ok(), "within the clock skew");
        assert_eq!(check(&key.token(600)), Err(Unverified::NotYetValid));
    }
}
