//! Validation: raw objects -> the object model. Every rule is checked once, and every
//! problem that does not depend on an earlier field being valid is reported in the same run;
//! so is every file an object claims, valid or not, for the conflict check.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::arn::Arn;
use super::encoding::Encoding;
use super::go;
use super::model::{
    Collection, CollectionObject, DEFAULT_MAX_COUNT, ExpandJson, JmesPathEntry, MAX_MAX_COUNT, NamedObject,
    ObjectType, SecretObject,
};
use super::naming::{self, PathTranslation};
use super::raw::{RawFailover, RawJmesPath, RawObject};
use crate::echo::quoted;

/// The longest name or ARN AWS accepts for a secret or a parameter (ARNs up to 2,048).
const MAX_NAME_CHARS: usize = 2048;

/// A file an object will write, and how messages name its writer.
#[derive(Debug, Clone)]
pub struct Claim {
    pub file: String,
    pub owner: String,
}

/// One raw object, validated: the object when it has no problem, its claims either way.
#[derive(Debug, Default)]
pub(super) struct Validated {
    pub object: Option<SecretObject>,
    pub claims: Vec<Claim>,
    /// (how messages name the object, its ARN), for the region rules.
    pub arns: Vec<(String, Arn)>,
}

/// The class-wide settings objects are validated with.
pub(super) struct ObjectCheck<'r> {
    pub path_translation: PathTranslation,
    pub default_mode: u32,
    pub failover_region: Option<&'r str>,
}

/// Collects one object's problems, each prefixed with how the object is named.
struct Problems<'p> {
    label: String,
    list: &'p mut Vec<String>,
    count: usize,
}

impl Problems<'_> {
    /// "LABEL: message".
    fn add(&mut self, message: impl std::fmt::Display) {
        self.add_after(format!(": {message}"));
    }

    /// "LABEL" directly followed by `text`.
    fn add_after(&mut self, text: String) {
        self.list.push(format!("{}{text}", self.label));
        self.count += 1;
    }
}

