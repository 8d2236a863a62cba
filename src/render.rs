//! Fetched values -> the files of a mount and their object versions: jmesPath extraction,
//! file names, modes. Pure: the caller decides whether the driver or the provider writes.

use std::collections::BTreeSet;

use jmespath::Variable;

use crate::aws::FetchedSecret;
use crate::class::naming::check_file_path;
use crate::class::{Encoding, SecretObject, SecretProviderClass};
use crate::secret::SecretBytes;

/// What was fetched for one object: its value, or the entries of a collection.
#[derive(Debug, Clone)]
pub enum ObjectValue {
    One(FetchedSecret),
    Many(Vec<(String, FetchedSecret)>),
}

/// One file of the mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Relative, clean path below the target directory.
    pub path: String,
    pub mode: u32,
    pub contents: SecretBytes,
}

/// The version reported to the driver for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileVersion {
    pub id: String,
    pub version: String,
}

/// Everything a mount produces.
#[derive(Debug, Default)]
pub struct Rendered {
    pub files: Vec<RenderedFile>,
    pub versions: Vec<FileVersion>,
}

impl Rendered {
    /// Total bytes of file contents.
    pub fn size(&self) -> usize {
        self.files.iter().map(|f| f.contents.len()).sum()
    }
}

/// A value that cannot become the requested files. Names the object and the fix; never
/// includes the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(
        "object {object:?}: jmesPath needs the secret to be JSON, but its value is not valid \
         JSON; store a JSON object or remove jmesPath"
    )]
    NotJson { object: String },
    #[error(
        "object {object:?}: jmesPath {path:?} (file {file:?}) matches nothing in the secret; \
         check the key names (keys with '-' must be quoted, e.g. '\"db-user\"')"
    )]
    NoMatch { object: String, path: String, file: String },
    #[error(
        "object {object:?}: jmesPath {path:?} (file {file:?}) selects a value of type {kind}, but only \
         strings can be mounted; select a string value"
    )]
    NotString { object: String, path: String, file: String, kind: String },
    #[error("object {object:?}: jmesPath {path:?} (file {file:?}) could not be evaluated on the secret")]
    Evaluation { object: String, path: String, file: String },
    #[error(
        "object {object:?}: cannot decode the file {file:?} as {encoding}: {reason}; fix the stored value or the encoding"
    )]
    Decode { object: String, file: String, encoding: &'static str, reason: String },
    #[error("object {object:?}: entry {entry:?} cannot be a file: {reason}")]
    BadEntry { object: String, entry: String, reason: String },
    #[error(
        "two entries would both write the file {file:?} (the second from object {object:?}); give \
         objects distinct aliases, narrow a path, or use expandJsonKeys"
    )]
    Conflict { object: String, file: String },
    #[error(
        "object {object:?}: expandJson needs the secret to be a JSON object; store one or remove expandJson"
    )]
    NotJsonObject { object: String },
    #[error("object {object:?}: expandJsonKeys lists {key:?}, which the secret does not have")]
    MissingKey { object: String, key: String },
}

fn encoding_name(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Raw => "raw bytes",
        Encoding::Base64 => "base64",
        Encoding::Hex => "hex",
        Encoding::Utf8 => "UTF-8",
    }
}

fn decode(
    object: &SecretObject,
    file: &str,
    encoding: Encoding,
    bytes: &[u8],
) -> Result<SecretBytes, RenderError> {
    encoding.decode(bytes).map(SecretBytes::new).map_err(|reason| RenderError::Decode {
        object: object.name.clone(),
        file: file.to_owned(),
        encoding: encoding_name(encoding),
        reason,
    })
}

