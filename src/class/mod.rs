//! SecretProviderClass: the `spec.parameters` of a class and its `objects`, parsed into typed
//! values and validated before any AWS call. Pure: no I/O, every problem collected at once.

pub mod arn;
pub mod naming;
mod raw;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

pub use arn::Arn;
pub use naming::PathTranslation;
use raw::{RawFailover, RawObject};

/// The SecretProviderClass parameters this provider reads, as strings, as the driver passes
/// them in the Mount attributes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Parameters {
    #[serde(default)]
    pub objects: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default, rename = "failoverRegion")]
    pub failover_region: Option<String>,
    #[serde(default, rename = "pathTranslation")]
    pub path_translation: Option<String>,
    #[serde(default, rename = "usePodIdentity")]
    pub use_pod_identity: Option<String>,
    #[serde(default, rename = "preferredAddressType")]
    pub preferred_address_type: Option<String>,
    /// Beyond ASCP: a role to assume with the pod's credentials before fetching.
    #[serde(default, rename = "assumeRoleArn")]
    pub assume_role_arn: Option<String>,
    #[serde(default, rename = "assumeRoleExternalId")]
    pub assume_role_external_id: Option<String>,
}

/// `assumeRoleArn` (+ `assumeRoleExternalId`): cross-account role chaining.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AssumeRole {
    pub role_arn: String,
    pub external_id: Option<String>,
}

/// Which AWS service holds an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    SecretsManager,
    SsmParameter,
}

impl ObjectType {
    /// Parses `objectType`.
    fn parse(value: &str) -> Option<Self> {
        match value {
            "secretsmanager" => Some(Self::SecretsManager),
            "ssmparameter" => Some(Self::SsmParameter),
            _ => None,
        }
    }

    /// Parses an ARN's service; `ssm` (the real service name) means Parameter Store.
    fn from_arn_service(service: &str) -> Option<Self> {
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

/// How the pod's AWS credentials are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// IAM Roles for Service Accounts (the default).
    Irsa,
    /// EKS Pod Identity, reaching the agent over the preferred address family.
    PodIdentity(AddressPreference),
}

/// `preferredAddressType` for the Pod Identity agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AddressPreference {
    /// IPv4 first, then IPv6.
    #[default]
    Auto,
    Ipv4,
    Ipv6,
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

/// How a value is decoded before it is written (`encoding`). ASCP writes values as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// As stored.
    #[default]
    Raw,
    /// Base64 (standard or URL-safe alphabet, padding optional, whitespace ignored).
    Base64,
    /// Hexadecimal digits (whitespace ignored).
    Hex,
    /// As stored, but the value must be valid UTF-8 text.
    Utf8,
}

impl Encoding {
    fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "base64" => Some(Self::Base64),
            "hex" => Some(Self::Hex),
            "utf-8" | "utf8" => Some(Self::Utf8),
            "none" | "raw" | "" => Some(Self::Raw),
            _ => None,
        }
    }

    /// Decodes `bytes`; the error says what is wrong, never the value.
    pub fn decode(self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        let compact = || bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect::<Vec<u8>>();
        match self {
            Self::Raw => Ok(bytes.to_vec()),
            Self::Utf8 => match std::str::from_utf8(bytes) {
                Ok(_) => Ok(bytes.to_vec()),
                Err(e) => Err(format!("the value is not valid UTF-8 (at byte {})", e.valid_up_to())),
            },
            Self::Base64 => {
                let text = compact();
                let engines = [
                    base64::engine::general_purpose::STANDARD,
                    base64::engine::general_purpose::STANDARD_NO_PAD,
                    base64::engine::general_purpose::URL_SAFE,
                    base64::engine::general_purpose::URL_SAFE_NO_PAD,
                ];
                engines
                    .iter()
                    .find_map(|engine| engine.decode(&text).ok())
                    .ok_or_else(|| "the value is not valid base64".to_owned())
            }
            Self::Hex => {
                let text = compact();
                if text.len() % 2 != 0 {
                    return Err("the value is not valid hex (odd number of digits)".into());
                }
                text.chunks(2)
                    .map(|pair| {
                        std::str::from_utf8(pair)
                            .ok()
                            .and_then(|p| u8::from_str_radix(p, 16).ok())
                            .ok_or_else(|| "the value is not valid hex".to_owned())
                    })
                    .collect()
            }
        }
    }
}

