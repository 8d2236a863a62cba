//! What the aws stage hands to render: each object of a class with the value fetched for
//! it. Below both, so that render reads values without knowing where they came from.

use crate::class::{CollectionObject, NamedObject};
use crate::secret::SecretBytes;

/// A fetched value with the version AWS reported for it.
#[derive(Clone, Debug)]
pub struct FetchedSecret {
    pub value: SecretBytes,
    /// Secrets Manager VersionId or Parameter Store version number.
    pub version: String,
}

/// A collection's entries (a path or tag listing): each name relative to the collection, with
/// its value, sorted by name.
pub type Entries = Vec<(String, FetchedSecret)>;

/// A requested object with what was fetched for it.
#[derive(Debug, Clone)]
pub enum Fetched<'c> {
    One(&'c NamedObject, FetchedSecret),
    Many(&'c CollectionObject, Entries),
}