/// A jmesPath or expandJson selection as file contents: strings as they are, anything else
/// (when allowed) as compact JSON.
fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders every object of the class; `values[i]` is what was fetched for `class.objects[i]`.
pub fn render(class: &SecretProviderClass, values: &[ObjectValue]) -> Result<Rendered, RenderError> {
    let mut out = Rendered::default();
    for (object, value) in class.objects.iter().zip(values) {
        match value {
            ObjectValue::Many(entries) => render_collection(class, object, entries, &mut out)?,
            ObjectValue::One(fetched) => render_object(class, object, fetched, &mut out)?,
        }
    }
    check_unique(&out, class)?;
    Ok(out)
}

fn render_object(
    class: &SecretProviderClass,
    object: &SecretObject,
    fetched: &FetchedSecret,
    out: &mut Rendered,
) -> Result<(), RenderError> {
    let contents = decode(object, &object.file, object.encoding, fetched.value.expose())?;
    out.push(&object.file, object.mode, contents, &fetched.version);
    if object.jmes_path.is_empty() && object.expand_json.is_none() {
        return Ok(());
    }
    let document = fetched
        .value
        .expose_str()
        .and_then(|text| Variable::from_json(text).ok())
        .ok_or_else(|| RenderError::NotJson { object: object.name.clone() })?;
    for entry in &object.jmes_path {
        let context = || (object.name.clone(), entry.path.clone(), entry.file.clone());
        let result = entry.expression.search(&document).map_err(|_| {
            let (object, path, file) = context();
            RenderError::Evaluation { object, path, file }
        })?;
        let text = match &*result {
            Variable::String(text) => text.clone(),
            Variable::Null => {
                let (object, path, file) = context();
                return Err(RenderError::NoMatch { object, path, file });
            }
            other if entry.allow_non_string => serde_json::to_string(other).unwrap_or_default(),
            other => {
                let (object, path, file) = context();
                let kind = other.get_type().to_string();
                return Err(RenderError::NotString { object, path, file, kind });
            }
        };
        let contents = decode(object, &entry.file, entry.encoding, text.as_bytes())?;
        out.push(&entry.file, entry.mode, contents, &fetched.version);
    }
    if let Some(expand) = &object.expand_json {
        let map: serde_json::Map<String, serde_json::Value> = fetched
            .value
            .expose_str()
            .and_then(|text| serde_json::from_str(text).ok())
            .ok_or_else(|| RenderError::NotJsonObject { object: object.name.clone() })?;
        let keys: Vec<&String> = match &expand.keys {
            Some(keys) => keys.iter().collect(),
            None => map.keys().collect(),
        };
        for key in keys {
            let value = map
                .get(key)
                .ok_or_else(|| RenderError::MissingKey { object: object.name.clone(), key: key.clone() })?;
            let file = class.path_translation.apply(key);
            check_file_path(&file).map_err(|reason| RenderError::BadEntry {
                object: object.name.clone(),
                entry: key.clone(),
                reason,
            })?;
            out.push(&file, object.mode, SecretBytes::from(json_text(value)), &fetched.version);
        }
    }
    Ok(())
}

fn render_collection(
    class: &SecretProviderClass,
    object: &SecretObject,
    entries: &[(String, FetchedSecret)],
    out: &mut Rendered,
) -> Result<(), RenderError> {
    let Some(collection) = &object.collection else { return Ok(()) };
    for (name, fetched) in entries {
        let file = class.path_translation.apply(collection.relative(name));
        check_file_path(&file).map_err(|reason| RenderError::BadEntry {
            object: object.name.clone(),
            entry: name.clone(),
            reason,
        })?;
        let contents = decode(object, &file, object.encoding, fetched.value.expose())?;
        out.push(&file, object.mode, contents, &fetched.version);
    }
    Ok(())
}