/// Objects that name a set of entries instead of one (`path`, `tags`): each entry becomes a
/// file named after it.
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

/// `expandJson`: one file per top-level key of a JSON secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandJson {
    /// Only these keys (each must exist); all keys when `None`.
    pub keys: Option<Vec<String>>,
}

/// Default and ceiling of `maxCount` for path objects.
pub const DEFAULT_MAX_COUNT: usize = 100;
pub const MAX_MAX_COUNT: usize = 1000;

/// One validated object of the class.
#[derive(Debug, Clone)]
pub struct SecretObject {
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
    /// Set for objects naming a set of entries (`path`, `tags`).
    pub collection: Option<Collection>,
    /// Most entries a collection may have (`maxCount`).
    pub max_count: usize,
    /// How the object's own file is decoded (`encoding`).
    pub encoding: Encoding,
    /// `expandJson`: a file per top-level key.
    pub expand_json: Option<ExpandJson>,
}

impl SecretObject {
    /// The name to fetch in the failover region: `failoverObject.objectName`, else the same
    /// name (an ARN moved to the failover region, as replicated secrets are named).
    pub fn name_in_failover(&self, failover_region: &str) -> String {
        match (&self.failover_name, &self.arn) {
            (Some(name), _) => name.clone(),
            (None, Some(arn)) => arn.in_region(failover_region).to_string(),
            (None, None) => self.name.clone(),
        }
    }

    /// Every file this object is known to produce before fetching, with its mode
    /// (collections and expanded JSON add files named after what is fetched).
    pub fn files(&self) -> impl Iterator<Item = (&str, u32)> {
        let main = self.collection.is_none().then_some((self.file.as_str(), self.mode));
        main.into_iter().chain(self.jmes_path.iter().map(|j| (j.file.as_str(), j.mode)))
    }
}

/// A validated SecretProviderClass.
#[derive(Debug, Clone)]
pub struct SecretProviderClass {
    pub region: Option<String>,
    pub failover_region: Option<String>,
    pub path_translation: PathTranslation,
    pub auth: AuthMethod,
    /// A role assumed with the pod's credentials before fetching.
    pub assume_role: Option<AssumeRole>,
    pub objects: Vec<SecretObject>,
    /// Oddities that do not stop a mount (unknown keys, ignored by ASCP too).
    pub warnings: Vec<String>,
}

/// Everything wrong with a SecretProviderClass, each problem naming its object and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SecretProviderClass: {}", .problems.join("; "))]
pub struct ClassError {
    pub problems: Vec<String>,
}

impl ClassError {
    fn from_problems(mut problems: Vec<String>) -> Result<(), Self> {
        let mut seen = std::collections::HashSet::new();
        problems.retain(|p| seen.insert(p.clone()));
        if problems.is_empty() { Ok(()) } else { Err(Self { problems }) }
    }
}

