//! Provider-writes mode: the mount's files written under the target directory atomically and
//! all-or-nothing. Every file goes to a temp file first; only when all are written are they
//! renamed into place. Nothing is followed through symlinks and nothing lands outside the
//! target directory.

use std::borrow::Borrow;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::render::RenderedFile;

/// A write that failed; names the file, never the contents.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("target path {0:?} is not an existing directory")]
    NoTarget(PathBuf),
    #[error("cannot write {path:?} in the target directory: {reason}")]
    Unsafe { path: String, reason: String },
    #[error("writing {path:?} in the target directory failed: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Mode of directories created for paths kept by `pathTranslation: False`.
const DIR_MODE: u32 = 0o755;

/// Writes every file below `target`, or none of them.
pub fn write_all<F: Borrow<RenderedFile>>(target: &Path, files: &[F]) -> Result<(), WriteError> {
    let meta = fs::symlink_metadata(target).map_err(|_| WriteError::NoTarget(target.to_owned()))?;
    if !meta.is_dir() {
        return Err(WriteError::NoTarget(target.to_owned()));
    }
    let mut staged: Vec<(PathBuf, PathBuf, &str)> = Vec::with_capacity(files.len());
    let mut renamed = 0;
    let result = files
        .iter()
        .map(Borrow::borrow)
        .try_for_each(|file| {
            let (temp, dest) = stage(target, file)?;
            staged.push((temp, dest, &file.path));
            Ok(())
        })
        .and_then(|()| {
            staged.iter().try_for_each(|(temp, dest, path)| {
                fs::rename(temp, dest)
                    .map_err(|source| WriteError::Io { path: (*path).to_owned(), source })?;
                renamed += 1;
                Ok(())
            })
        });
    // Renames done cannot be undone; leave no temp files behind at least.
    for (temp, _, _) in &staged[renamed..] {
        let _ = fs::remove_file(temp);
    }
    result
}

/// Writes one file's contents to a fresh temp file next to its destination.
fn stage(target: &Path, file: &RenderedFile) -> Result<(PathBuf, PathBuf), WriteError> {
    let io = |source| WriteError::Io { path: file.path.clone(), source };
    let dir = ensure_parent(target, &file.path)?;
    let name = file.path.rsplit('/').next().unwrap_or(&file.path);
    let dest = dir.join(name);
    if fs::symlink_metadata(&dest).is_ok_and(|meta| meta.is_dir()) {
        return Err(WriteError::Unsafe {
            path: file.path.clone(),
            reason: "a directory of that name exists".into(),
        });
    }
    let temp = dir.join(temp_name(name));
    let mut handle = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temp)
        .map_err(io)?;
    let written = handle
        .write_all(file.contents.expose())
        .and_then(|()| handle.set_permissions(fs::Permissions::from_mode(file.mode)))
        .and_then(|()| handle.sync_data());
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io(e));
    }
    Ok((temp, dest))
}

/// Creates the directories of `path` below `target`, refusing to pass through symlinks.
fn ensure_parent(target: &Path, path: &str) -> Result<PathBuf, WriteError> {
    let mut dir = target.to_owned();
    for component in path.rsplit_once('/').into_iter().flat_map(|(parents, _)| parents.split('/')) {
        dir.push(component);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(WriteError::Unsafe {
                    path: path.to_owned(),
                    reason: format!("{component:?} exists and is not a directory (or is a symlink)"),
                });
            }
            Err(_) => fs::DirBuilder::new()
                .mode(DIR_MODE)
                .create(&dir)
                .map_err(|source| WriteError::Io { path: path.to_owned(), source })?,
        }
    }
    Ok(dir)
}

/// A hidden, unique temp name, so a crash never leaves a file that looks like a secret.
fn temp_name(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Keep the temp name within NAME_MAX even for 255-byte file names.
    let stem: String = name.chars().take(200).collect();
    format!(".{stem}.tmp-{}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::path::Path;

    use super::*;
    use crate::render::RenderedFile;
    use crate::secret::SecretBytes;

    fn file(path: &str, mode: u32, contents: &str) -> RenderedFile {
        RenderedFile { path: path.into(), mode, contents: SecretBytes::from(contents.to_string()) }
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if entry.file_type().unwrap().is_dir() {
                out.extend(listing(&entry.path()).into_iter().map(|n| format!("{name}/{n}")));
            } else {
                out.push(name);
            }
        }
        out.sort();
        out
    }

    #[test]
    fn writes_files_with_modes_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path(), &[file("a", 0o600, "1"), file("x/y/b", 0o640, "2")]).unwrap();
        assert_eq!(listing(dir.path()), vec!["a", "x/y/b"]);
        assert_eq!(fs::read_to_string(dir.path().join("x/y/b")).unwrap(), "2");
        let mode = fs::metadata(dir.path().join("a")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Rewriting replaces the contents (rotation).
        write_all(dir.path(), &[file("a", 0o644, "new")]).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "new");
        assert_eq!(listing(dir.path()), vec!["a", "x/y/b"]);
    }

    #[test]
    fn nothing_is_written_when_one_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("blocked")).unwrap();
        let err = write_all(dir.path(), &[file("a", 0o644, "1"), file("blocked", 0o644, "2")]).unwrap_err();
        assert!(err.to_string().contains("\"blocked\""), "{err}");
        assert_eq!(listing(dir.path()), Vec::<String>::new(), "no file and no temp file may remain");
    }

    #[test]
    fn symlinks_in_the_target_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), dir.path().join("link")).unwrap();
        let err = write_all(dir.path(), &[file("link/secret", 0o644, "s")]).unwrap_err();
        assert!(matches!(err, WriteError::Unsafe { .. }), "{err}");
        // A symlink at the file's own name is replaced, not written through.
        let victim = outside.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        symlink(&victim, dir.path().join("f")).unwrap();
        write_all(dir.path(), &[file("f", 0o644, "s")]).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert!(!fs::symlink_metadata(dir.path().join("f")).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_target_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_all(&dir.path().join("nope"), &[file("a", 0o644, "1")]).unwrap_err();
        assert!(matches!(err, WriteError::NoTarget(_)));
    }
}
