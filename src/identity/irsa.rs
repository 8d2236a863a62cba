//! IAM Roles for Service Accounts: the pod's `sts.amazonaws.com` token exchanged for the
//! role's credentials with STS AssumeRoleWithWebIdentity (an unsigned call).

use std::time::SystemTime;

use aws_config::{Region, SdkConfig};
use aws_credential_types::Credentials;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::IdentityError;
use crate::aws::classify;
use crate::secret::SecretString;

/// Assumes `role_arn` with the pod's token, via STS in `region`.
pub async fn assume_role(
    sts: &SdkConfig,
    region: &str,
    role_arn: &str,
    token: &SecretString,
    session_name: &str,
) -> Result<Credentials, IdentityError> {
    let config = aws_sdk_sts::config::Builder::from(sts).region(Region::new(region.to_owned())).build();
    let output = aws_sdk_sts::Client::from_conf(config)
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name(session_name)
        .web_identity_token(token.expose())
        .send()
        .await
        .map_err(|e| sts_error(&e, role_arn, region))?;
    into_credentials(output.credentials, role_arn, region, "irsa")
}

/// An STS failure, classified, naming the role and region.
fn sts_error<E>(err: &SdkError<E, HttpResponse>, role: &str, region: &str) -> IdentityError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (class, code, message) = classify(err);
    IdentityError::Sts { role: role.to_owned(), region: region.to_owned(), class, code, message }
}

/// STS's temporary credentials as the SDK's credentials type.
fn into_credentials(
    credentials: Option<aws_sdk_sts::types::Credentials>,
    role: &str,
    region: &str,
    source: &'static str,
) -> Result<Credentials, IdentityError> {
    // The SDK reads a truncated or foreign XML answer as credentials with empty fields (or a
    // 1970 expiry) without an error: that is a malformed answer, transient like a 5xx.
    let malformed = |what: &str| IdentityError::Sts {
        role: role.to_owned(),
        region: region.to_owned(),
        class: crate::aws::ErrorClass::Server,
        code: None,
        message: format!("malformed answer from STS: {what}"),
    };
    let credentials = credentials.ok_or_else(|| malformed("no credentials"))?;
    let expiry = SystemTime::try_from(credentials.expiration).ok();
    if credentials.access_key_id.is_empty()
        || credentials.secret_access_key.is_empty()
        || credentials.session_token.is_empty()
    {
        return Err(malformed("credentials without a key, secret or session token"));
    }
    if expiry.is_none_or(|e| e <= SystemTime::now()) {
        return Err(malformed("credentials that have already expired"));
    }
    Ok(Credentials::new(
        credentials.access_key_id,
        credentials.secret_access_key,
        Some(credentials.session_token),
        expiry,
        source,
    ))
}

/// A RoleSessionName naming the pod's service account (shows in CloudTrail): at most 64 of
/// the characters STS allows.
pub fn session_name(namespace: &str, service_account: &str) -> String {
    let raw = format!("csi-provider-aws@{namespace}.{service_account}");
    raw.chars()
        .map(|c| if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) { c } else { '-' })
        .take(64)
        .collect()
}

/// Assumes `role_arn` (another account's role, typically) with credentials already held,
/// via STS AssumeRole in `region`: cross-account role chaining.
pub async fn chain_role(
    sts: &SdkConfig,
    region: &str,
    base: aws_credential_types::provider::SharedCredentialsProvider,
    role_arn: &str,
    external_id: Option<&str>,
    session_name: &str,
) -> Result<Credentials, IdentityError> {
    let config = aws_sdk_sts::config::Builder::from(sts)
        .region(Region::new(region.to_owned()))
        .credentials_provider(base)
        .build();
    let output = aws_sdk_sts::Client::from_conf(config)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(session_name)
        .set_external_id(external_id.map(str::to_owned))
        .send()
        .await
        .map_err(|e| sts_error(&e, role_arn, region))?;
    into_credentials(output.credentials, role_arn, region, "assume-role")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_an_sts_answer_did_not_really_hold_are_a_transient_malformed_answer() {
        let creds = |key: &str, secret: &str, token: &str, expires_in: i64| {
            let now = aws_smithy_types::DateTime::from(SystemTime::now()).secs();
            Some(
                aws_sdk_sts::types::Credentials::builder()
                    .access_key_id(key)
                    .secret_access_key(secret)
                    .session_token(token)
                    .expiration(aws_smithy_types::DateTime::from_secs(now + expires_in))
                    .build()
                    .unwrap(),
            )
        };
        assert!(into_credentials(creds("ASIA1", "s", "t", 3600), "r", "us-east-1", "irsa").is_ok());
        for bad in [
            None,
            creds("", "s", "t", 3600),
            creds("ASIA1", "", "t", 3600),
            creds("ASIA1", "s", "", 3600),
            creds("ASIA1", "s", "t", -10),
        ] {
            let err = into_credentials(bad, "r", "us-east-1", "irsa").unwrap_err();
            assert!(err.is_transient(), "{err}");
            assert!(err.to_string().contains("malformed answer from STS"), "{err}");
        }
    }

    #[test]
    fn session_names_are_valid_for_sts() {
        assert_eq!(session_name("shop", "web"), "csi-provider-aws@shop.web");
        let long = session_name(&"n".repeat(63), &"s".repeat(253));
        assert_eq!(long.len(), 64);
        assert_eq!(session_name("a b", "c/d"), "csi-provider-aws@a-b.c-d");
    }
}