impl ObjectCheck<'_> {
    /// Validates the object at `index`, adding its problems to `problems`.
    pub fn validate(&self, index: usize, raw: &RawObject, problems: &mut Vec<String>) -> Validated {
        if raw.path.is_some() || (!raw.tags.is_empty() && raw.object_name.is_none()) {
            return self.collection(index, raw, problems);
        }
        let name = raw.object_name.clone();
        let label =
            name.as_ref().map_or_else(|| format!("objects[{index}]"), |n| format!("object {}", quoted(n)));
        let mut out = Problems { label, list: problems, count: 0 };
        let mut validated = Validated::default();
        if name.is_none() {
            out.add("objectName is missing; set it to the secret's name or ARN");
        }
        let name = name.unwrap_or_default();
        let length = name.chars().count();
        if length > MAX_NAME_CHARS {
            out.add(format!(
                "objectName is {length} characters; AWS allows at most {MAX_NAME_CHARS} (a secret's or \
                 parameter's name, or its full ARN)"
            ));
        }

        let arn = if Arn::looks_like(&name) { Arn::parse(&name).map_err(|e| out.add(e)).ok() } else { None };
        if let Some(arn) = &arn {
            validated.arns.push((format!("object {}", quoted(&name)), arn.clone()));
        }
        let object_type = object_type(raw, arn.as_ref(), Arn::looks_like(&name)).map_err(|e| out.add(e)).ok();
        let mode = self.mode(raw.file_permission.as_deref(), self.default_mode, &mut out);
        let version = raw.object_version.clone();
        let version_label = raw.object_version_label.clone();
        if object_type == Some(ObjectType::SsmParameter) {
            if version.is_some() && version_label.is_some() {
                out.add("a Parameter Store object may set objectVersion or objectVersionLabel, not both");
            }
            if let Some(v) = &version
                && (!v.bytes().all(|b| b.is_ascii_digit()) || v.starts_with('0'))
            {
                out.add(format!("objectVersion {v:?} is not a Parameter Store version number (1, 2, ...)"));
            }
        }

        let owner = format!("object {}", quoted(&name));
        let alias = raw.object_alias.as_deref().or((!name.is_empty()).then_some(name.as_str()));
        let file = alias.and_then(|alias| self.file_path(alias, &mut out));
        validated.claims.extend(file.iter().map(|f| Claim { file: f.clone(), owner: owner.clone() }));
        let mut jmes_path = Vec::new();
        for (i, entry) in raw.jmes_path.iter().enumerate() {
            let (file, entry) = self.jmes_entry(i, entry, mode, &mut out);
            if let Some(file) = file {
                let path = raw.jmes_path[i].path.as_deref().unwrap_or_default();
                let owner = format!("jmesPath {} of object {}", quoted(path), quoted(&name));
                validated.claims.push(Claim { file, owner });
            }
            jmes_path.extend(entry);
        }
        let failover_name = raw
            .failover_object
            .as_ref()
            .and_then(|failover| self.failover(raw, failover, object_type, &mut out));
        let encoding = Encoding::parse(raw.encoding.as_deref()).map_err(|e| out.add(e)).unwrap_or_default();
        let expand_json = expand_json(raw).map_err(|e| out.add(e)).ok().flatten();
        for (what, set) in [
            ("recursive", raw.recursive.is_some()),
            ("maxCount", raw.max_count.is_some()),
            ("tags", !raw.tags.is_empty()),
        ] {
            if set {
                out.add(format!("{what} applies only to objects with a path (or tags), not to objectName"));
            }
        }

        if let (Some(object_type), Some(file), 0) = (object_type, file, out.count) {
            validated.object = Some(SecretObject::Named(NamedObject {
                name,
                object_type,
                arn,
                version,
                version_label,
                file,
                mode,
                jmes_path,
                failover_name,
                encoding,
                expand_json,
            }));
        }
        validated
    }

    /// An object naming a set: Parameter Store `path` (+ `recursive`), or Secrets Manager
    /// name prefix `path` and/or `tags`.
    fn collection(&self, index: usize, raw: &RawObject, problems: &mut Vec<String>) -> Validated {
        let path = raw.path.clone();
        let label = path.clone().unwrap_or_else(|| format!("objects[{index}]"));
        let mut out =
            Problems { label: format!("object with path {}", quoted(&label)), list: problems, count: 0 };
        let object_type = raw.object_type.as_deref().and_then(ObjectType::parse);
        if object_type.is_none() {
            out.add("objectType must be \"ssmparameter\" or \"secretsmanager\" for a path");
        }
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
                out.add(format!(
                    "{what} cannot be combined with path or tags: each entry is mounted as a file named after it"
                ));
            }
        }
        let recursive = go::parse_bool_field("recursive", &raw.recursive).unwrap_or_else(|e| {
            out.add(e);
            false
        });
        let max_count = match raw.max_count.as_deref() {
            None => DEFAULT_MAX_COUNT,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_MAX_COUNT).contains(&n) => n,
                _ => {
                    out.add(format!("maxCount {v:?} must be a number from 1 to {MAX_MAX_COUNT}"));
                    DEFAULT_MAX_COUNT
                }
            },
        };
        let collection = match object_type {
            Some(ObjectType::SsmParameter) => {
                if !raw.tags.is_empty() {
                    out.add("tags select Secrets Manager secrets; Parameter Store objects use path");
                }
                match &path {
                    Some(p) if p.starts_with('/') => {
                        Some(Collection::ParameterPath { path: p.clone(), recursive })
                    }
                    _ => {
                        out.add("a Parameter Store path must start with '/', e.g. \"/app/prod/\"");
                        None
                    }
                }
            }
            Some(ObjectType::SecretsManager) => {
                if raw.recursive.is_some() {
                    out.add(
                        "recursive applies to Parameter Store paths; a Secrets Manager path is a name prefix",
                    );
                }
                Some(Collection::SecretList { prefix: path.clone(), tags: raw.tags.clone() })
            }
            None => None,
        };
        let mode = self.mode(raw.file_permission.as_deref(), self.default_mode, &mut out);
        let encoding = Encoding::parse(raw.encoding.as_deref()).map_err(|e| out.add(e)).unwrap_or_default();
        let object = match (collection, out.count) {
            (Some(collection), 0) => {
                Some(SecretObject::Collection(CollectionObject { collection, mode, max_count, encoding }))
            }
            _ => None,
        };
        Validated { object, ..Validated::default() }
    }

    /// `filePermission`, else `default` (unset means the default, as in ASCP).
    fn mode(&self, permission: Option<&str>, default: u32, out: &mut Problems<'_>) -> u32 {
        permission.map_or(Ok(default), go::parse_file_permission).unwrap_or_else(|e| {
            out.add(e);
            default
        })
    }

    /// Applies pathTranslation and checks the result is a safe relative path.
    fn file_path(&self, name: &str, out: &mut Problems<'_>) -> Option<String> {
        let file = self.path_translation.apply(name);
        match naming::check_file_path(&file) {
            Ok(()) => Some(file),
            Err(e) => {
                out.add(format!("{e}; choose another objectAlias"));
                None
            }
        }
    }

    /// One jmesPath entry: its file (when its objectAlias makes a valid one, for the
    /// conflict check) and the entry (when it has no problem).
    fn jmes_entry(
        &self,
        index: usize,
        raw: &RawJmesPath,
        object_mode: u32,
        out: &mut Problems<'_>,
    ) -> (Option<String>, Option<JmesPathEntry>) {
        let label = format!("{}: jmesPath[{index}]", out.label);
        let mut entry = Problems { label, list: &mut *out.list, count: 0 };
        let (path, alias) = (raw.path.clone(), raw.object_alias.as_deref());
        if path.is_none() || alias.is_none() {
            entry.add_after(" needs both path (the expression) and objectAlias (the file name)".into());
        }
        let expression = path.as_deref().and_then(|path| match jmespath::compile(path) {
            Ok(e) => Some(Arc::new(e)),
            Err(e) => {
                entry.add_after(format!(
                    " path {path:?} is not a valid JMESPath expression ({}); quote keys with hyphens, \
                     e.g. '\"my-key\"'",
                    e.reason
                ));
                None
            }
        });
        let mode = self.mode(raw.file_permission.as_deref(), object_mode, &mut entry);
        let file = alias.and_then(|alias| self.file_path(alias, &mut entry));
        let encoding = Encoding::parse(raw.encoding.as_deref()).map_err(|e| entry.add(e)).unwrap_or_default();
        let allow_non_string = go::parse_bool_field("allowNonString", &raw.allow_non_string)
            .map_err(|e| entry.add(e))
            .unwrap_or_default();
        let problems = entry.count;
        out.count += problems;
        let valid = match (path, expression, &file) {
            (Some(path), Some(expression), Some(file)) if problems == 0 => {
                Some(JmesPathEntry { path, expression, file: file.clone(), mode, encoding, allow_non_string })
            }
            _ => None,
        };
        (file, valid)
    }

    fn failover(
        &self,
        raw: &RawObject,
        failover: &RawFailover,
        object_type: Option<ObjectType>,
        out: &mut Problems<'_>,
    ) -> Option<String> {
        if self.failover_region.is_none() {
            out.add("failoverObject is set but the class has no failoverRegion: add one");
        }
        if raw.object_alias.is_none() {
            out.add(
                "an object with a failoverObject needs an objectAlias, so both regions write the same file",
            );
        }
        if failover.object_version != raw.object_version {
            out.add("failoverObject.objectVersion must equal the object's objectVersion");
        }
        if failover.object_version_label != raw.object_version_label {
            out.add("failoverObject.objectVersionLabel must equal the object's objectVersionLabel");
        }
        let Some(failover_name) = failover.object_name.clone() else {
            out.add("failoverObject.objectName is missing");
            return None;
        };
        if Arn::looks_like(&failover_name) {
            match Arn::parse(&failover_name) {
                Ok(arn) => {
                    if object_type.is_some() && ObjectType::from_arn_service(&arn.service) != object_type {
                        out.add(format!(
                            "failoverObject {failover_name:?} is not the same kind of object as the primary ({})",
                            object_type.map_or("unknown", ObjectType::as_str)
                        ));
                    }
                    if let Some(region) = self.failover_region
                        && arn.region != region
                    {
                        out.add(format!(
                            "failoverObject ARN region {:?} does not match failoverRegion {region:?}",
                            arn.region
                        ));
                    }
                }
                Err(e) => out.add(format!("failoverObject: {e}")),
            }
        }
        Some(failover_name)
    }
}