/// Files named after fetched entries can collide with each other or with declared files.
fn check_unique(out: &Rendered, class: &SecretProviderClass) -> Result<(), RenderError> {
    let mut seen = BTreeSet::new();
    let owner = |file: &str| {
        class
            .objects
            .iter()
            .find(|o| o.files().any(|(f, _)| f == file))
            .map_or_else(String::new, |o| o.name.clone())
    };
    for file in out.files.iter().map(|f| f.path.as_str()) {
        if !seen.insert(file) {
            return Err(RenderError::Conflict { object: owner(file), file: file.to_owned() });
        }
    }
    for file in &seen {
        for (slash, _) in file.match_indices('/') {
            if seen.contains(&file[..slash]) {
                return Err(RenderError::Conflict { object: owner(file), file: file[..slash].to_owned() });
            }
        }
    }
    Ok(())
}

impl Rendered {
    fn push(&mut self, path: &str, mode: u32, contents: SecretBytes, version: &str) {
        self.files.push(RenderedFile { path: path.to_owned(), mode, contents });
        self.versions.push(FileVersion { id: path.to_owned(), version: version.to_owned() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::Parameters;

    fn class(objects: &str) -> SecretProviderClass {
        let params = Parameters { objects: Some(objects.into()), ..Parameters::default() };
        SecretProviderClass::parse(&params, 0o644).unwrap()
    }

    fn fetched(value: &str) -> FetchedSecret {
        FetchedSecret { value: SecretBytes::from(value.to_string()), version: "v1".into() }
    }

    const JSON: &str = r#"{"username":"admin","db-port":"5432","port":5432,"nested":{"k":"v"},"empty":""}"#;

    #[test]
    fn jmes_path_files_carry_the_parent_version_and_the_whole_secret_is_mounted() {
        let class = class(
            "- objectName: db\n  objectType: secretsmanager\n  jmesPath:\n    \
             - {path: username, objectAlias: user}\n    \
             - {path: '\"db-port\"', objectAlias: port, filePermission: '0400'}\n    \
             - {path: nested.k, objectAlias: k}\n    \
             - {path: empty, objectAlias: e}",
        );
        let value = fetched(JSON);
        let rendered = render(&class, &[ObjectValue::One(value.clone())]).unwrap();
        let files: Vec<(&str, u32, &[u8])> =
            rendered.files.iter().map(|f| (f.path.as_str(), f.mode, f.contents.expose())).collect();
        assert_eq!(
            files,
            vec![
                ("db", 0o644, JSON.as_bytes()),
                ("user", 0o644, &b"admin"[..]),
                ("port", 0o400, &b"5432"[..]),
                ("k", 0o644, &b"v"[..]),
                ("e", 0o644, &b""[..]),
            ]
        );
        assert!(rendered.versions.iter().all(|v| v.version == "v1"));
        assert_eq!(rendered.versions[1].id, "user");
    }

    #[test]
    fn jmes_path_errors_say_what_is_wrong() {
        let cases = [
            ("username", "not json", "is not valid JSON"),
            ("missing", JSON, "matches nothing"),
            ("port", JSON, "selects a value of type number"),
            ("nested", JSON, "of type object"),
            ("[username]", JSON, "of type array"),
        ];
        for (path, value, want) in cases {
            let class = class(&format!(
                "- objectName: db\n  objectType: secretsmanager\n  jmesPath: [{{path: '{path}', objectAlias: out}}]"
            ));
            let value = fetched(value);
            let err = render(&class, &[ObjectValue::One(value.clone())]).unwrap_err().to_string();
            assert!(err.contains(want), "{path}: {err}");
            assert!(err.contains("\"db\""), "{err} should name the object");
            assert!(!err.contains("admin"), "{err} leaks the value");
        }
    }

    #[test]
    fn binary_values_pass_through_untouched() {
        let class = class("- {objectName: bin, objectType: secretsmanager}");
        let value = FetchedSecret { value: SecretBytes::new(vec![0, 159, 146, 150]), version: "v9".into() };
        let rendered = render(&class, &[ObjectValue::One(value.clone())]).unwrap();
        assert_eq!(rendered.files[0].contents.expose(), &[0, 159, 146, 150]);
        assert_eq!(rendered.versions[0], FileVersion { id: "bin".into(), version: "v9".into() });
    }
}
