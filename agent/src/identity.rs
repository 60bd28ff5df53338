//! Who the agent ships for: the identity of the journal it reads, not of
//! the machine it runs on, so several agents reading different journal
//! directories are different hosts.
//!
//! Each part comes from the first source that has it: the flag, then the
//! newest entry of the journal being read, then this machine. The newest
//! entry is read natively when the native reader is in use (the last entry
//! of each file, without reading the rest), else — or when that finds
//! nothing — with `journalctl -n 1` and the same source flags.

use crate::config::{is_id128, ReaderKind};
use crate::native;
use crate::reader::JournalSource;
use bytes::BytesMut;
use jr_journal::export::ExportDecoder;
use jr_journal::labels::Labels;
use jr_journal::Entry;
use std::path::Path;
use std::time::Duration;
use thiserror::Error;
use tokio_util::codec::Decoder;

const MACHINE_ID_FILE: &str = "/etc/machine-id";
const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";
/// How long journalctl may take to print the newest entry.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Fields of the probed entry are cut to this; only short labels are used.
const PROBE_FIELD_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// 32 lowercase hex digits.
    pub machine_id: String,
    pub hostname: String,
    /// 32 lowercase hex digits, or empty when unknown.
    pub boot_id: String,
}

#[derive(Debug, Error)]
pub enum IdentityError {
    #[error("no machine id: the journal has no _MACHINE_ID and {path} is unreadable or invalid ({reason}); pass --machine-id")]
    NoMachineId { path: &'static str, reason: String },
}

/// The labels of the newest entry, as owned strings.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NewestEntry {
    pub machine_id: Option<String>,
    pub hostname: Option<String>,
    pub boot_id: Option<String>,
}

/// Reads the newest entry of `source`; `None` when the journal is empty or
/// journalctl fails (the caller falls back to this machine's identity).
pub async fn newest_entry(source: &JournalSource) -> Option<NewestEntry> {
    let mut cmd = source.command();
    cmd.arg("--lines=1");
    let output = match tokio::time::timeout(PROBE_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, journalctl = ?source.journalctl, "cannot run journalctl to learn the journal's identity");
            return None;
        }
        Err(_) => {
            tracing::warn!(
                "journalctl took too long printing the newest entry; using this machine's identity"
            );
            return None;
        }
    };
    if !output.status.success() {
        tracing::warn!(
            status = %output.status,
            stderr = %String::from_utf8_lossy(&output.stderr).trim(),
            "journalctl failed printing the newest entry; using this machine's identity"
        );
    }
    let mut decoder = ExportDecoder::new(PROBE_FIELD_BYTES);
    let mut buf = BytesMut::from(&output.stdout[..]);
    let mut newest = None;
    while let Ok(Some(entry)) = decoder.decode_eof(&mut buf) {
        newest = Some(entry);
    }
    newest.map(|e| labels_of(&e))
}

/// Reads the newest entry of `source` with the native reader; `None` when
/// the journal is empty or cannot be read natively.
pub async fn newest_entry_native(source: &JournalSource) -> Option<NewestEntry> {
    let source = source.clone();
    let found = tokio::task::spawn_blocking(move || native::newest_entry(&source)).await;
    match found {
        Ok(Ok(entry)) => entry.map(|e| labels_of(&e)),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "cannot read the newest entry natively");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the newest entry natively failed");
            None
        }
    }
}

fn labels_of(entry: &Entry) -> NewestEntry {
    let l = Labels::of(&entry.fields);
    NewestEntry {
        machine_id: l
            .machine_id
            .filter(|m| is_id128(m))
            .map(str::to_ascii_lowercase),
        hostname: l.hostname.map(str::to_owned),
        boot_id: l
            .boot_id
            .filter(|b| is_id128(b))
            .map(str::to_ascii_lowercase),
    }
}

fn read_id128(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let id: String = text.trim().chars().filter(|c| *c != '-').collect();
    if is_id128(&id) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(format!("{:?} is not 32 hex digits", text.trim()))
    }
}

/// This machine's hostname.
pub fn system_hostname() -> Option<String> {
    std::fs::read_to_string(HOSTNAME_FILE)
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Combines the flags, the journal's newest entry and this machine.
pub fn resolve(
    machine_id_flag: Option<&str>,
    hostname_flag: Option<&str>,
    newest: Option<&NewestEntry>,
) -> Result<Identity, IdentityError> {
    let from_journal = newest.cloned().unwrap_or_default();
    let machine_id = match machine_id_flag
        .map(str::to_owned)
        .or(from_journal.machine_id)
    {
        Some(m) => m,
        None => {
            read_id128(Path::new(MACHINE_ID_FILE)).map_err(|reason| IdentityError::NoMachineId {
                path: MACHINE_ID_FILE,
                reason,
            })?
        }
    };
    let hostname = hostname_flag
        .map(str::to_owned)
        .or(from_journal.hostname)
        .or_else(system_hostname)
        .unwrap_or_else(|| "localhost".to_owned());
    let boot_id = from_journal
        .boot_id
        .or_else(|| read_id128(Path::new(BOOT_ID_FILE)).ok())
        .unwrap_or_default();
    Ok(Identity {
        machine_id,
        hostname,
        boot_id,
    })
}

/// The identity to ship as: flags, else the journal, else this machine.
pub async fn discover(
    source: &JournalSource,
    reader: ReaderKind,
    machine_id_flag: Option<&str>,
    hostname_flag: Option<&str>,
) -> Result<Identity, IdentityError> {
    let newest = if machine_id_flag.is_some() && hostname_flag.is_some() {
        None
    } else {
        let native = match reader {
            ReaderKind::Native => newest_entry_native(source).await,
            ReaderKind::Journalctl => None,
        };
        match native {
            Some(n) => Some(n),
            None => newest_entry(source).await,
        }
    };
    resolve(machine_id_flag, hostname_flag, newest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_then_journal_then_machine() {
        let newest = NewestEntry {
            machine_id: Some("a".repeat(32)),
            hostname: Some("journal-host".into()),
            boot_id: Some("b".repeat(32)),
        };
        let id = resolve(Some(&"c".repeat(32)), Some("flag-host"), Some(&newest)).unwrap();
        assert_eq!(id.machine_id, "c".repeat(32));
        assert_eq!(id.hostname, "flag-host");
        assert_eq!(id.boot_id, "b".repeat(32));
        let id = resolve(None, None, Some(&newest)).unwrap();
        assert_eq!(id.machine_id, "a".repeat(32));
        assert_eq!(id.hostname, "journal-host");
    }

    #[test]
    fn falls_back_to_this_machine() {
        if read_id128(Path::new(MACHINE_ID_FILE)).is_err() {
            return;
        }
        let id = resolve(None, None, None).unwrap();
        assert!(is_id128(&id.machine_id));
        assert!(!id.hostname.is_empty());
        assert!(id.boot_id.is_empty() || is_id128(&id.boot_id));
    }

    #[test]
    fn id128_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("id");
        std::fs::write(&p, "0123456789ABCDEF0123456789abcdef\n").unwrap();
        assert_eq!(read_id128(&p).unwrap(), "0123456789abcdef0123456789abcdef");
        std::fs::write(&p, "01234567-89ab-cdef-0123-456789abcdef\n").unwrap();
        assert_eq!(read_id128(&p).unwrap(), "0123456789abcdef0123456789abcdef");
        std::fs::write(&p, "uninitialized\n").unwrap();
        assert!(read_id128(&p).is_err());
    }
}