/// The declared `objectType`, or the ARN's service; both must agree.
fn object_type(raw: &RawObject, arn: Option<&Arn>, named_by_arn: bool) -> Result<ObjectType, String> {
    let declared = raw.object_type.as_deref();
    let declared_type = match declared {
        Some(t) => Some(ObjectType::parse(t).ok_or_else(|| {
            format!("objectType {t:?} is unknown: use \"secretsmanager\" or \"ssmparameter\"")
        })?),
        None => None,
    };
    let Some(arn) = arn else {
        // A malformed ARN is reported already; its type cannot be known.
        return match declared_type {
            Some(t) => Ok(t),
            None if named_by_arn => {
                Err("objectType cannot be taken from a malformed ARN: fix the ARN".into())
            }
            None => {
                Err("objectType is missing: set it to \"secretsmanager\" or \"ssmparameter\" (or use the \
                         object's ARN as objectName)"
                    .into())
            }
        };
    };
    let arn_type = ObjectType::from_arn_service(&arn.service).ok_or_else(|| {
        format!("the ARN's service {:?} is not supported: use a secretsmanager or ssm ARN", arn.service)
    })?;
    match declared_type {
        Some(t) if t != arn_type => Err(format!(
            "objectType {:?} does not match the ARN, which names a {arn_type} object: fix or remove objectType",
            declared.unwrap_or_default()
        )),
        _ => Ok(arn_type),
    }
}

