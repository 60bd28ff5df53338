//! Bearer tokens (`--tokens-file`): a TOML file of `[[tokens]]`, each with
//! a name (shown in logs and errors, never the secret), the token, its
//! roles and, for agents, an optional machine id the token may write as.
//!
//! ```toml
//! [[tokens]]
//! name = "web-1"
//! token = "5f0c…"            # at least 16 characters
//! roles = ["agent"]
//! machine-id = "0123456789abcdef0123456789abcdef"   # optional
//! ```
//!
//! Lookup compares the presented token with every configured one in
//! constant time (a few lines here rather than a dependency), so the time
//! an answer takes does not tell how much of a guess was right.

use super::{Principal, Role};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Error)]
pub enum TokensError {
    #[error("cannot read --tokens-file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--tokens-file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("--tokens-file {path}: token {name:?}: {reason}")]
    Invalid {
        path: PathBuf,
        name: String,
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tokens: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Entry {
    name: String,
    token: String,
    roles: Vec<Role>,
    machine_id: Option<String>,
}

/// The tokens of one version of the file.
#[derive(Debug, Default)]
pub struct Tokens {
    entries: Vec<(Vec<u8>, Principal)>,
}

impl Tokens {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_owned(),
            source,
        })?;
        warn_if_readable_by_others(path);
        Self::parse(&text, path)
    }

    /// Parses the text of a tokens file (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Tokens, TokensError> {
        let file: File = toml::from_str(text).map_err(|source| TokensError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let mut entries: Vec<(Vec<u8>, Principal)> = Vec::with_capacity(file.tokens.len());
        for e in file.tokens {
            let invalid = |reason: String| TokensError::Invalid {
                path: path.to_owned(),
                name: e.name.clone(),
                reason,
            };
            if e.token.trim().len() < MIN_TOKEN_LEN {
                return Err(invalid(format!(
                    "the token is shorter than {MIN_TOKEN_LEN} characters"
                )));
            }
            if e.roles.is_empty() {
                return Err(invalid("roles is empty: give agent, reader or both".into()));
            }
            let machine_id = match &e.machine_id {
                Some(m) if !e.roles.contains(&Role::Agent) => {
                    return Err(invalid(format!(
                        "machine-id {m:?} binds an agent, but the roles do not include agent"
                    )))
                }
                Some(m) if jr_agent::config::is_id128(m) => Some(m.to_ascii_lowercase()),
                Some(m) => return Err(invalid(format!("machine-id {m:?} is not 32 hex digits"))),
                None => None,
            };
            let secret = e.token.trim().as_bytes().to_vec();
            if entries.iter().any(|(s, _)| *s == secret) {
                return Err(invalid("the same token is listed twice".into()));
            }
            entries.push((
                secret,
                Principal {
                    name: format!("token {}", e.name),
                    roles: e.roles,
                    machine_id,
                },
            ));
        }
        Ok(Tokens { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal `token` stands for.
    pub fn find(&self, token: &str) -> Option<&Principal> {
        let presented = token.as_bytes();
        let mut found = None;
        // Every entry is compared, found or not.
        for (secret, principal) in &self.entries {
            if constant_time_eq(secret, presented) {
                found = Some(principal);
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "the tokens file is readable by other users; chmod 600 it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [[tokens]]
        name = "web-1"
        token = "agent-token-0123456789"
        roles = ["agent"]
        machine-id = "0123456789ABCDEF0123456789abcdef"

        [[tokens]]
        name = "ops"
        token = "reader-token-0123456789"
        roles = ["reader"]
    "#;

    fn parse(text: &str) -> Result<Tokens, TokensError> {
        Tokens::parse(text, Path::new("tokens.toml"))
    }

    #[test]
    fn finds_roles_and_bindings() {
        let t = parse(GOOD).unwrap();
        assert_eq!(t.len(), 2);
        let a = t.find("agent-token-0123456789").unwrap();
        assert_eq!(a.roles, vec![Role::Agent]);
        assert_eq!(
            a.machine_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(a.name, "token web-1");
        let r = t.find("reader-token-0123456789").unwrap();
        assert_eq!(r.roles, vec![Role::Reader]);
        assert!(t.find("reader-token-012345678").is_none());
        assert!(t.find("").is_none());
    }

    #[test]
    fn bad_entries_are_named() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        let e = err("[[tokens]]\nname = \"x\"\ntoken = \"short\"\nroles = [\"agent\"]\n");
        assert!(e.contains("\"x\"") && e.contains("shorter"), "{e}");
        let e =
            err("[[tokens]]\nname = \"x\"\ntoken = \"0123456789abcdefg\"\nroles = [\"admin\"]\n");
        assert!(e.contains("admin"), "{e}");
        let e = err("[[tokens]]\nname = \"x\"\ntoken = \"0123456789abcdefg\"\nroles = [\"reader\"]\nmachine-id = \"0123456789abcdef0123456789abcdef\"\n");
        assert!(e.contains("do not include agent"), "{e}");
        let e = err("[[tokens]]\nname = \"x\"\ntoken = \"0123456789abcdefg\"\nroles = [\"agent\"]\nmachine-id = \"zz\"\n");
        assert!(e.contains("32 hex"), "{e}");
        let e = err("[[tokens]]\nname = \"x\"\ntoken = \"0123456789abcdefg\"\nroles = [\"agent\"]\ncolour = 1\n");
        assert!(e.contains("colour"), "{e}");
        let e = err("[[tokens]]\nname = \"x\"\ntoken = \"0123456789abcdefg\"\nroles = []\n");
        assert!(e.contains("roles is empty"), "{e}");
    }
}