impl SecretProviderClass {
    /// Parses and validates the parameters; `default_mode` is the driver's `permission`.
    /// Region-dependent rules wait for [`SecretProviderClass::check_regions`], because the
    /// region may come from the provider's environment or the pod's node.
    pub fn parse(params: &Parameters, default_mode: u32) -> Result<Self, ClassError> {
        let mut problems = Vec::new();

        let path_translation =
            PathTranslation::parse(params.path_translation.as_deref()).unwrap_or_else(|e| {
                problems.push(e);
                PathTranslation::default()
            });
        let region = non_empty(&params.region);
        let failover_region = non_empty(&params.failover_region);
        for (key, value) in [("region", &region), ("failoverRegion", &failover_region)] {
            if let Some(value) = value
                && let Err(e) = check_region_name(value)
            {
                problems.push(format!("{key}: {e}"));
            }
        }
        if let (Some(primary), Some(failover)) = (&region, &failover_region)
            && primary == failover
        {
            problems.push(format!(
                "failoverRegion {failover:?} is the same as region: set it to a different \
                     region or remove it"
            ));
        }
        let auth = parse_auth(params).unwrap_or_else(|e| {
            problems.push(e);
            AuthMethod::Irsa
        });

        let assume_role = non_empty(&params.assume_role_arn)
            .map(|role_arn| AssumeRole { role_arn, external_id: non_empty(&params.assume_role_external_id) });
        if let Some(role) = &assume_role {
            let valid = Arn::parse(&role.role_arn)
                .is_ok_and(|arn| arn.service == "iam" && arn.resource.starts_with("role/"));
            if !valid {
                problems.push(format!(
                    "assumeRoleArn {:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
                    role.role_arn
                ));
            }
        } else if non_empty(&params.assume_role_external_id).is_some() {
            problems.push("assumeRoleExternalId is set without assumeRoleArn".into());
        }

        let raw = raw::parse_objects(params.objects.as_deref().unwrap_or(""));
        problems.extend(raw.problems);
        let objects: Vec<SecretObject> = raw
            .objects
            .iter()
            .enumerate()
            .filter_map(|(index, raw)| {
                let check = ObjectCheck { index, path_translation, default_mode, region: region.as_deref() };
                check.validate(raw, failover_region.is_some()).map_err(|e| problems.extend(e)).ok()
            })
            .collect();
        problems.extend(file_conflicts(&objects));
        if let Some(primary) = &region {
            problems.extend(region_problems(&objects, failover_region.as_deref(), primary));
        }

        ClassError::from_problems(problems)?;
        Ok(Self {
            region,
            failover_region,
            path_translation,
            auth,
            assume_role,
            objects,
            warnings: raw.warnings,
        })
    }

    /// Checks the rules that need the resolved primary region: ARNs must name the region
    /// they are fetched from, and the failover region must differ from it.
    pub fn check_regions(&self, primary: &str) -> Result<(), ClassError> {
        let mut problems = Vec::new();
        if self.failover_region.as_deref() == Some(primary) {
            problems.push(format!(
                "failoverRegion {primary:?} is the same as the primary region: set it to a \
                 different region or remove it"
            ));
        }
        problems.extend(region_problems(&self.objects, self.failover_region.as_deref(), primary));
        ClassError::from_problems(problems)
    }

    /// Every file the class produces, in order, with its mode.
    pub fn files(&self) -> impl Iterator<Item = (&str, u32)> {
        self.objects.iter().flat_map(SecretObject::files)
    }
}

/// ARNs must name the region they are fetched from.
fn region_problems(objects: &[SecretObject], failover: Option<&str>, primary: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for object in objects {
        if let Some(arn) = &object.arn
            && arn.region != primary
        {
            problems.push(format!("object {:?}: {}", object.name, arn_region_problem(&arn.region, primary)));
        }
        let failover_arn =
            object.failover_name.as_deref().filter(|n| Arn::looks_like(n)).and_then(|n| Arn::parse(n).ok());
        if let (Some(failover), Some(arn)) = (failover, failover_arn)
            && arn.region != failover
        {
            problems.push(format!(
                "object {:?}: failoverObject ARN region {:?} does not match failoverRegion \
                     {failover:?}",
                object.name, arn.region
            ));
        }
    }
    problems
}

