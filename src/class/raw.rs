//! The `objects` YAML as users write it: a list of mappings whose scalar values are read as
//! text (YAML `3` and `"3"` both mean version "3", as in ASCP's Go YAML decoding).

use serde_yaml::{Mapping, Value};

/// One `objects` entry before validation.
#[derive(Debug, Default, Clone)]
pub struct RawObject {
    pub object_name: Option<String>,
    pub object_type: Option<String>,
    pub object_alias: Option<String>,
    pub object_version: Option<String>,
    pub object_version_label: Option<String>,
    pub file_permission: Option<String>,
    pub jmes_path: Vec<RawJmesPath>,
    pub failover_object: Option<RawFailover>,
    // Extensions beyond ASCP (all optional).
    pub path: Option<String>,
    pub recursive: Option<String>,
    pub tags: Vec<(String, String)>,
    pub max_count: Option<String>,
    pub encoding: Option<String>,
    pub expand_json: Option<String>,
    pub expand_json_keys: Option<Vec<String>>,
}

/// One `jmesPath` entry before validation.
#[derive(Debug, Default, Clone)]
pub struct RawJmesPath {
    pub path: Option<String>,
    pub object_alias: Option<String>,
    pub file_permission: Option<String>,
    pub encoding: Option<String>,
    pub allow_non_string: Option<String>,
}

/// A `failoverObject` before validation.
#[derive(Debug, Default, Clone)]
pub struct RawFailover {
    pub object_name: Option<String>,
    pub object_version: Option<String>,
    pub object_version_label: Option<String>,
}

/// What reading the YAML found: entries, hard problems and ignorable oddities.
#[derive(Debug, Default)]
pub struct RawObjects {
    pub objects: Vec<RawObject>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Parses the `objects` parameter. Empty or absent means no objects.
pub fn parse_objects(yaml: &str) -> RawObjects {
    let mut out = RawObjects::default();
    if yaml.trim().is_empty() {
        return out;
    }
    let value: Value = match serde_yaml::from_str::<Value>(yaml) {
        // `<<: *anchor` merge keys, which ASCP's Go YAML applies.
        Ok(mut v) => match v.apply_merge() {
            Ok(()) => v,
            Err(e) => {
                out.problems.push(format!("the objects parameter has an invalid YAML merge key: {e}"));
                return out;
            }
        },
        Err(e) => {
            out.problems.push(format!(
                "the objects parameter is not valid YAML ({e}); it must be a YAML list such as \
                 `- objectName: my-secret` with `objectType: secretsmanager`"
            ));
            return out;
        }
    };
    let items = match value {
        Value::Null => return out,
        Value::Sequence(items) => items,
        other => {
            out.problems
                .push(format!("the objects parameter must be a YAML list of objects, not {}", kind(&other)));
            return out;
        }
    };
    for (index, item) in items.into_iter().enumerate() {
        let at = format!("objects[{index}]");
        match item {
            Value::Mapping(map) => {
                let mut fields = Fields::new(&map, at);
                let object = RawObject {
                    object_name: fields.text("objectName"),
                    object_type: fields.text("objectType"),
                    object_alias: fields.text("objectAlias"),
                    object_version: fields.text("objectVersion"),
                    object_version_label: fields.text("objectVersionLabel"),
                    file_permission: fields.text("filePermission"),
                    jmes_path: fields.list("jmesPath", |f| RawJmesPath {
                        path: f.text("path"),
                        object_alias: f.text("objectAlias"),
                        file_permission: f.text("filePermission"),
                        encoding: f.text("encoding"),
                        allow_non_string: f.text("allowNonString"),
                    }),
                    failover_object: fields.mapping("failoverObject", |f| RawFailover {
                        object_name: f.text("objectName"),
                        object_version: f.text("objectVersion"),
                        object_version_label: f.text("objectVersionLabel"),
                    }),
                    path: fields.text("path"),
                    recursive: fields.text("recursive"),
                    tags: fields.text_map("tags"),
                    max_count: fields.text("maxCount"),
                    encoding: fields.text("encoding"),
                    expand_json: fields.text("expandJson"),
                    expand_json_keys: fields.text_list("expandJsonKeys"),
                };
                fields.finish(&mut out);
                out.objects.push(object);
            }
            other => out
                .problems
                .push(format!("{at} must be a mapping with objectName and objectType, not {}", kind(&other))),
        }
    }
    out
}

/// Reads the keys of one mapping, remembering which were used so that unknown keys (typos
/// such as `objectname`) can be reported. ASCP ignores unknown keys, so they only warn.
struct Fields<'a> {
    map: &'a Mapping,
    at: String,
    used: Vec<&'static str>,
    problems: Vec<String>,
    warnings: Vec<String>,
}

