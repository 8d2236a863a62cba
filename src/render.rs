//! Fetched values -> the files of a mount and their object versions: jmesPath extraction,
//! file names, modes. Pure: the caller decides whether the driver or the provider writes.

use jmespath::Variable;

use crate::aws::FetchedSecret;
use crate::class::SecretProviderClass;
use crate::secret::SecretBytes;

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
}

/// Renders every object of the class; `values[i]` is the fetched value of `class.objects[i]`.
pub fn render(class: &SecretProviderClass, values: &[FetchedSecret]) -> Result<Rendered, RenderError> {
    let mut out = Rendered::default();
    for (object, fetched) in class.objects.iter().zip(values) {
        out.push(&object.file, object.mode, fetched.value.clone(), &fetched.version);
        if object.jmes_path.is_empty() {
            continue;
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
                other => {
                    let (object, path, file) = context();
                    let kind = other.get_type().to_string();
                    return Err(RenderError::NotString { object, path, file, kind });
                }
            };
            out.push(&entry.file, entry.mode, SecretBytes::from(text), &fetched.version);
        }
    }
    Ok(out)
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
        let rendered = render(&class, std::slice::from_ref(&value)).unwrap();
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
            let err = render(&class, std::slice::from_ref(&value)).unwrap_err().to_string();
            assert!(err.contains(want), "{path}: {err}");
            assert!(err.contains("\"db\""), "{err} should name the object");
            assert!(!err.contains("admin"), "{err} leaks the value");
        }
    }

    #[test]
    fn binary_values_pass_through_untouched() {
        let class = class("- {objectName: bin, objectType: secretsmanager}");
        let value = FetchedSecret { value: SecretBytes::new(vec![0, 159, 146, 150]), version: "v9".into() };
        let rendered = render(&class, std::slice::from_ref(&value)).unwrap();
        assert_eq!(rendered.files[0].contents.expose(), &[0, 159, 146, 150]);
        assert_eq!(rendered.versions[0], FileVersion { id: "bin".into(), version: "v9".into() });
    }
}
