//! File names: objectAlias or objectName, `pathTranslation` applied, and the rules the driver
//! puts on the paths a provider returns (relative, clean, bounded).

/// How `/` in an object name is treated (`pathTranslation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathTranslation {
    /// Replace every `/` with this character (default `_`).
    Replace(char),
    /// `False`: keep `/` as directories, with leading slashes stripped.
    Keep,
}

impl Default for PathTranslation {
    fn default() -> Self {
        Self::Replace('_')
    }
}

impl PathTranslation {
    /// Parses the `pathTranslation` parameter as ASCP does: empty means `_`, `False` keeps
    /// slashes, anything else must be exactly one character.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        let value = value.unwrap_or("");
        if value.is_empty() {
            return Ok(Self::default());
        }
        if value.eq_ignore_ascii_case("false") {
            return Ok(Self::Keep);
        }
        let mut chars = value.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c != '\0' => Ok(Self::Replace(c)),
            _ => Err(format!(
                "pathTranslation {value:?} is invalid: use a single character such as \"_\", \
                 or \"False\" to keep '/' as directories"
            )),
        }
    }

    /// The file path for an object (or jmesPath) name.
    pub fn apply(self, name: &str) -> String {
        match self {
            Self::Replace(c) => name.replace('/', c.encode_utf8(&mut [0; 4])),
            Self::Keep => name.trim_start_matches('/').to_owned(),
        }
    }
}

/// Longest file name component Linux accepts.
const MAX_COMPONENT: usize = 255;
/// Longest path Linux accepts.
const MAX_PATH: usize = 4096;

/// Checks that `path` is safe to create under the target directory and acceptable to the
/// driver: relative, no `..`/`.`/empty components, no NUL, bounded lengths.
pub fn check_file_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the file name is empty".into());
    }
    if path.starts_with('/') {
        return Err(format!("file path {path:?} must be relative"));
    }
    if path.contains('\0') {
        return Err(format!("file path {path:?} contains a NUL character"));
    }
    if path.len() > MAX_PATH {
        return Err(format!("file path is {} bytes long; the limit is {MAX_PATH}", path.len()));
    }
    for component in path.split('/') {
        match component {
            ".." => return Err(format!("file path {path:?} may not contain '..'")),
            "." | "" => {
                return Err(format!(
                    "file path {path:?} is not clean (empty or '.' component, or a trailing '/')"
                ));
            }
            c if c.len() > MAX_COMPONENT => {
                return Err(format!(
                    "file name component {:?}... is {} bytes long; the limit is {MAX_COMPONENT}",
                    &c[..c.char_indices().nth(32).map_or(c.len(), |(i, _)| i)],
                    c.len()
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_translation() {
        let cases: &[(Option<&str>, Result<PathTranslation, ()>)] = &[
            (None, Ok(PathTranslation::Replace('_'))),
            (Some(""), Ok(PathTranslation::Replace('_'))),
            (Some("-"), Ok(PathTranslation::Replace('-'))),
            (Some("é"), Ok(PathTranslation::Replace('é'))),
            (Some("False"), Ok(PathTranslation::Keep)),
            (Some("false"), Ok(PathTranslation::Keep)),
            (Some("__"), Err(())),
            (Some("true"), Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(PathTranslation::parse(*input).map_err(|_| ()), *want, "{input:?}");
        }
    }

    #[test]
    fn apply_translation() {
        let cases = [
            (PathTranslation::Replace('_'), "/app/db/password", "_app_db_password"),
            (PathTranslation::Replace('-'), "a/b", "a-b"),
            (PathTranslation::Replace('_'), "plain", "plain"),
            (PathTranslation::Keep, "/app/db/password", "app/db/password"),
            (PathTranslation::Keep, "//x", "x"),
            (PathTranslation::Keep, "a/b", "a/b"),
        ];
        for (translation, name, want) in cases {
            assert_eq!(translation.apply(name), want, "{translation:?} {name}");
        }
    }

    #[test]
    fn file_path_rules() {
        let long = "x".repeat(256);
        let ok =
            ["a", "a/b", "arn:aws:secretsmanager:us-east-1:1:secret:x", "..a", "a..", "x".repeat(255).leak()];
        let bad = ["", "/a", "..", "a/../b", "../a", "a/..", "a//b", "a/./b", "a/", "a\0b", long.as_str()];
        for path in ok {
            assert!(check_file_path(path).is_ok(), "{path:?} should be accepted");
        }
        for path in bad {
            assert!(check_file_path(path).is_err(), "{path:?} should be rejected");
        }
        assert!(check_file_path(&"a/".repeat(2100)).is_err());
    }
}
