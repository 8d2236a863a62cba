//! Service-account tokens as kubelet issues them: RS256-signed JWTs with per-pod claims
//! (own `jti`, pod name and uid), from a signing key whose JWKS the stand-in API server
//! publishes through issuer discovery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The issuer EKS gives a cluster (what `iss` holds).
pub const ISSUER: &str = "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

/// A service-account signing key.
pub struct SigningKey {
    pub kid: String,
    key: KeyPair,
}

impl SigningKey {
    pub fn generate(kid: &str) -> Self {
        Self { kid: kid.to_owned(), key: KeyPair::generate(KeySize::Rsa2048).expect("RSA key") }
    }

    /// The key as a JWK, as `/openid/v1/jwks` lists it.
    pub fn jwk(&self) -> serde_json::Value {
        let public = PublicKeyComponents::<Vec<u8>>::from(self.key.public_key());
        serde_json::json!({
            "use": "sig", "kty": "RSA", "kid": self.kid, "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e),
        })
    }

    /// Signs `claims` with this key, naming `kid` in the header.
    pub fn sign_with_kid(&self, kid: &str, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": "RS256", "kid": kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut signature)
            .expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    pub fn sign(&self, claims: &serde_json::Value) -> String {
        self.sign_with_kid(&self.kid, claims)
    }

    /// The public key, DER (RSAPublicKey), to verify signatures with.
    pub fn public_der(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }
}

/// What STS checks of a web identity token, against the keys it trusts (DER public keys):
/// the RS256 signature, the issuer, the audience and the expiry. STS's error code and
/// message when it refuses.
pub fn check(token: &str, trusted: &[Vec<u8>]) -> Result<(), (&'static str, &'static str)> {
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    let invalid = ("InvalidIdentityToken", "Couldn't verify the token's signature or claims");
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid);
    };
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid)?;
    let input = format!("{header}.{claims}");
    let signed = trusted.iter().any(|key| {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key).verify(input.as_bytes(), &signature).is_ok()
    });
    if !signed {
        return Err(invalid);
    }
    let claims: serde_json::Value =
        URL_SAFE_NO_PAD.decode(claims).ok().and_then(|c| serde_json::from_slice(&c).ok()).ok_or(invalid)?;
    let audience_ok = claims["aud"].as_array().is_some_and(|a| a.iter().any(|v| v == "sts.amazonaws.com"));
    if claims["iss"] != ISSUER || !audience_ok {
        return Err(invalid);
    }
    if claims["exp"].as_u64().is_none_or(|exp| exp <= now()) {
        return Err(("ExpiredTokenException", "Token expired"));
    }
    Ok(())
}

/// The JWKS document of `keys`.
pub fn jwks(keys: &[&SigningKey]) -> String {
    serde_json::json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

/// The discovery document of [`ISSUER`].
pub fn openid_configuration() -> String {
    serde_json::json!({
        "issuer": ISSUER,
        "jwks_uri": format!("{ISSUER}/keys"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    })
    .to_string()
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The claims kubelet puts in a pod's projected token for `audience`.
pub fn pod_claims(audience: &str, namespace: &str, service_account: &str, pod: &str) -> serde_json::Value {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let now = now();
    serde_json::json!({
        "aud": [audience],
        "exp": now + 86_400,
        "iat": now,
        "nbf": now,
        "iss": ISSUER,
        "jti": format!("6d1c4b1e-{n:04x}-4a9f-9d43-{:012x}", now),
        "kubernetes.io": {
            "namespace": namespace,
            "node": {"name": "ip-10-0-1-23.ec2.internal", "uid": "5f0d6a0e-1b8c-4c77-8c8b-0d8e8d2e6a01"},
            "pod": {"name": pod, "uid": format!("0b1e6a9c-9d0d-4d53-a0f6-{n:012x}")},
            "serviceaccount": {"name": service_account, "uid": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"},
        },
        "sub": format!("system:serviceaccount:{namespace}:{service_account}"),
    })
}

/// The driver's `serviceAccount.tokens` JSON for one pod: an IRSA and a Pod Identity token.
pub fn pod_tokens(key: &SigningKey, namespace: &str, service_account: &str, pod: &str) -> String {
    let sts = key.sign(&pod_claims("sts.amazonaws.com", namespace, service_account, pod));
    let eks = key.sign(&pod_claims("pods.eks.amazonaws.com", namespace, service_account, pod));
    tokens_of(&sts, &eks)
}

/// `serviceAccount.tokens` JSON holding these two tokens.
pub fn tokens_of(sts: &str, eks: &str) -> String {
    serde_json::json!({
        "sts.amazonaws.com": {"token": sts, "expirationTimestamp": "2099-01-01T00:00:00Z"},
        "pods.eks.amazonaws.com": {"token": eks, "expirationTimestamp": "2099-01-01T00:00:00Z"},
    })
    .to_string()
}
