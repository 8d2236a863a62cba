//! Fetched objects -> the files of a mount, each with its object version: jmesPath
//! extraction, expanded JSON, collection entries, names, modes. Pure: the caller decides
//! whether the driver or the provider writes.

use std::collections::BTreeMap;

use jmespath::Variable;

use crate::class::naming::check_file_path;
use crate::class::{CollectionObject, Encoding, NamedObject, PathTranslation};
pub use crate::fetched::Fetched;
use crate::fetched::{Entries, FetchedSecret};
use crate::secret::SecretBytes;

/// One file of the mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Relative, clean path below the target directory.
    pub path: String,
    pub mode: u32,
    pub contents: SecretBytes,
}

/// A file with the version reported to the driver for it (`id` = its path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedFile {
    pub file: RenderedFile,
    /// Secrets Manager VersionId or Parameter Store version of the object it came from.
    pub version: String,
}

impl std::borrow::Borrow<RenderedFile> for VersionedFile {
    fn borrow(&self) -> &RenderedFile {
        &self.file
    }
}

/// Everything a mount produces, in class order.
#[derive(Debug, Default)]
pub struct Rendered {
    pub files: Vec<VersionedFile>,
}

impl Rendered {
    /// Total bytes of file contents.
    pub fn size(&self) -> usize {
        self.files.iter().map(|f| f.file.contents.len()).sum()
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
    Decode { object: String, file: String, encoding: Encoding, reason: String },
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

/// Renders every fetched object, in order, checking that no two files collide.
pub fn render(path_translation: PathTranslation, fetched: &[Fetched<'_>]) -> Result<Rendered, RenderError> {
    let mut out = Files { path_translation, rendered: Rendered::default(), owners: BTreeMap::new() };
    for object in fetched {
        match object {
            Fetched::One(object, value) => out.object(object, value)?,
            Fetched::Many(object, entries) => out.collection(object, entries)?,
        }
    }
    // With pathTranslation False, a file cannot also be another's directory.
    for (file, owner) in &out.owners {
        for (slash, _) in file.match_indices('/') {
            if out.owners.contains_key(&file[..slash]) {
                return Err(RenderError::Conflict { object: owner.clone(), file: file[..slash].to_owned() });
            }
        }
    }
    Ok(out.rendered)
}

/// The files rendered so far and which object wrote each.
struct Files {
    path_translation: PathTranslation,
    rendered: Rendered,
    owners: BTreeMap<String, String>,
}

impl Files {
    /// Adds one file, decoded as `encoding`; names collide when entries are named after
    /// what was fetched.
    fn push(
        &mut self,
        owner: &str,
        path: &str,
        mode: u32,
        encoding: Encoding,
        bytes: &[u8],
        version: &str,
    ) -> Result<(), RenderError> {
        let contents = encoding.decode(bytes).map(SecretBytes::new).map_err(|reason| {
            RenderError::Decode { object: owner.to_owned(), file: path.to_owned(), encoding, reason }
        })?;
        if self.owners.insert(path.to_owned(), owner.to_owned()).is_some() {
            return Err(RenderError::Conflict { object: owner.to_owned(), file: path.to_owned() });
        }
        let file = RenderedFile { path: path.to_owned(), mode, contents };
        self.rendered.files.push(VersionedFile { file, version: version.to_owned() });
        Ok(())
    }

    /// A file named after a fetched entry or key: it must be a safe path.
    fn entry_path(&self, owner: &str, entry: &str, name: &str) -> Result<String, RenderError> {
        let file = self.path_translation.apply(name);
        check_file_path(&file).map_err(|reason| RenderError::BadEntry {
            object: owner.to_owned(),
            entry: entry.to_owned(),
            reason,
        })?;
        Ok(file)
    }

    fn object(&mut self, object: &NamedObject, fetched: &FetchedSecret) -> Result<(), RenderError> {
        let (name, version) = (object.name.as_str(), fetched.version.as_str());
        self.push(name, &object.file, object.mode, object.encoding, fetched.value.expose(), version)?;
        if object.jmes_path.is_empty() && object.expand_json.is_none() {
            return Ok(());
        }
        let document = fetched
            .value
            .expose_str()
            .and_then(|text| Variable::from_json(text).ok())
            .ok_or_else(|| RenderError::NotJson { object: name.to_owned() })?;
        for entry in &object.jmes_path {
            let context = || (name.to_owned(), entry.path.clone(), entry.file.clone());
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
            self.push(name, &entry.file, entry.mode, entry.encoding, text.as_bytes(), version)?;
        }
        if let Some(expand) = &object.expand_json {
            let map: serde_json::Map<String, serde_json::Value> = fetched
                .value
                .expose_str()
                .and_then(|text| serde_json::from_str(text).ok())
                .ok_or_else(|| RenderError::NotJsonObject { object: name.to_owned() })?;
            let keys: Vec<&String> = match &expand.keys {
                Some(keys) => keys.iter().collect(),
                None => map.keys().collect(),
            };
            for key in keys {
                let value = map
                    .get(key)
                    .ok_or_else(|| RenderError::MissingKey { object: name.to_owned(), key: key.clone() })?;
                let file = self.entry_path(name, key, key)?;
                // Strings as they are, anything else as compact JSON.
                let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
                self.push(name, &file, object.mode, Encoding::Raw, text.as_bytes(), version)?;
            }
        }
        Ok(())
    }

    fn collection(&mut self, object: &CollectionObject, entries: &Entries) -> Result<(), RenderError> {
        let owner = object.collection.to_string();
        for (name, fetched) in entries {
            let file = self.entry_path(&owner, name, object.collection.relative(name))?;
            self.push(&owner, &file, object.mode, object.encoding, fetched.value.expose(), &fetched.version)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::FetchedSecret;
    use crate::class::{Parameters, SecretObject, SecretProviderClass};
    use crate::secret::SecretBytes;

    fn class(objects: &str) -> SecretProviderClass {
        let params = Parameters { objects: Some(objects.into()), ..Parameters::default() };
        SecretProviderClass::parse(&params, 0o644).unwrap()
    }

    /// Renders the class's one named object with `value`.
    fn render_one(class: &SecretProviderClass, value: FetchedSecret) -> Result<Rendered, RenderError> {
        let SecretObject::Named(object) = &class.objects[0] else { panic!("a named object") };
        render(class.parameters.path_translation, &[Fetched::One(object, value)])
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
        let rendered = render_one(&class, value).unwrap();
        let files: Vec<(&str, u32, &[u8])> = rendered
            .files
            .iter()
            .map(|f| (f.file.path.as_str(), f.file.mode, f.file.contents.expose()))
            .collect();
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
        assert!(rendered.files.iter().all(|f| f.version == "v1"));
        assert_eq!(rendered.files[1].file.path, "user");
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
            let err = render_one(&class, value).unwrap_err().to_string();
            assert!(err.contains(want), "{path}: {err}");
            assert!(err.contains("\"db\""), "{err} should name the object");
            assert!(!err.contains("admin"), "{err} leaks the value");
        }
    }

    #[test]
    fn binary_values_pass_through_untouched() {
        let class = class("- {objectName: bin, objectType: secretsmanager}");
        let value = FetchedSecret { value: SecretBytes::new(vec![0, 159, 146, 150]), version: "v9".into() };
        let rendered = render_one(&class, value).unwrap();
        assert_eq!(rendered.files[0].file.contents.expose(), &[0, 159, 146, 150]);
        assert_eq!((rendered.files[0].file.path.as_str(), rendered.files[0].version.as_str()), ("bin", "v9"));
    }

    #[test]
    fn collection_entries_carry_their_own_versions_and_may_not_collide() {
        let class = class(
            "- {objectType: ssmparameter, path: /app/, filePermission: '0600'}\n- {objectName: one, objectType: secretsmanager}",
        );
        let (SecretObject::Collection(set), SecretObject::Named(one)) =
            (&class.objects[0], &class.objects[1])
        else {
            panic!("a collection, then a named object")
        };
        let entry = |name: &str, version: &str| {
            (
                name.to_owned(),
                FetchedSecret { value: SecretBytes::from(name.to_owned()), version: version.into() },
            )
        };
        let objects = [
            Fetched::Many(set, vec![entry("/app/a", "3"), entry("/app/b/c", "7")]),
            Fetched::One(one, fetched("x")),
        ];
        let rendered = render(class.parameters.path_translation, &objects).unwrap();
        let files: Vec<(&str, u32, &str)> =
            rendered.files.iter().map(|f| (f.file.path.as_str(), f.file.mode, f.version.as_str())).collect();
        assert_eq!(files, vec![("a", 0o600, "3"), ("b_c", 0o600, "7"), ("one", 0o644, "v1")]);

        let cases = [
            (vec![entry("/app/one", "1")], "would both write the file \"one\""),
            (vec![entry("/app/..", "1")], "entry \"/app/..\" cannot be a file"),
        ];
        for (entries, want) in cases {
            let objects = [Fetched::Many(set, entries), Fetched::One(one, fetched("x"))];
            let err = render(class.parameters.path_translation, &objects).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