fn arn_region_problem(arn_region: &str, primary: &str) -> String {
    format!(
        "the ARN's region {arn_region:?} does not match the mount's region {primary:?}; set the \
         SecretProviderClass region to {arn_region:?} or use the ARN of the secret in {primary:?}"
    )
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// Region names end up in endpoint host names: allow only what AWS uses.
pub fn check_region_name(region: &str) -> Result<(), String> {
    let valid = !region.is_empty()
        && region.len() <= 32
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid { Ok(()) } else { Err(format!("{region:?} is not an AWS region name (such as \"us-east-1\")")) }
}

/// Parses a boolean the way Go's `strconv.ParseBool` does, as ASCP reads `usePodIdentity`.
pub fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn parse_auth(params: &Parameters) -> Result<AuthMethod, String> {
    let use_pod_identity = match params.use_pod_identity.as_deref().map(str::trim) {
        None | Some("") => false,
        Some(value) => parse_go_bool(value)
            .ok_or_else(|| format!("usePodIdentity {value:?} is not a boolean: use \"true\" or \"false\""))?,
    };
    let preference = match params.preferred_address_type.as_deref().map(str::trim) {
        None | Some("") => AddressPreference::Auto,
        Some(v) if v.eq_ignore_ascii_case("auto") => AddressPreference::Auto,
        Some(v) if v.eq_ignore_ascii_case("ipv4") => AddressPreference::Ipv4,
        Some(v) if v.eq_ignore_ascii_case("ipv6") => AddressPreference::Ipv6,
        Some(v) => {
            return Err(format!("preferredAddressType {v:?} is invalid: use \"ipv4\", \"ipv6\" or \"auto\""));
        }
    };
    Ok(if use_pod_identity { AuthMethod::PodIdentity(preference) } else { AuthMethod::Irsa })
}

/// Parses a `filePermission`: four octal digits such as "0600", at most 0777.
pub fn parse_file_permission(value: &str) -> Result<u32, String> {
    let valid = value.len() == 4 && value.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(value, 8) {
        Ok(mode) if valid && mode <= 0o777 => Ok(mode),
        _ => Err(format!(
            "filePermission {value:?} is invalid: use four octal digits from \"0000\" to \
             \"0777\", quoted in YAML (for example \"0600\")"
        )),
    }
}

fn parse_encoding(value: Option<&str>) -> Result<Encoding, String> {
    match value.map(str::trim) {
        None => Ok(Encoding::Raw),
        Some(v) => Encoding::parse(v)
            .ok_or_else(|| format!("encoding {v:?} is unknown: use \"base64\", \"hex\" or \"utf-8\"")),
    }
}

fn parse_expand_json(raw: &RawObject) -> Result<Option<ExpandJson>, String> {
    let enabled = match raw.expand_json.as_deref().map(str::trim) {
        None | Some("") => raw.expand_json_keys.is_some(),
        Some(v) => parse_go_bool(v).ok_or_else(|| format!("expandJson {v:?} is not a boolean"))?,
    };
    if !enabled {
        return Ok(None);
    }
    if let Some(keys) = &raw.expand_json_keys
        && (keys.is_empty() || keys.iter().any(|k| k.is_empty()))
    {
        return Err("expandJsonKeys must list non-empty key names".into());
    }
    Ok(Some(ExpandJson { keys: raw.expand_json_keys.clone() }))
}

/// Validates one raw object in the context of the class.
struct ObjectCheck<'r> {
    index: usize,
    path_translation: PathTranslation,
    default_mode: u32,
    /// The class's `region`, when it names one: ARNs are checked against it right away, so
    /// that one run reports every problem.
    region: Option<&'r str>,
}

