//! The AWS identity a mount fetches with.

use aws_credential_types::provider::SharedCredentialsProvider;
use futures::future::BoxFuture;

use crate::class::AuthMethod;
use crate::request::Pod;

/// Why no credentials could be had for a pod; names the pod's objects, never tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("no AWS credentials are available to the provider: {0}")]
    NoCredentials(String),
}

/// Produces the credentials a pod's mount uses.
pub trait CredentialSource: Send + Sync {
    fn credentials<'a>(
        &'a self,
        pod: &'a Pod,
        auth: AuthMethod,
        region: &'a str,
    ) -> BoxFuture<'a, Result<SharedCredentialsProvider, IdentityError>>;
}

/// The provider's own credentials (the SDK's default chain), whatever the pod.
pub struct ProviderCredentials(pub Option<SharedCredentialsProvider>);

impl CredentialSource for ProviderCredentials {
    fn credentials<'a>(
        &'a self,
        _pod: &'a Pod,
        _auth: AuthMethod,
        _region: &'a str,
    ) -> BoxFuture<'a, Result<SharedCredentialsProvider, IdentityError>> {
        let result = self.0.clone().ok_or_else(|| {
            IdentityError::NoCredentials("the SDK's default credential chain found none".into())
        });
        Box::pin(async move { result })
    }
}
