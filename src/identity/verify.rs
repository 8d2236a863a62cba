//! Verifying a pod's `sts.amazonaws.com` token locally, against the cluster's
//! service-account issuer keys. Only a token the provider verified itself lets a pod share
//! its service account's IRSA identity with the other replicas; any token that cannot be
//! verified is exchanged with STS on its own, exactly as without sharing.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};

use crate::kube::{ClusterError, IssuerKeys, KubeLookup};
use crate::secret::SecretString;

/// Keys are read again this often, key rotation or not.
const KEYS_TTL: Duration = Duration::from_secs(600);
/// A token naming a key we do not have makes us re-read the keys, at most this often.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// After discovery failed, tokens go unverified (each exchanged alone) this long before
/// discovery is tried again.
const FAILURE_BACKOFF: Duration = Duration::from_secs(30);
/// Clock skew allowed on `exp` and `nbf`, in seconds.
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
/// `aud` containing `audience`, `sub` naming the service account, `exp`/`nbf`. Pure.
pub fn check(
    token: &str,
    issuer: &IssuerKeys,
    audience: &str,
    namespace: &str,
    service_account: &str,
) -> Result<(), Unverified> {
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
        Ok(_) => Ok(()),
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

/// What is known about the issuer's keys.
#[derive(Clone)]
enum Keys {
    Known { issuer: Arc<IssuerKeys>, read_at: Instant },
    Failed { at: Instant },
    Unknown,
}

/// Verifies tokens with the issuer keys read through the Kubernetes API, cached and
/// re-read on rotation (a token naming an unknown key), at most every few seconds.
pub struct TokenVerifier {
    cluster: Option<Arc<KubeLookup>>,
    keys: RwLock<Keys>,
    /// Held while the keys are re-read: concurrent mounts wait for one read.
    refresh: tokio::sync::Mutex<()>,
}

impl TokenVerifier {
    /// Verifies against `cluster`'s issuer keys; `None` verifies nothing (sharing off).
    pub fn new(cluster: Option<Arc<KubeLookup>>) -> Self {
        Self { cluster, keys: RwLock::new(Keys::Unknown), refresh: tokio::sync::Mutex::new(()) }
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
        let check = |issuer: &IssuerKeys| check(token.expose(), issuer, audience, namespace, service_account);
        let (issuer, stale) = match self.current() {
            Keys::Known { issuer, read_at } => (Some(issuer), read_at.elapsed() >= KEYS_TTL),
            Keys::Failed { at } if at.elapsed() < FAILURE_BACKOFF => return Err(Unverified::NoDiscovery),
            Keys::Failed { .. } | Keys::Unknown => (None, true),
        };
        if let Some(issuer) = &issuer
            && !stale
        {
            match check(issuer) {
                Err(Unverified::UnknownKey) => {}
                verdict => return verdict,
            }
        }
        // No keys yet, old keys, or a key we do not know (the issuer may have rotated).
        match self.reread(issuer.as_ref()).await {
            Some(issuer) => check(&issuer),
            None => Err(Unverified::NoDiscovery),
        }
    }

    /// Reads the keys ahead of the first token (at start-up). A failure here sets no backoff:
    /// the API server may just not be reachable yet, so the first mount tries again.
    pub async fn prefetch(&self) {
        let Some(cluster) = &self.cluster else { return };
        let _one_at_a_time = self.refresh.lock().await;
        if !matches!(self.current(), Keys::Unknown) {
            return;
        }
        // Not a warning yet: the first mount that needs the keys warns if they stay unreadable.
        if let Err(e) = self.read(cluster.as_ref()).await {
            tracing::debug!("issuer discovery at start-up failed ({e}); the first mount tries again")
        }
    }

    /// Reads the keys and keeps them; the caller holds `refresh`.
    async fn read(&self, cluster: &KubeLookup) -> Result<Arc<IssuerKeys>, ClusterError> {
        let issuer = Arc::new(cluster.issuer_keys().await?);
        self.set(Keys::Known { issuer: issuer.clone(), read_at: Instant::now() });
        Ok(issuer)
    }

    fn current(&self) -> Keys {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, keys: Keys) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    /// Reads the keys again unless another mount just did (then uses its answer). `seen`
    /// are the keys the caller found wanting.
    async fn reread(&self, seen: Option<&Arc<IssuerKeys>>) -> Option<Arc<IssuerKeys>> {
        let cluster = self.cluster.as_ref()?;
        let _one_at_a_time = self.refresh.lock().await;
        match self.current() {
            Keys::Known { issuer, read_at } => {
                let newer = seen.is_none_or(|seen| !Arc::ptr_eq(seen, &issuer));
                if newer || read_at.elapsed() < MIN_REFRESH_INTERVAL {
                    return Some(issuer);
                }
            }
            Keys::Failed { at } if at.elapsed() < FAILURE_BACKOFF => return None,
            _ => {}
        }
        match self.read(cluster.as_ref()).await {
            Ok(issuer) => Some(issuer),
            Err(e) => {
                tracing::warn!(
                    "cannot read the service-account issuer keys ({e}); pods' tokens are exchanged \
                     one by one until they can be read (grant get on the nonResourceURLs \
                     /.well-known/openid-configuration and /openid/v1/jwks)"
                );
                self.set(Keys::Failed { at: Instant::now() });
                None
            }
        }
    }
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
}