impl ObjectCheck<'_> {
    fn validate(&self, raw: &RawObject, has_failover_region: bool) -> Result<SecretObject, Vec<String>> {
        if raw.path.is_some() || (!raw.tags.is_empty() && raw.object_name.is_none()) {
            return self.validate_collection(raw);
        }
        let Some(name) = raw.object_name.clone().filter(|n| !n.trim().is_empty()) else {
            return Err(vec![format!(
                "objects[{}]: objectName is missing; set it to the secret's name or ARN",
                self.index
            )]);
        };
        let mut problems = Vec::new();
        let mut problem = |message: String| problems.push(format!("object {name:?}: {message}"));

        let arn = if Arn::looks_like(&name) { Arn::parse(&name).map_err(&mut problem).ok() } else { None };
        if let (Some(arn), Some(primary)) = (&arn, self.region)
            && arn.region != primary
        {
            problem(arn_region_problem(&arn.region, primary));
        }
        let object_type = self.object_type(raw, arn.as_ref()).map_err(&mut problem).ok();

        // An empty filePermission means "unset", as in ASCP.
        let mode = match non_empty(&raw.file_permission) {
            Some(p) => parse_file_permission(&p).map_err(&mut problem).unwrap_or(self.default_mode),
            None => self.default_mode,
        };
        let version = non_empty(&raw.object_version);
        let version_label = non_empty(&raw.object_version_label);
        if object_type == Some(ObjectType::SsmParameter) {
            if version.is_some() && version_label.is_some() {
                problem(
                    "a Parameter Store object may set objectVersion or objectVersionLabel, not \
                     both"
                        .into(),
                );
            }
            if let Some(v) = &version
                && (!v.bytes().all(|b| b.is_ascii_digit()) || v.starts_with('0'))
            {
                problem(format!("objectVersion {v:?} is not a Parameter Store version number (1, 2, ...)"));
            }
        }

        let file = self.file_path(raw.object_alias.as_deref().unwrap_or(&name), &mut problem);
        let jmes_path = raw
            .jmes_path
            .iter()
            .enumerate()
            .filter_map(|(i, entry)| self.jmes_entry(i, entry, mode, &mut problem))
            .collect();
        let failover_name = raw.failover_object.as_ref().and_then(|failover| {
            self.failover(raw, failover, object_type, has_failover_region, &mut problem)
        });
        let encoding = parse_encoding(raw.encoding.as_deref()).map_err(&mut problem).unwrap_or_default();
        let expand_json = parse_expand_json(raw).map_err(&mut problem).ok().flatten();
        for (what, set) in [
            ("recursive", raw.recursive.is_some()),
            ("maxCount", raw.max_count.is_some()),
            ("tags", !raw.tags.is_empty()),
        ] {
            if set {
                problem(format!("{what} applies only to objects with a path (or tags), not to objectName"));
            }
        }

        match (object_type, file) {
            (Some(object_type), Some(file)) if problems.is_empty() => Ok(SecretObject {
                name,
                object_type,
                arn,
                version,
                version_label,
                file,
                mode,
                jmes_path,
                failover_name,
                collection: None,
                max_count: 1,
                encoding,
                expand_json,
            }),
            _ => Err(problems),
        }
    }

    /// An object naming a set: Parameter Store `path` (+ `recursive`), or Secrets Manager
    /// name prefix `path` and/or `tags`.
    fn validate_collection(&self, raw: &RawObject) -> Result<SecretObject, Vec<String>> {
        let path = non_empty(&raw.path);
        let label = path.clone().unwrap_or_else(|| format!("objects[{}]", self.index));
        let mut problems = Vec::new();
        let mut problem = |message: String| problems.push(format!("object with path {label:?}: {message}"));
        let object_type = match non_empty(&raw.object_type).as_deref().map(ObjectType::parse) {
            Some(Some(t)) => Some(t),
            _ => {
                problem("objectType must be \"ssmparameter\" or \"secretsmanager\" for a path".into());
                None
            }
        };
        for (what, set) in [
            ("objectName", raw.object_name.is_some()),
            ("objectAlias", raw.object_alias.is_some()),
            ("objectVersion", raw.object_version.is_some()),
            ("objectVersionLabel", raw.object_version_label.is_some()),
            ("jmesPath", !raw.jmes_path.is_empty()),
            ("failoverObject", raw.failover_object.is_some()),
            ("expandJson", raw.expand_json.is_some() || raw.expand_json_keys.is_some()),
        ] {
            if set {
                problem(format!(
                    "{what} cannot be combined with path or tags: each entry is mounted as a file named after it"
                ));
            }
        }
        let recursive = match raw.recursive.as_deref().map(str::trim) {
            None | Some("") => false,
            Some(v) => parse_go_bool(v).unwrap_or_else(|| {
                problem(format!("recursive {v:?} is not a boolean"));
                false
            }),
        };
        let max_count = match raw.max_count.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_MAX_COUNT,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_MAX_COUNT).contains(&n) => n,
                _ => {
                    problem(format!("maxCount {v:?} must be a number from 1 to {MAX_MAX_COUNT}"));
                    DEFAULT_MAX_COUNT
                }
            },
        };
        let collection = match object_type {
            Some(ObjectType::SsmParameter) => {
                if !raw.tags.is_empty() {
                    problem("tags select Secrets Manager secrets; Parameter Store objects use path".into());
                }
                match &path {
                    Some(p) if p.starts_with('/') => {
                        Some(Collection::ParameterPath { path: p.clone(), recursive })
                    }
                    _ => {
                        problem("a Parameter Store path must start with '/', e.g. \"/app/prod/\"".into());
                        None
                    }
                }
            }
            Some(ObjectType::SecretsManager) => {
                if raw.recursive.is_some() {
                    problem(
                        "recursive applies to Parameter Store paths; a Secrets Manager path is a name prefix"
                            .into(),
                    );
                }
                Some(Collection::SecretList { prefix: path.clone(), tags: raw.tags.clone() })
            }
            None => None,
        };
        let mode = match &raw.file_permission {
            Some(p) => parse_file_permission(p).map_err(&mut problem).unwrap_or(self.default_mode),
            None => self.default_mode,
        };
        let encoding = parse_encoding(raw.encoding.as_deref()).map_err(&mut problem).unwrap_or_default();
        match (object_type, collection) {
            (Some(object_type), Some(collection)) if problems.is_empty() => Ok(SecretObject {
                name: collection.to_string(),
                object_type,
                arn: None,
                version: None,
                version_label: None,
                file: String::new(),
                mode,
                jmes_path: Vec::new(),
                failover_name: None,
                collection: Some(collection),
                max_count,
                encoding,
                expand_json: None,
            }),
            _ => Err(problems),
        }
    }

    fn object_type(&self, raw: &RawObject, arn: Option<&Arn>) -> Result<ObjectType, String> {
        let declared = non_empty(&raw.object_type);
        let declared_type = match &declared {
            Some(t) => Some(ObjectType::parse(t).ok_or_else(|| {
                format!("objectType {t:?} is unknown: use \"secretsmanager\" or \"ssmparameter\"")
            })?),
            None => None,
        };
        let Some(arn) = arn else {
            return declared_type.ok_or_else(|| {
                "objectType is missing: set it to \"secretsmanager\" or \"ssmparameter\" (or use \
                 the object's ARN as objectName)"
                    .to_owned()
            });
        };
        let arn_type = ObjectType::from_arn_service(&arn.service).ok_or_else(|| {
            format!("the ARN's service {:?} is not supported: use a secretsmanager or ssm ARN", arn.service)
        })?;
        match declared_type {
            Some(t) if t != arn_type => Err(format!(
                "objectType {:?} does not match the ARN, which names a {} object: fix or \
                 remove objectType",
                declared.unwrap_or_default(),
                arn_type
            )),
            _ => Ok(arn_type),
        }
    }

    /// Applies pathTranslation and checks the result is a safe relative path.
    fn file_path(&self, name: &str, problem: &mut impl FnMut(String)) -> Option<String> {
        let file = self.path_translation.apply(name);
        match naming::check_file_path(&file) {
            Ok(()) => Some(file),
            Err(e) => {
                problem(format!("{e}; choose another objectAlias"));
                None
            }
        }
    }

    fn jmes_entry(
        &self,
        index: usize,
        raw: &raw::RawJmesPath,
        object_mode: u32,
        problem: &mut impl FnMut(String),
    ) -> Option<JmesPathEntry> {
        let path = non_empty(&raw.path);
        let alias = non_empty(&raw.object_alias);
        let (Some(path), Some(alias)) = (path, alias) else {
            problem(format!(
                "jmesPath[{index}] needs both path (the expression) and objectAlias (the file \
                 name)"
            ));
            return None;
        };
        let expression = match jmespath::compile(&path) {
            Ok(e) => Arc::new(e),
            Err(e) => {
                problem(format!(
                    "jmesPath[{index}] path {path:?} is not a valid JMESPath expression ({}); \
                     quote keys with hyphens, e.g. '\"my-key\"'",
                    e.reason
                ));
                return None;
            }
        };
        let mode = match &raw.file_permission {
            Some(p) => match parse_file_permission(p) {
                Ok(mode) => mode,
                Err(e) => {
                    problem(format!("jmesPath[{index}]: {e}"));
                    return None;
                }
            },
            None => object_mode,
        };
        let file = self.file_path(&alias, problem)?;
        let encoding = match parse_encoding(raw.encoding.as_deref()) {
            Ok(encoding) => encoding,
            Err(e) => {
                problem(format!("jmesPath[{index}]: {e}"));
                return None;
            }
        };
        let allow_non_string = match raw.allow_non_string.as_deref().map(str::trim) {
            None | Some("") => false,
            Some(v) => match parse_go_bool(v) {
                Some(b) => b,
                None => {
                    problem(format!("jmesPath[{index}]: allowNonString {v:?} is not a boolean"));
                    return None;
                }
            },
        };
        Some(JmesPathEntry { path, expression, file, mode, encoding, allow_non_string })
    }

    fn failover(
        &self,
        raw: &RawObject,
        failover: &RawFailover,
        object_type: Option<ObjectType>,
        has_failover_region: bool,
        problem: &mut impl FnMut(String),
    ) -> Option<String> {
        let Some(name) = non_empty(&failover.object_name) else {
            problem("failoverObject.objectName is missing".into());
            return None;
        };
        if !has_failover_region {
            problem("failoverObject is set but the class has no failoverRegion: add one".into());
        }
        if non_empty(&raw.object_alias).is_none() {
            problem(
                "an object with a failoverObject needs an objectAlias, so both regions write \
                 the same file"
                    .into(),
            );
        }
        if non_empty(&failover.object_version) != non_empty(&raw.object_version) {
            problem("failoverObject.objectVersion must equal the object's objectVersion".into());
        }
        if non_empty(&failover.object_version_label) != non_empty(&raw.object_version_label) {
            problem("failoverObject.objectVersionLabel must equal the object's objectVersionLabel".into());
        }
        if Arn::looks_like(&name) {
            match Arn::parse(&name) {
                Ok(arn) => {
                    let arn_type = ObjectType::from_arn_service(&arn.service);
                    if object_type.is_some() && arn_type != object_type {
                        problem(format!(
                            "failoverObject {name:?} is not the same kind of object as the \
                             primary ({})",
                            object_type.map_or("unknown", ObjectType::as_str)
                        ));
                    }
                }
                Err(e) => problem(format!("failoverObject: {e}")),
            }
        }
        Some(name)
    }
}

