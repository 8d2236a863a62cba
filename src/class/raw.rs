//! Raw YAML reading: the `objects` list as users write it, a list of mappings whose scalar
//! values are read as text (YAML `3` and `"3"` both mean version "3"). The text is scanned
//! within its [`Limits`] first; only then does serde_yaml build the tree.

use serde_yaml::{Mapping, Value};

use super::go;
use super::scan::{self, Limits, Positions, ScanError};

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

/// How line numbers are shown: counted within `objects`, or from the start of the file
/// that holds it (`check`), whose line `first` is the first line of `objects`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lines {
    pub first: Option<usize>,
}

impl Lines {
    fn show(self, line: usize) -> String {
        match self.first {
            None => format!("line {line} of objects"),
            Some(first) => format!("line {}", first + line.saturating_sub(1)),
        }
    }

    /// A line and column; the column only within `objects` (in a file, the block's
    /// indentation is not known).
    fn show_column(self, line: usize, column: usize) -> String {
        match self.first {
            None => format!("{}, column {column}", self.show(line)),
            Some(_) => self.show(line),
        }
    }
}

/// Parses the `objects` parameter within `limits`. Empty or absent means no objects. A
/// limit (or the deadline) stops reading: `Err` says which.
pub fn parse_objects(yaml: &str, limits: &Limits, lines: Lines) -> Result<RawObjects, ScanError> {
    let mut out = RawObjects::default();
    if yaml.trim().is_empty() {
        return Ok(out);
    }
    let positions = match scan::scan(yaml, limits, "objects") {
        Ok(positions) => positions,
        Err(ScanError::Syntax { message, line, column }) => {
            out.problems.push(not_yaml(&format!("{message} at {}", lines.show_column(line, column))));
            return Ok(out);
        }
        Err(refused) => return Err(refused),
    };
    let value: Value = match serde_yaml::from_str::<Value>(yaml) {
        // `<<: *anchor` merge keys, which ASCP's Go YAML applies.
        Ok(mut v) => match v.apply_merge() {
            Ok(()) => v,
            Err(e) => {
                out.problems.push(format!("the objects parameter has an invalid YAML merge key: {e}"));
                return Ok(out);
            }
        },
        Err(e) => {
            out.problems.push(not_yaml(&relocate(&e, lines)));
            return Ok(out);
        }
    };
    let items = match value {
        Value::Null => return Ok(out),
        Value::Sequence(items) => items,
        other => {
            out.problems
                .push(format!("the objects parameter must be a YAML list of objects, not {}", kind(&other)));
            return Ok(out);
        }
    };
    let context = Context { positions: &positions, lines };
    for (index, item) in items.into_iter().enumerate() {
        let at = format!("objects[{index}]");
        match item {
            Value::Mapping(map) => {
                let mut fields = Fields::new(&map, at, context);
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
                fields.finish(&mut out.problems, &mut out.warnings);
                out.objects.push(object);
            }
            other => {
                let line = context.line(&at);
                out.problems.push(format!(
                    "{at} must be a mapping with objectName and objectType, not {}{line}",
                    kind(&other)
                ));
            }
        }
    }
    Ok(out)
}

fn not_yaml(reason: &str) -> String {
    format!(
        "the objects parameter is not valid YAML ({reason}); it must be a YAML list such as \
         `- objectName: my-secret` with `objectType: secretsmanager`"
    )
}

/// serde_yaml's message with its location shown as [`Lines`] shows lines.
fn relocate(error: &serde_yaml::Error, lines: Lines) -> String {
    let text = error.to_string();
    match error.location() {
        Some(at) => {
            let suffix = format!(" at line {} column {}", at.line(), at.column());
            let message = text.strip_suffix(&suffix).unwrap_or(&text);
            format!("{message} at {}", lines.show_column(at.line(), at.column()))
        }
        None => text,
    }
}