impl<'a> Fields<'a> {
    fn new(map: &'a Mapping, at: String) -> Self {
        Self { map, at, used: Vec::new(), problems: Vec::new(), warnings: Vec::new() }
    }

    /// Looks a key up as ASCP's Go decoding does: exact match first, else ignoring case.
    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.used.push(key);
        self.map.get(key).or_else(|| {
            let map: &'a Mapping = self.map;
            map.iter().find(|(k, _)| k.as_str().is_some_and(|k| k.eq_ignore_ascii_case(key))).map(|(_, v)| v)
        })
    }

    /// A scalar read as text; null and absent are `None`.
    fn text(&mut self, key: &'static str) -> Option<String> {
        match self.get(key)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                let message = format!("{}.{key} must be a string, not {}", self.at, kind(other));
                self.problems.push(message);
                None
            }
        }
    }

    /// A mapping of scalars, read as text pairs in order.
    fn text_map(&mut self, key: &'static str) -> Vec<(String, String)> {
        match self.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Mapping(map)) => {
                let mut out = Vec::new();
                for (k, v) in map {
                    match (scalar(k), scalar(v)) {
                        (Some(k), Some(v)) => out.push((k, v)),
                        _ => self.problems.push(format!("{}.{key} must map strings to strings", self.at)),
                    }
                }
                out
            }
            Some(other) => {
                let message = format!("{}.{key} must be a mapping, not {}", self.at, kind(other));
                self.problems.push(message);
                Vec::new()
            }
        }
    }

    /// A list of scalars read as text.
    fn text_list(&mut self, key: &'static str) -> Option<Vec<String>> {
        match self.get(key)? {
            Value::Null => None,
            Value::Sequence(items) => {
                let texts: Vec<String> = items.iter().filter_map(scalar).collect();
                if texts.len() != items.len() {
                    self.problems.push(format!("{}.{key} must be a list of strings", self.at));
                }
                Some(texts)
            }
            other => {
                let message = format!("{}.{key} must be a list of strings, not {}", self.at, kind(other));
                self.problems.push(message);
                None
            }
        }
    }

    /// A list of mappings, each read with `read`.
    fn list<T>(&mut self, key: &'static str, read: impl Fn(&mut Fields<'a>) -> T) -> Vec<T> {
        let items = match self.get(key) {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Sequence(items)) => items,
            Some(other) => {
                let message = format!("{}.{key} must be a list, not {}", self.at, kind(other));
                self.problems.push(message);
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let at = format!("{}.{key}[{index}]", self.at);
            match item {
                Value::Mapping(map) => {
                    let mut fields = Fields::new(map, at);
                    out.push(read(&mut fields));
                    self.absorb(fields);
                }
                other => self.problems.push(format!("{at} must be a mapping, not {}", kind(other))),
            }
        }
        out
    }

    /// A nested mapping read with `read`.
    fn mapping<T>(&mut self, key: &'static str, read: impl Fn(&mut Fields<'a>) -> T) -> Option<T> {
        match self.get(key)? {
            Value::Null => None,
            Value::Mapping(map) => {
                let mut fields = Fields::new(map, format!("{}.{key}", self.at));
                let value = read(&mut fields);
                self.absorb(fields);
                Some(value)
            }
            other => {
                let message = format!("{}.{key} must be a mapping, not {}", self.at, kind(other));
                self.problems.push(message);
                None
            }
        }
    }

    fn absorb(&mut self, mut inner: Fields<'a>) {
        inner.warn_unknown();
        self.problems.append(&mut inner.problems);
        self.warnings.append(&mut inner.warnings);
    }

    fn warn_unknown(&mut self) {
        for key in self.map.keys() {
            let known = key.as_str().is_some_and(|k| self.used.iter().any(|u| u.eq_ignore_ascii_case(k)));
            if !known {
                let name = key.as_str().map_or_else(|| format!("{key:?}"), str::to_owned);
                self.warnings.push(format!("{}: unknown key {name:?} is ignored", self.at));
            }
        }
    }

    fn finish(mut self, out: &mut RawObjects) {
        self.warn_unknown();
        out.problems.append(&mut self.problems);
        out.warnings.append(&mut self.warnings);
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_field_and_scalar_kinds() {
        let raw = parse_objects(
            r#"
- objectName: db
  objectType: secretsmanager
  objectAlias: db.json
  objectVersion: 3
  objectVersionLabel: AWSCURRENT
  filePermission: "0600"
  jmesPath:
    - path: username
      objectAlias: user
      filePermission: "0400"
  failoverObject:
    objectName: db-replica
    objectVersion: 3
"#,
        );
        assert!(raw.problems.is_empty(), "{:?}", raw.problems);
        assert!(raw.warnings.is_empty(), "{:?}", raw.warnings);
        let o = &raw.objects[0];
        assert_eq!(o.object_name.as_deref(), Some("db"));
        assert_eq!(o.object_version.as_deref(), Some("3"));
        assert_eq!(o.file_permission.as_deref(), Some("0600"));
        assert_eq!(o.jmes_path[0].object_alias.as_deref(), Some("user"));
        assert_eq!(o.failover_object.as_ref().unwrap().object_version.as_deref(), Some("3"));
    }

    #[test]
    fn empty_and_null_mean_no_objects() {
        for yaml in ["", "  \n", "~", "[]"] {
            let raw = parse_objects(yaml);
            assert!(raw.objects.is_empty() && raw.problems.is_empty(), "{yaml:?}");
        }
    }

    #[test]
    fn structural_problems_are_reported_with_their_place() {
        let cases = [
            ("objectName: x", "must be a YAML list"),
            ("- [a]", "objects[0] must be a mapping"),
            ("- objectName: [a]", "objects[0].objectName must be a string"),
            ("- objectName: a\n  jmesPath: x", "objects[0].jmesPath must be a list"),
            ("- objectName: a\n  jmesPath: [x]", "objects[0].jmesPath[0] must be a mapping"),
            ("- objectName: a\n  failoverObject: b", "objects[0].failoverObject must be a mapping"),
            ("- objectName: 'a\n", "not valid YAML"),
        ];
        for (yaml, want) in cases {
            let raw = parse_objects(yaml);
            assert!(
                raw.problems.iter().any(|p| p.contains(want)),
                "{yaml:?}: {:?} should mention {want:?}",
                raw.problems
            );
        }
    }

    #[test]
    fn unknown_keys_warn() {
        let raw = parse_objects("- objectNme: a\n  jmesPath:\n    - pth: x\n");
        assert_eq!(raw.warnings.len(), 2, "{:?}", raw.warnings);
        assert!(raw.warnings.iter().any(|w| w.contains("\"pth\"")), "{:?}", raw.warnings);
        assert!(raw.warnings.iter().any(|w| w.contains("\"objectNme\"")), "{:?}", raw.warnings);
    }

    #[test]
    fn keys_match_case_insensitively_like_go() {
        let raw = parse_objects("- objectname: a\n  OBJECTTYPE: ssmparameter\n");
        assert!(raw.warnings.is_empty(), "{:?}", raw.warnings);
        assert_eq!(raw.objects[0].object_name.as_deref(), Some("a"));
        assert_eq!(raw.objects[0].object_type.as_deref(), Some("ssmparameter"));
    }
}
