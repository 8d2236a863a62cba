//! IAM Roles for Service Accounts: the pod's `sts.amazonaws.com` token exchanged for the
//! role's credentials with STS AssumeRoleWithWebIdentity (an unsigned call).

use std::time::SystemTime;

use aws_config::{Region, SdkConfig};
use aws_credential_types::Credentials;

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
    let client = aws_sdk_sts::Client::from_conf(config);
    let output = client
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name(session_name)
        .web_identity_token(token.expose())
        .send()
        .await
        .map_err(|e| {
            let (class, code, message) = classify(&e);
            IdentityError::Sts { role: role_arn.to_owned(), region: region.to_owned(), class, code, message }
        })?;
    let credentials = output.credentials.ok_or_else(|| IdentityError::Sts {
        role: role_arn.to_owned(),
        region: region.to_owned(),
        class: crate::aws::ErrorClass::Server,
        code: None,
        message: "STS returned no credentials".into(),
    })?;
    let expiry = SystemTime::try_from(credentials.expiration).ok();
    Ok(Credentials::new(
        credentials.access_key_id,
        credentials.secret_access_key,
        Some(credentials.session_token),
        expiry,
        "irsa",
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
    let client = aws_sdk_sts::Client::from_conf(config);
    let output = client
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(session_name)
        .set_external_id(external_id.map(str::to_owned))
        .send()
        .await
        .map_err(|e| {
            let (class, code, message) = classify(&e);
            IdentityError::Sts { role: role_arn.to_owned(), region: region.to_owned(), class, code, message }
        })?;
    let credentials = output.credentials.ok_or_else(|| IdentityError::Sts {
        role: role_arn.to_owned(),
        region: region.to_owned(),
        class: crate::aws::ErrorClass::Server,
        code: None,
        message: "STS returned no credentials".into(),
    })?;
    let expiry = SystemTime::try_from(credentials.expiration).ok();
    Ok(Credentials::new(
        credentials.access_key_id,
        credentials.secret_access_key,
        Some(credentials.session_token),
        expiry,
        "assume-role",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_valid_for_sts() {
        assert_eq!(session_name("shop", "web"), "csi-provider-aws@shop.web");
        let long = session_name(&"n".repeat(63), &"s".repeat(253));
        assert_eq!(long.len(), 64);
        assert_eq!(session_name("a b", "c/d"), "csi-provider-aws@a-b.c-d");
    }
}
