//! All of a class's objects at once: its single objects in one batch and each distinct
//! collection listed, all concurrently, in the primary region and, where the failover rule
//! allows, the failover region. Identical objects (or collections) are asked once; each
//! object's outcome is looked up by what it asked for, so nothing is matched by position,
//! and failures are collected without repeats.

use std::collections::{BTreeSet, HashMap};

use super::failover::{self, FetchFailure, FetchItem};
use super::{FetchError, FetchTarget, SecretRef, SecretStore};
use crate::class::{Collection, NamedObject, ObjectType, SecretObject, SecretProviderClass};
use crate::fetched::Fetched;

/// Fetches every object of `class`; every distinct failure when any object failed.
pub async fn fetch_class<'c>(
    store: &dyn SecretStore,
    primary: &FetchTarget,
    failover: Option<&FetchTarget>,
    class: &'c SecretProviderClass,
) -> Result<Vec<Fetched<'c>>, Vec<FetchFailure>> {
    let mut items = Vec::new();
    let mut collections = BTreeSet::new();
    for object in &class.objects {
        match object {
            SecretObject::Named(object) => items.push(fetch_item(object, class)),
            SecretObject::Collection(object) => {
                collections.insert((&object.collection, object.max_count));
            }
        }
    }
    let lists = collections.into_iter().map(|key @ (collection, max)| async move {
        (key, failover::list(store, primary, failover, collection, max).await)
    });
    let (singles, lists) =
        futures::join!(failover::fetch(store, primary, failover, &items), futures::future::join_all(lists));
    let lists: HashMap<_, _> = lists.into_iter().collect();

    let mut fetched = Vec::with_capacity(class.objects.len());
    let mut failures: Vec<FetchFailure> = Vec::new();
    for object in &class.objects {
        let outcome = match object {
            SecretObject::Named(object) => {
                let item = fetch_item(object, class);
                match singles.get(&item) {
                    Some(result) => result.clone().map(|value| Fetched::One(object, value)),
                    None => Err(missing(&item.primary.to_string(), item.primary.object_type, primary)),
                }
            }
            SecretObject::Collection(object) => match lists.get(&(&object.collection, object.max_count)) {
                Some(result) => result.clone().map(|entries| Fetched::Many(object, entries)),
                None => {
                    Err(missing(&object.collection.to_string(), collection_type(&object.collection), primary))
                }
            },
        };
        match outcome {
            Ok(object) => fetched.push(object),
            Err(failure) if !failures.contains(&failure) => failures.push(failure),
            Err(_) => {}
        }
    }
    if failures.is_empty() { Ok(fetched) } else { Err(failures) }
}

/// A result that went missing is a bug; it is reported rather than panicked on.
fn missing(what: &str, object_type: ObjectType, target: &FetchTarget) -> FetchFailure {
    FetchFailure::Primary(FetchError::missing(what, object_type, &target.region))
}

fn collection_type(collection: &Collection) -> ObjectType {
    match collection {
        Collection::ParameterPath { .. } => ObjectType::SsmParameter,
        Collection::SecretList { .. } => ObjectType::SecretsManager,
    }
}

/// What to fetch for an object, in its primary and failover regions.
fn fetch_item(object: &NamedObject, class: &SecretProviderClass) -> FetchItem {
    let primary = SecretRef {
        object_type: object.object_type,
        name: object.name.clone(),
        version: object.version.clone(),
        version_label: object.version_label.clone(),
    };
    let failover = class
        .parameters
        .failover_region
        .as_deref()
        .map(|region| SecretRef { name: object.name_in_failover(region), ..primary.clone() });
    FetchItem { primary, failover }
}
