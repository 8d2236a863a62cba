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