/// The closest known key to a misspelt one, if it is a near miss (a typo or two).
pub(super) fn did_you_mean(written: &str, known: &[&'static str]) -> Option<&'static str> {
    let written = written.to_ascii_lowercase();
    let allowed = if written.chars().count() >= 6 { 2 } else { 1 };
    known
        .iter()
        .map(|k| (strsim::osa_distance(&written, &k.to_ascii_lowercase()), *k))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

/// What messages need to say where something is.
#[derive(Clone, Copy)]
struct Context<'p> {
    positions: &'p Positions,
    lines: Lines,
}

impl Context<'_> {
    /// " (line N)" for the key or list item at `path`, or nothing when it is not known (keys
    /// from an alias or merge key have no line of their own).
    fn line(&self, path: &str) -> String {
        self.positions.line(path).map_or_else(String::new, |l| format!(" ({})", self.lines.show(l)))
    }
}

/// Reads the keys of one mapping, remembering which were used so that unknown keys (typos
/// such as `objectTpe`) can be reported. ASCP ignores unknown keys, so they only warn.
struct Fields<'a, 'p> {
    map: &'a Mapping,
    at: String,
    used: Vec<&'static str>,
    context: Context<'p>,
    problems: Vec<String>,
    warnings: Vec<String>,
}

impl<'a, 'p> Fields<'a, 'p> {
    fn new(map: &'a Mapping, at: String, context: Context<'p>) -> Self {
        Self { map, at, used: Vec::new(), context, problems: Vec::new(), warnings: Vec::new() }
    }

    /// Looks a key up as ASCP's Go decoding does: exact match first, else ignoring case.
    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.used.push(key);
        self.map.get(key).or_else(|| {
            let map: &'a Mapping = self.map;
            map.iter().find(|(k, _)| k.as_str().is_some_and(|k| go::same_key(k, key))).map(|(_, v)| v)
        })
    }

    /// Reports that `key` holds the wrong kind of value.
    fn wrong(&mut self, key: &str, expected: &str, found: Option<&Value>) {
        let found = found.map_or_else(String::new, |v| format!(", not {}", kind(v)));
        let line = self.context.line(&format!("{}.{key}", self.at));
        self.problems.push(format!("{}.{key} must be {expected}{found}{line}", self.at));
    }

    /// A scalar read as text; absent, null and `""` are unset ([`go::set`]).
    fn text(&mut self, key: &'static str) -> Option<String> {
        let text = match self.get(key)? {
            Value::Null => None,
            other => scalar(other).or_else(|| {
                self.wrong(key, "a string", Some(other));
                None
            }),
        };
        text.filter(|t| !t.is_empty())
    }

    /// A mapping of scalars, read as text pairs in order.
    fn text_map(&mut self, key: &'static str) -> Vec<(String, String)> {
        match self.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Mapping(map)) => {
                let pairs: Vec<(String, String)> =
                    map.iter().filter_map(|(k, v)| Some((scalar(k)?, scalar(v)?))).collect();
                if pairs.len() != map.len() {
                    self.wrong(key, "a mapping of strings to strings", None);
                }
                pairs
            }
            Some(other) => {
                self.wrong(key, "a mapping", Some(other));
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
                    self.wrong(key, "a list of strings", None);
                }
                Some(texts)
            }
            other => {
                self.wrong(key, "a list of strings", Some(other));
                None
            }
        }
    }

    /// A list of mappings, each read with `read`.
    fn list<T>(&mut self, key: &'static str, read: impl Fn(&mut Fields<'a, 'p>) -> T) -> Vec<T> {
        let items = match self.get(key) {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Sequence(items)) => items,
            Some(other) => {
                self.wrong(key, "a list", Some(other));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (index, item) in items.iter().enumerate() {
            match item {
                Value::Mapping(map) => {
                    let mut fields = Fields::new(map, format!("{}.{key}[{index}]", self.at), self.context);
                    out.push(read(&mut fields));
                    fields.finish(&mut self.problems, &mut self.warnings);
                }
                other => self.wrong(&format!("{key}[{index}]"), "a mapping", Some(other)),
            }
        }
        out
    }

    /// A nested mapping read with `read`.
    fn mapping<T>(&mut self, key: &'static str, read: impl Fn(&mut Fields<'a, 'p>) -> T) -> Option<T> {
        match self.get(key)? {
            Value::Null => None,
            Value::Mapping(map) => {
                let mut fields = Fields::new(map, format!("{}.{key}", self.at), self.context);
                let value = read(&mut fields);
                fields.finish(&mut self.problems, &mut self.warnings);
                Some(value)
            }
            other => {
                self.wrong(key, "a mapping", Some(other));
                None
            }
        }
    }

    /// Warns about every key nobody read, with a "did you mean" for near misses.
    fn warn_unknown(&mut self) {
        for key in self.map.keys() {
            let text = key.as_str();
            if text.is_some_and(|k| self.used.iter().any(|u| go::same_key(k, u))) {
                continue;
            }
            let name = text.map_or_else(|| format!("{key:?}"), str::to_owned);
            let line = self.context.line(&format!("{}.{name}", self.at));
            let hint = text
                .and_then(|k| did_you_mean(k, &self.used))
                .map_or_else(String::new, |k| format!("; did you mean {k:?}?"));
            self.warnings.push(format!("{}: unknown key {name:?} is ignored{line}{hint}", self.at));
        }
    }

    /// Ends this mapping: its unknown keys warned, its messages handed to its parent's.
    fn finish(mut self, problems: &mut Vec<String>, warnings: &mut Vec<String>) {
        self.warn_unknown();
        problems.append(&mut self.problems);
        warnings.append(&mut self.warnings);
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

    fn parse_objects(yaml: &str) -> RawObjects {
        super::parse_objects(yaml, &Limits::default(), Lines::default()).unwrap()
    }

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

    #[test]
    fn near_misses_of_known_keys_get_a_hint_and_a_line() {
        let raw = parse_objects(
            "- objectName: a\n  objectTpe: secretsmanager\n  jmesPath:\n    - {pth: x}\n  zzz: 1\n",
        );
        let warnings = raw.warnings.join("\n");
        for want in [
            "objects[0]: unknown key \"objectTpe\" is ignored (line 2 of objects); did you mean \"objectType\"?",
            "objects[0].jmesPath[0]: unknown key \"pth\" is ignored (line 4 of objects); did you mean \"path\"?",
        ] {
            assert!(warnings.contains(want), "{warnings}\nshould contain {want}");
        }
        assert!(
            warnings.contains("\"zzz\" is ignored (line 5 of objects)")
                && !warnings.contains("zzz\" is ignored (line 5 of objects); did")
        );
        let cases = [
            ("objectTpe", Some("objectType")),
            ("OBJECTNAM", Some("objectName")),
            ("objects", None),
            ("x", None),
        ];
        for (written, want) in cases {
            assert_eq!(did_you_mean(written, &["objectName", "objectType", "path"]), want, "{written}");
        }
    }

    #[test]
    fn lines_count_from_the_file_when_told_where_objects_starts() {
        let lines = Lines { first: Some(10) };
        let raw =
            super::parse_objects("- objectName: a\n  objectNme: b\n", &Limits::default(), lines).unwrap();
        assert!(raw.warnings[0].contains("(line 11)"), "{:?}", raw.warnings);
        let raw =
            super::parse_objects("- objectName: a\n- objectName: 'b\n", &Limits::default(), lines).unwrap();
        assert!(raw.problems[0].contains("at line 11"), "{:?}", raw.problems);
        let raw = super::parse_objects("- objectName: [a]\n", &Limits::default(), lines).unwrap();
        assert!(raw.problems[0].ends_with("not a list (line 10)"), "{:?}", raw.problems);
    }

    #[test]
    fn empty_strings_are_unset() {
        let raw =
            parse_objects("- {objectName: a, objectAlias: '', objectVersion: \"\", filePermission: ''}\n");
        let o = &raw.objects[0];
        assert_eq!(
            (o.object_alias.as_deref(), o.object_version.as_deref(), o.file_permission.as_deref()),
            (None, None, None)
        );
        let raw = parse_objects("- {objectName: ' '}\n");
        assert_eq!(raw.objects[0].object_name.as_deref(), Some(" "), "spaces are a value, as in ASCP");
    }
}
