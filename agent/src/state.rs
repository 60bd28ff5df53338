//! The local state file: the last cursor the server acknowledged, kept as
//! a fallback for a server that has never seen this machine (a new or
//! wiped database). The server's own cursor always wins.
//!
//! Written after every acknowledgement by writing a temporary file and
//! renaming it over the old one, so a crash leaves either the old or the
//! new cursor, never a torn file. It is not fsynced: losing the newest
//! update only means starting from an older acknowledged position.

use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The machine whose journal the cursor belongs to.
    pub machine_id: String,
    /// Last cursor the server acknowledged.
    pub cursor: String,
}

/// Reads the state file; `None` (with a warning where it matters) when it
/// is missing, unreadable or for another machine.
pub async fn load(path: &Path, machine_id: &str) -> Option<State> {
    let text = match tokio::fs::read(path).await {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the state file; ignoring it");
            return None;
        }
    };
    match serde_json::from_slice::<State>(&text) {
        Ok(s) if s.machine_id == machine_id => Some(s),
        Ok(s) => {
            tracing::warn!(
                path = %path.display(),
                file_machine_id = %s.machine_id,
                machine_id,
                "the state file belongs to another machine; ignoring it"
            );
            None
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the state file is not valid; ignoring it");
            None
        }
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces the state file atomically.
pub async fn save(path: &Path, state: &State) -> io::Result<()> {
    let tmp = temp_path(path);
    let mut text = serde_json::to_vec(state).map_err(io::Error::other)?;
    text.push(b'\n');
    tokio::fs::write(&tmp, &text).await?;
    tokio::fs::rename(&tmp, path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_machine_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.state");
        assert_eq!(load(&path, "m1").await, None);
        let s = State {
            machine_id: "m1".into(),
            cursor: "s=1;i=2".into(),
        };
        save(&path, &s).await.unwrap();
        assert_eq!(load(&path, "m1").await, Some(s.clone()));
        assert_eq!(load(&path, "m2").await, None);
        let s2 = State {
            cursor: "s=1;i=3".into(),
            ..s
        };
        save(&path, &s2).await.unwrap();
        assert_eq!(load(&path, "m1").await, Some(s2));
        assert!(!temp_path(&path).exists());
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(load(&path, "m1").await, None);
    }
}