/// Two entries writing the same file, or a file where another needs a directory.
fn file_conflicts(objects: &[SecretObject]) -> Vec<String> {
    let mut owners: BTreeMap<&str, String> = BTreeMap::new();
    let mut problems = Vec::new();
    for object in objects {
        let main =
            object.collection.is_none().then(|| (object.file.as_str(), format!("object {:?}", object.name)));
        let jmes = object
            .jmes_path
            .iter()
            .map(|j| (j.file.as_str(), format!("jmesPath {:?} of object {:?}", j.path, object.name)));
        let entries = main.into_iter().chain(jmes);
        for (file, owner) in entries {
            match owners.get(file) {
                Some(first) => problems.push(format!(
                    "{first} and {owner} would both write the file {file:?}: give one of them a \
                     distinct objectAlias"
                )),
                None => {
                    owners.insert(file, owner);
                }
            }
        }
    }
    // With pathTranslation False, "a" and "a/b" cannot both exist.
    for (file, owner) in &owners {
        for (slash, _) in file.match_indices('/') {
            let dir = &file[..slash];
            if let Some(other) = owners.get(dir) {
                problems.push(format!(
                    "{other} writes the file {dir:?}, but {owner} needs it to be a directory \
                     for {file:?}: give one of them a distinct objectAlias"
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests;