fn expand_json(raw: &RawObject) -> Result<Option<ExpandJson>, String> {
    let enabled = match &raw.expand_json {
        None => raw.expand_json_keys.is_some(),
        some => go::parse_bool_field("expandJson", some)?,
    };
    if !enabled {
        return Ok(None);
    }
    if let Some(keys) = &raw.expand_json_keys
        && (keys.is_empty() || keys.iter().any(String::is_empty))
    {
        return Err("expandJsonKeys must list non-empty key names".into());
    }
    Ok(Some(ExpandJson { keys: raw.expand_json_keys.clone() }))
}

/// The rules that need the primary region, in one place: applied by parsing when the class
/// names its region, else once a mount has resolved it.
pub(super) fn region_problems(primary: &str, failover: Option<&str>, arns: &[(String, Arn)]) -> Vec<String> {
    let mut problems = Vec::new();
    if failover == Some(primary) {
        problems.push(format!(
            "failoverRegion {primary:?} is the same as region, the mount's primary region: set \
             failoverRegion to a different region or remove it"
        ));
    }
    for (owner, arn) in arns.iter().filter(|(_, arn)| arn.region != primary) {
        problems.push(format!(
            "{owner}: the ARN's region {:?} does not match the mount's region {primary:?}; set the \
             SecretProviderClass region to {:?} or use the ARN of the secret in {primary:?}",
            arn.region, arn.region
        ));
    }
    problems
}

/// Two entries writing the same file, or a file where another needs a directory.
pub(super) fn file_conflicts(claims: &[Claim]) -> Vec<String> {
    let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
    let mut problems = Vec::new();
    for Claim { file, owner } in claims {
        if let Some(first) = owners.get(file.as_str()) {
            problems.push(format!(
                "{first} and {owner} would both write the file {file:?}: give one of them a distinct objectAlias"
            ));
        } else {
            owners.insert(file, owner);
        }
    }
    // With pathTranslation False, "a" and "a/b" cannot both exist.
    for (file, owner) in &owners {
        for (slash, _) in file.match_indices('/') {
            let dir = &file[..slash];
            if let Some(other) = owners.get(dir) {
                problems.push(format!(
                    "{other} writes the file {dir:?}, but {owner} needs it to be a directory for \
                     {file:?}: give one of them a distinct objectAlias"
                ));
            }
        }
    }
    problems
}
