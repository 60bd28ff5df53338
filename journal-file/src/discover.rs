//! Which files make up a journal directory, as sd-journal finds them:
//! `*.journal` and `*.journal~` files in the directory and in its
//! machine-id subdirectories.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

fn is_journal_name(name: &str) -> bool {
    name.ends_with(".journal") || name.ends_with(".journal~")
}

fn is_machine_id(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The journal files of `dir` and of its machine-id subdirectories, in
/// directory order: sd-journal adds files in that order, and it decides
/// which of two files yields first when their entries compare equal.
pub fn journal_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    collect(dir, true, &mut out)?;
    Ok(out)
}

fn collect(dir: &Path, descend: bool, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for de in fs::read_dir(dir)? {
        let de = de?;
        let name = de.file_name();
        let Some(name) = name.to_str() else { continue };
        let ty = de.file_type()?;
        if ty.is_file() && is_journal_name(name) {
            out.push(de.path());
        } else if ty.is_dir() && descend && is_machine_id(name) {
            // A subdirectory may vanish between listing and reading.
            match collect(&de.path(), false, out) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                r => r?,
            }
        }
    }
    Ok(())
}

/// Where journald keeps the system journal: persistent, then volatile.
/// Each holds a directory per machine id (and `<machine-id>.<namespace>`
/// for namespaces).
pub const SYSTEM_JOURNAL_ROOTS: [&str; 2] = ["/var/log/journal", "/run/log/journal"];

/// The directories of the local system journal that exist: persistent
/// (`/var/log/journal/<machine-id>`) and volatile
/// (`/run/log/journal/<machine-id>`), or the roots when the machine id is
/// unknown.
pub fn system_journal_dirs() -> Vec<PathBuf> {
    let machine_id = fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| is_machine_id(s));
    SYSTEM_JOURNAL_ROOTS
        .iter()
        .map(|root| match &machine_id {
            Some(id) => Path::new(root).join(id),
            None => PathBuf::from(root),
        })
        .filter(|p| p.is_dir())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_journal_files_and_machine_id_subdirs() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("0123456789abcdef0123456789abcdef");
        fs::create_dir(&sub).unwrap();
        fs::create_dir(d.path().join("other")).unwrap();
        for p in [
            d.path().join("system.journal"),
            d.path().join("user-1000@x.journal~"),
            d.path().join("notes.txt"),
            sub.join("system.journal"),
            d.path().join("other/system.journal"),
        ] {
            fs::write(p, b"").unwrap();
        }
        let mut got = journal_files(d.path()).unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![
                sub.join("system.journal"),
                d.path().join("system.journal"),
                d.path().join("user-1000@x.journal~"),
            ]
        );
    }
}
