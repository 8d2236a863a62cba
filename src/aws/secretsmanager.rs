//! Secrets Manager: one GetSecretValue per secret, all of a mount's secrets at once.
//! (BatchGetSecretValue cannot select versions and needs an extra IAM permission that
//! ASCP's users do not grant, so concurrency is how a mount costs one round trip.)

use aws_sdk_secretsmanager::Client;
use std::time::Instant;

use tokio::sync::Semaphore;

use super::{AwsStore, FetchError, FetchResults, FetchTarget, FetchedSecret, SecretRef, classify};
use crate::secret::SecretBytes;

pub(super) async fn fetch_all(aws: &AwsStore, target: &FetchTarget, refs: &[&SecretRef]) -> FetchResults {
    if refs.is_empty() {
        return FetchResults::new();
    }
    let (limiter, metrics) = (aws.limiter.as_ref(), aws.metrics.as_ref());
    let client = aws.secretsmanager_client(target);
    let fetches = refs.iter().map(|r| {
        let client = &client;
        async move {
            let started = Instant::now();
            let result = fetch_one(client, limiter, &target.region, r).await;
            let outcome = result.as_ref().map_or_else(|e| e.class.label(), |_| "success");
            metrics.aws_request("secretsmanager", "GetSecretValue", outcome, started.elapsed());
            ((*r).clone(), result)
        }
    });
    futures::future::join_all(fetches).await.into_iter().collect()
}

async fn fetch_one(
    client: &Client,
    limiter: &Semaphore,
    region: &str,
    secret: &SecretRef,
) -> Result<FetchedSecret, FetchError> {
    let error = |classified| FetchError::for_ref(secret, region, classified);
    let _permit = limiter
        .acquire()
        .await
        .map_err(|_| error((super::ErrorClass::Server, None, "the provider is shutting down".into())))?;
    let output = client
        .get_secret_value()
        .secret_id(&secret.name)
        .set_version_id(secret.version.clone())
        .set_version_stage(secret.version_label.clone())
        .send()
        .await
        .map_err(|e| error(classify(&e)))?;
    let version = output.version_id().unwrap_or_default().to_owned();
    let value = match (output.secret_string, output.secret_binary) {
        (Some(text), _) => SecretBytes::from(text),
        (None, Some(blob)) => SecretBytes::new(blob.into_inner()),
        (None, None) => {
            let message = "malformed answer from AWS (HTTP 200): neither SecretString nor SecretBinary";
            return Err(error((super::ErrorClass::Server, None, message.into())));
        }
    };
    Ok(FetchedSecret { value, version })
}
