//! The pod's service-account tokens, as the CSI driver passes them
//! (`{"<audience>": {"token": "...", "expirationTimestamp": "..."}}`). Pure.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::IdentityError;
use crate::secret::SecretString;

/// Audience of the token exchanged with STS for IRSA.
pub const IRSA_AUDIENCE: &str = "sts.amazonaws.com";
/// Audience of the token the EKS Pod Identity agent accepts.
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";

#[derive(Deserialize)]
struct TokenEntry {
    #[serde(default)]
    token: SecretString,
}

/// The token for `audience` from the `serviceAccount.tokens` JSON.
pub fn token_for(tokens: Option<&SecretString>, audience: &str) -> Result<SecretString, IdentityError> {
    let Some(tokens) = tokens.filter(|t| !t.expose().trim().is_empty()) else {
        return Err(IdentityError::NoTokens);
    };
    // serde's messages quote the input (a token, here): describe the problem by position only.
    let mut map: BTreeMap<String, TokenEntry> = serde_json::from_str(tokens.expose()).map_err(|e| {
        let problem = match e.classify() {
            serde_json::error::Category::Data => "an entry is not {\"token\": \"...\", ...}",
            serde_json::error::Category::Eof => "it ends early",
            _ => "it is not JSON",
        };
        IdentityError::BadTokens(format!(
            "{problem} (line {}, column {}); expected {{\"<audience>\": {{\"token\": \"...\", \
             \"expirationTimestamp\": \"...\"}}}}",
            e.line(),
            e.column()
        ))
    })?;
    match map.remove(audience) {
        Some(entry) if !entry.token.expose().is_empty() => Ok(entry.token),
        _ => Err(IdentityError::NoTokenForAudience(audience.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;

    fn tokens(json: &str) -> SecretString {
        SecretString::new(json.to_owned())
    }

    #[test]
    fn picks_the_token_of_the_audience() {
        let json = r#"{"sts.amazonaws.com":{"token":"t-sts","expirationTimestamp":"2026-01-01T00:00:00Z"},
                       "pods.eks.amazonaws.com":{"token":"t-pod"}}"#;
        assert_eq!(token_for(Some(&tokens(json)), IRSA_AUDIENCE).unwrap().expose(), "t-sts");
        assert_eq!(token_for(Some(&tokens(json)), POD_IDENTITY_AUDIENCE).unwrap().expose(), "t-pod");
    }

    #[test]
    fn missing_or_bad_tokens_say_to_configure_token_requests() {
        let cases: [(Option<&str>, &str); 10] = [
            (None, "tokenRequests"),
            (Some(""), "tokenRequests"),
            (Some("{}"), "\"sts.amazonaws.com\""),
            (Some(r#"{"sts.amazonaws.com":{"token":""}}"#), "\"sts.amazonaws.com\""),
            (Some(r#"{"other":{"token":"x"}}"#), "tokenRequests"),
            (Some("not json secret-token-value"), "not the driver's JSON"),
            (Some(r#"{"sts.amazonaws.com": "secret-token-value"}"#), "is not {\"token\""),
            (
                Some(r#"{"sts.amazonaws.com": {"token": 7, "x": "secret-token-value"}}"#),
                "not the driver's JSON",
            ),
            (Some(r#"["secret-token-value"]"#), "not the driver's JSON"),
            (Some(r#"{"sts.amazonaws.com": {"token": "secret-token-value""#), "ends early"),
        ];
        for (input, want) in cases {
            let input = input.map(tokens);
            let err = token_for(input.as_ref(), IRSA_AUDIENCE).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
            assert!(!err.contains("secret-token-value"), "{err}");
        }
    }
}
