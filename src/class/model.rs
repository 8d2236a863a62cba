//! The object model: what a validated class asks for. A single object and a collection are
//! different things, so they are different variants, each with only the fields it has.

use std::fmt;
use std::sync::Arc;

use super::arn::Arn;
use super::encoding::Encoding;

/// Which AWS service holds an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    SecretsManager,
    SsmParameter,
}

impl ObjectType {
    /// Parses `objectType`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "secretsmanager" => Some(Self::SecretsManager),
            "ssmparameter" => Some(Self::SsmParameter),
            _ => None,
        }
    }

    /// Parses an ARN's service; `ssm` (the real service name) means Parameter Store.
    pub fn from_arn_service(service: &str) -> Option<Self> {
        match service {
            "ssm" => Some(Self::SsmParameter),
            other => Self::parse(other),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecretsManager => "secretsmanager",
            Self::SsmParameter => "ssmparameter",
        }
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validated entry of `objects`.
// A class holds a few hundred of these at most, built once per mount: boxing the larger
// variant would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SecretObject {
    /// One secret or parameter, named by `objectName`.
    Named(NamedObject),
    /// A set of entries (`path`, `tags`; beyond ASCP), a file for each.
    Collection(CollectionObject),
}

impl SecretObject {
    /// Every file known before fetching, with its mode (collections and expanded JSON add
    /// files named after what is fetched).
    pub fn files(&self) -> impl Iterator<Item = (&str, u32)> {
        let named = match self {
            Self::Named(object) => Some(object),
            Self::Collection(_) => None,
        };
        named.into_iter().flat_map(|object| {
            std::iter::once((object.file.as_str(), object.mode))
                .chain(object.jmes_path.iter().map(|j| (j.file.as_str(), j.mode)))
        })
    }

    /// The object type: declared, or the ARN's.
    pub fn object_type(&self) -> ObjectType {
        match self {
            Self::Named(object) => object.object_type,
            Self::Collection(object) => object.collection.object_type(),
        }
    }
}

/// One secret or parameter.
#[derive(Debug, Clone)]
pub struct NamedObject {
    /// `objectName` as written: a name or an ARN.
    pub name: String,
    pub object_type: ObjectType,
    /// Set when `objectName` is an ARN.
    pub arn: Option<Arn>,
    /// Secrets Manager VersionId or Parameter Store version number.
    pub version: Option<String>,
    /// Secrets Manager VersionStage or Parameter Store label.
    pub version_label: Option<String>,
    /// File path relative to the target directory.
    pub file: String,
    pub mode: u32,
    pub jmes_path: Vec<JmesPathEntry>,
    /// `failoverObject.objectName`: the name to use in the failover region.
    pub failover_name: Option<String>,
    /// How the object's own file is decoded (`encoding`).
    pub encoding: Encoding,
    /// `expandJson`: a file per top-level key.
    pub expand_json: Option<ExpandJson>,
}

impl NamedObject {
    /// The name to fetch in the failover region: `failoverObject.objectName`, else the same
    /// name (an ARN moved to the failover region, as replicated secrets are named).
    pub fn name_in_failover(&self, failover_region: &str) -> String {
        match (&self.failover_name, &self.arn) {
            (Some(name), _) => name.clone(),
            (None, Some(arn)) => arn.in_region(failover_region).to_string(),
            (None, None) => self.name.clone(),
        }
    }
}

/// Default and ceiling of `maxCount` for collections.
pub const DEFAULT_MAX_COUNT: usize = 100;
pub const MAX_MAX_COUNT: usize = 1000;

/// A set of entries, each mounted as a file named after it.
#[derive(Debug, Clone)]
pub struct CollectionObject {
    pub collection: Collection,
    pub mode: u32,
    /// Most entries the set may have (`maxCount`); more fail the mount.
    pub max_count: usize,
    pub encoding: Encoding,
}

/// What a collection names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    /// Every Parameter Store parameter under `path` (all levels when `recursive`).
    ParameterPath { path: String, recursive: bool },
    /// Every Secrets Manager secret whose name starts with `prefix` and has all `tags`.
    SecretList { prefix: Option<String>, tags: Vec<(String, String)> },
}

impl Collection {
    /// The entry's name relative to the collection, which becomes its file name.
    pub fn relative<'a>(&self, name: &'a str) -> &'a str {
        let prefix = match self {
            Self::ParameterPath { path, .. } => Some(path.as_str()),
            Self::SecretList { prefix, .. } => prefix.as_deref(),
        };
        let rest = prefix.and_then(|p| name.strip_prefix(p)).unwrap_or(name);
        rest.trim_start_matches('/')
    }

    pub fn object_type(&self) -> ObjectType {
        match self {
            Self::ParameterPath { .. } => ObjectType::SsmParameter,
            Self::SecretList { .. } => ObjectType::SecretsManager,
        }
    }
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ParameterPath { path, recursive } => {
                write!(f, "parameters under {path:?}{}", if *recursive { " (recursive)" } else { "" })
            }
            Self::SecretList { prefix, tags } => {
                f.write_str("secrets")?;
                if let Some(prefix) = prefix {
                    write!(f, " named {prefix:?}*")?;
                }
                for (k, v) in tags {
                    write!(f, " tagged {k}={v}")?;
                }
                Ok(())
            }
        }
    }
}

/// One file a jmesPath expression extracts from a JSON secret.
#[derive(Debug, Clone)]
pub struct JmesPathEntry {
    pub path: String,
    pub expression: Arc<jmespath::Expression<'static>>,
    /// File path relative to the target directory.
    pub file: String,
    pub mode: u32,
    /// How the extracted string is decoded before it is written.
    pub encoding: Encoding,
    /// Render numbers, booleans, objects and arrays as JSON instead of failing (opt-in).
    pub allow_non_string: bool,
}

/// `expandJson`: one file per top-level key of a JSON secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandJson {
    /// Only these keys (each must exist); all keys when `None`.
    pub keys: Option<Vec<String>>,
}
