//! Objects that name a set (beyond ASCP): every Parameter Store parameter under a path
//! (GetParametersByPath, paginated), or every Secrets Manager secret with a name prefix
//! and/or tags (ListSecrets, paginated, then GetSecretValue for each, concurrently). Bounded
//! by the object's `maxCount`; entries come back sorted by name.

use std::time::Instant;

use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};

use super::{
    AwsStore, Classified, Entries, ErrorClass, FetchError, FetchTarget, FetchedSecret, SecretRef, classify,
};
use crate::class::{Collection, ObjectType};
use crate::secret::SecretBytes;

pub(super) async fn list(
    aws: &AwsStore,
    target: &FetchTarget,
    collection: &Collection,
    max: usize,
) -> Result<Entries, FetchError> {
    let (limiter, metrics) = (aws.limiter.as_ref(), aws.metrics.as_ref());
    let error = |(class, code, message): Classified| FetchError {
        what: collection.to_string(),
        object_type: collection.object_type(),
        region: target.region.clone(),
        class,
        code,
        message,
    };
    let shutting_down = |_| error((ErrorClass::Server, None, "shutting down".into()));
    let too_many = || {
        let message = format!(
            "more than maxCount ({max}) entries match; raise maxCount (up to 1000) or narrow the path"
        );
        error((ErrorClass::Client, None, message))
    };
    let mut entries = match collection {
        Collection::ParameterPath { path, recursive } => {
            let client = aws.ssm_client(target);
            let mut pages = client
                .get_parameters_by_path()
                .path(path)
                .recursive(*recursive)
                .with_decryption(true)
                .max_results(10)
                .into_paginator()
                .send();
            let mut entries = Entries::new();
            loop {
                let _permit = limiter.acquire().await.map_err(shutting_down)?;
                let started = Instant::now();
                let Some(page) = pages.next().await else { break };
                let outcome = page.as_ref().map_or_else(|e| classify(e).0.label(), |_| "success");
                metrics.aws_request("ssm", "GetParametersByPath", outcome, started.elapsed());
                let page = page.map_err(|e| error(classify(&e)))?;
                for parameter in page.parameters.unwrap_or_default() {
                    let (Some(name), Some(value)) = (parameter.name, parameter.value) else {
                        let message = super::parameterstore::MALFORMED_PARAMETER.into();
                        return Err(error((ErrorClass::Server, None, message)));
                    };
                    let version = parameter.version.to_string();
                    entries.push((name, FetchedSecret { value: SecretBytes::from(value), version }));
                }
                if entries.len() > max {
                    return Err(too_many());
                }
            }
            entries
        }
        Collection::SecretList { prefix, tags } => {
            let client = aws.secretsmanager_client(target);
            let mut filters = Vec::new();
            if let Some(prefix) = prefix {
                filters.push(Filter::builder().key(FilterNameStringType::Name).values(prefix).build());
            }
            for (key, value) in tags {
                filters.push(Filter::builder().key(FilterNameStringType::TagKey).values(key).build());
                filters.push(Filter::builder().key(FilterNameStringType::TagValue).values(value).build());
            }
            let mut pages =
                client.list_secrets().set_filters(Some(filters)).max_results(100).into_paginator().send();
            let mut refs = Vec::new();
            loop {
                let started = Instant::now();
                let page = {
                    let _permit = limiter.acquire().await.map_err(shutting_down)?;
                    pages.next().await
                };
                let Some(page) = page else { break };
                let outcome = page.as_ref().map_or_else(|e| classify(e).0.label(), |_| "success");
                metrics.aws_request("secretsmanager", "ListSecrets", outcome, started.elapsed());
                let page = page.map_err(|e| error(classify(&e)))?;
                for entry in page.secret_list.unwrap_or_default() {
                    let name = entry.name.clone().unwrap_or_default();
                    // AWS filters match loosely (prefix words, any tag key/value): be exact.
                    let has_prefix = prefix.as_deref().is_none_or(|p| name.starts_with(p));
                    let secret_tags = entry.tags.unwrap_or_default();
                    let has_tags = tags.iter().all(|(k, v)| {
                        secret_tags
                            .iter()
                            .any(|t| t.key.as_deref() == Some(k) && t.value.as_deref() == Some(v))
                    });
                    if has_prefix && has_tags && entry.deleted_date.is_none() {
                        let object_type = ObjectType::SecretsManager;
                        refs.push(SecretRef { object_type, name, version: None, version_label: None });
                    }
                }
                if refs.len() > max {
                    return Err(too_many());
                }
            }
            let borrowed: Vec<&SecretRef> = refs.iter().collect();
            let mut fetched = super::secretsmanager::fetch_all(aws, target, &borrowed).await;
            let mut entries = Entries::new();
            for r in refs {
                match fetched.remove(&r) {
                    Some(Ok(value)) => entries.push((r.name, value)),
                    Some(Err(e)) if e.code.as_deref() != Some("ResourceNotFoundException") => return Err(e),
                    // Deleted between listing and fetching: not part of the set any more.
                    _ => {}
                }
            }
            entries
        }
    };
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}
