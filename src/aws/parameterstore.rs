//! Parameter Store: GetParameters (decrypted) in batches of at most 10 names, all batches at
//! once. A batch never holds the same parameter twice, so every result matches exactly one
//! request even where the response's `Selector` is missing (moto leaves it empty).

use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::Parameter;
use std::time::Instant;

use tokio::sync::Semaphore;

use super::{
    AwsStore, Classified, ErrorClass, FetchError, FetchResults, FetchTarget, FetchedSecret, SecretRef,
    classify,
};
use crate::class::Arn;
use crate::metrics::Metrics;
use crate::secret::SecretBytes;

/// A returned parameter lacking its value or version.
pub(super) const MALFORMED_PARAMETER: &str =
    "malformed answer from AWS (HTTP 200): a parameter without a value or version";

/// GetParameters accepts at most this many names.
const BATCH_SIZE: usize = 10;

pub(super) async fn fetch_all(aws: &AwsStore, target: &FetchTarget, refs: &[&SecretRef]) -> FetchResults {
    if refs.is_empty() {
        return FetchResults::new();
    }
    let (limiter, metrics) = (aws.limiter.as_ref(), aws.metrics.as_ref());
    let client = aws.ssm_client(target);
    let batches = batches(refs);
    let fetches = batches.iter().map(|batch| fetch_batch(&client, limiter, metrics, &target.region, batch));
    futures::future::join_all(fetches).await.into_iter().flatten().collect()
}

/// Splits refs into batches of at most [`BATCH_SIZE`] with no parameter name twice in a batch.
fn batches<'r>(refs: &[&'r SecretRef]) -> Vec<Vec<&'r SecretRef>> {
    let mut batches: Vec<Vec<&SecretRef>> = Vec::new();
    for r in refs {
        let slot =
            batches.iter_mut().find(|b| b.len() < BATCH_SIZE && b.iter().all(|other| other.name != r.name));
        match slot {
            Some(batch) => batch.push(r),
            None => batches.push(vec![r]),
        }
    }
    batches
}

/// The name as GetParameters takes it: `name:version` or `name:label` selects a version.
fn selector_name(r: &SecretRef) -> String {
    match (&r.version, &r.version_label) {
        (Some(version), _) => format!("{}:{version}", r.name),
        (None, Some(label)) => format!("{}:{label}", r.name),
        (None, None) => r.name.clone(),
    }
}

/// Whether a returned parameter is the one requested as `requested` (a name or an ARN).
fn matches(requested: &str, parameter: &Parameter) -> bool {
    let name = parameter.name().unwrap_or_default();
    // An ARN's resource is "parameter/NAME" for "/NAME" and for "NAME" alike.
    requested == name
        || parameter.arn() == Some(requested)
        || Arn::parse(requested).is_ok_and(|arn| {
            let rest = arn.resource.strip_prefix("parameter");
            rest.is_some_and(|rest| rest.trim_start_matches('/') == name.trim_start_matches('/'))
        })
}

/// AWS treats a root-level name with and without its leading '/' as the same parameter and
/// answers with the stored spelling.
fn matches_root(requested: &str, parameter: &Parameter) -> bool {
    let name = parameter.name().unwrap_or_default();
    let root = |n: &str| !n.trim_start_matches('/').contains('/');
    root(requested) && root(name) && requested.trim_start_matches('/') == name.trim_start_matches('/')
}

async fn fetch_batch(
    client: &Client,
    limiter: &Semaphore,
    metrics: &Metrics,
    region: &str,
    batch: &[&SecretRef],
) -> Vec<(SecretRef, Result<FetchedSecret, FetchError>)> {
    let error = |r: &SecretRef, classified| FetchError::for_ref(r, region, classified);
    let fail_all = |classified: Classified| {
        batch.iter().map(|r| ((*r).clone(), Err(error(r, classified.clone())))).collect()
    };
    let Ok(_permit) = limiter.acquire().await else {
        return fail_all((ErrorClass::Server, None, "the provider is shutting down".into()));
    };
    let names: Vec<String> = batch.iter().map(|r| selector_name(r)).collect();
    let started = Instant::now();
    let sent = client.get_parameters().set_names(Some(names.clone())).with_decryption(true).send().await;
    let outcome = sent.as_ref().map_or_else(|e| classify(e).0.label(), |_| "success");
    metrics.aws_request("ssm", "GetParameters", outcome, started.elapsed());
    let output = match sent {
        Ok(output) => output,
        Err(e) => return fail_all(classify(&e)),
    };
    let invalid = output.invalid_parameters.unwrap_or_default();
    let mut parameters = output.parameters.unwrap_or_default();
    batch
        .iter()
        .zip(&names)
        .map(|(r, name)| {
            let result = if invalid.iter().any(|i| i == name || i == &r.name) {
                Err(error(r, (ErrorClass::Client, Some("ParameterNotFound".into()), "not found".into())))
            } else if let Some(i) = parameters
                .iter()
                .position(|p| matches(&r.name, p))
                .or_else(|| parameters.iter().position(|p| matches_root(&r.name, p)))
            {
                let p = parameters.swap_remove(i);
                match p.value {
                    // Versions start at 1: a parameter without a value or a version is an
                    // answer the SDK read but AWS would never give.
                    Some(value) if p.version > 0 => {
                        Ok(FetchedSecret { version: p.version.to_string(), value: SecretBytes::from(value) })
                    }
                    _ => Err(error(r, (ErrorClass::Server, None, MALFORMED_PARAMETER.into()))),
                }
            } else {
                let message = "AWS returned no parameter of this name; check the name (and its leading '/')";
                Err(error(r, (ErrorClass::Client, Some("ParameterNotFound".into()), message.into())))
            };
            ((*r).clone(), result)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::ObjectType;

    fn param(name: &str, version: Option<&str>, label: Option<&str>) -> SecretRef {
        SecretRef {
            object_type: ObjectType::SsmParameter,
            name: name.into(),
            version: version.map(str::to_owned),
            version_label: label.map(str::to_owned),
        }
    }

    #[test]
    fn batches_hold_ten_distinct_names() {
        let mut refs: Vec<SecretRef> = (0..23).map(|i| param(&format!("p{i}"), None, None)).collect();
        refs.push(param("p0", Some("1"), None));
        refs.push(param("p0", None, Some("prod")));
        let borrowed: Vec<&SecretRef> = refs.iter().collect();
        let batches = batches(&borrowed);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 4, 1]);
        for batch in &batches {
            let mut names: Vec<&str> = batch.iter().map(|r| r.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), batch.len(), "a name repeats within a batch");
        }
    }

    #[test]
    fn selectors() {
        assert_eq!(selector_name(&param("/a", None, None)), "/a");
        assert_eq!(selector_name(&param("/a", Some("3"), None)), "/a:3");
        assert_eq!(selector_name(&param("/a", None, Some("prod"))), "/a:prod");
    }

    #[test]
    fn results_match_by_name_arn_or_arn_resource() {
        let p = Parameter::builder().name("/app/db").arn("arn:aws:ssm:us-east-1:1:parameter/app/db").build();
        assert!(matches("/app/db", &p));
        assert!(matches("arn:aws:ssm:us-east-1:1:parameter/app/db", &p));
        assert!(!matches("/app/dbx", &p));
        let plain = Parameter::builder().name("plain").build();
        assert!(matches("arn:aws:ssm:us-east-1:1:parameter/plain", &plain));
        assert!(!matches("arn:aws:ssm:us-east-1:1:parameter/other", &plain));
    }
}
