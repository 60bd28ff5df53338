//! `jr-server`'s configuration: every option is a flag, an environment
//! variable (`JR_<NAME>`) and a key of the TOML file given with `--config`.
//!
//! Precedence, lowest first: built-in defaults, the config file, the
//! environment, the command line. The doc comment of each field is its
//! `--help` text.

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Default address: loopback only, so a bare `jr-server` exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
pub const DEFAULT_DB: &str = "./journal-router.db";
pub const DEFAULT_COMMIT_ENTRIES: usize = 8192;
pub const DEFAULT_COMMIT_LATENCY: &str = "50ms";
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How hard SQLite works to make a commit survive a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Survives any process crash; a power loss may roll back the last
    /// commits together with the hosts' cursors, which agents then resend.
    #[default]
    Normal,
    /// Every commit is on disk before it is acknowledged.
    Full,
}

/// The server's options.
#[derive(Debug, Clone, Parser, Deserialize)]
#[command(
    name = "jr-server",
    version,
    about = "journal-router server: receives journals from jr-agent and stores them in SQLite"
)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// Read options from this TOML file (keys are the long flag names).
    #[arg(long, env = "JR_CONFIG", value_name = "PATH")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to serve gRPC on.
    #[arg(long, env = "JR_LISTEN", value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: String,

    /// SQLite database file; created with its schema when missing.
    #[arg(long, env = "JR_DB", value_name = "PATH", default_value = DEFAULT_DB)]
    pub db: PathBuf,

    /// SQLite durability of each commit.
    #[arg(long, env = "JR_SYNCHRONOUS", value_enum, default_value_t = Synchronous::Normal)]
    pub synchronous: Synchronous,

    /// A group commit closes after this many entries.
    #[arg(long, env = "JR_COMMIT_ENTRIES", value_name = "N", default_value_t = DEFAULT_COMMIT_ENTRIES)]
    pub commit_entries: usize,

    /// A group commit closes this long after its first batch arrived
    /// (for example `50ms`, `1s`).
    #[arg(long, env = "JR_COMMIT_LATENCY", value_name = "DURATION", default_value = DEFAULT_COMMIT_LATENCY, value_parser = parse_duration)]
    #[serde(deserialize_with = "de_duration")]
    pub commit_latency: Duration,

    /// Largest gRPC message accepted from an agent, in bytes.
    #[arg(long, env = "JR_MAX_MESSAGE_BYTES", value_name = "BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Also run an agent inside the server that ships this machine's journal.
    #[arg(long, env = "JR_LOCAL_AGENT")]
    pub local_agent: bool,

    /// Journal directory the local agent reads instead of the system journal.
    #[arg(long, env = "JR_LOCAL_AGENT_DIRECTORY", value_name = "DIR")]
    pub local_agent_directory: Option<PathBuf>,

    /// Forwarding routes (`[[routes]]` tables; config file only, reloaded
    /// on SIGHUP). See `forward::config`.
    #[arg(skip)]
    pub routes: crate::forward::config::RouteList,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            config: None,
            listen: DEFAULT_LISTEN.to_owned(),
            db: PathBuf::from(DEFAULT_DB),
            synchronous: Synchronous::Normal,
            commit_entries: DEFAULT_COMMIT_ENTRIES,
            commit_latency: Duration::from_millis(50),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            local_agent: false,
            local_agent_directory: None,
            routes: Default::default(),
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(transparent)]
    Cli(#[from] clap::Error),
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("--listen {addr:?} is not an address like 127.0.0.1:7070: {source}")]
    Listen {
        addr: String,
        source: std::net::AddrParseError,
    },
    #[error("database directory {dir} does not exist and cannot be created: {source}")]
    DbDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("--db {0} is a directory; give a file name")]
    DbIsDir(PathBuf),
    #[error("--{name} must be at least {min}")]
    TooSmall { name: &'static str, min: u64 },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration like 50ms or 1s: {e}"))?;
    Duration::try_from(d).map_err(|_| format!("{s:?} is negative"))
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

impl ServerConfig {
    /// Parses the command line and environment, then merges the config file
    /// named by `--config` under them.
    pub fn load() -> Result<ServerConfig, ConfigError> {
        Self::load_from(std::env::args_os())
    }

    /// [`ServerConfig::load`] with explicit arguments (the first is the
    /// program name).
    pub fn load_from<I, T>(args: I) -> Result<ServerConfig, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Self::command().try_get_matches_from(args)?;
        let cli = Self::from_arg_matches(&matches)?;
        let Some(path) = cli.config.clone() else {
            return Ok(cli);
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let file: ServerConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.clone(),
            source,
        })?;
        Ok(merge(file, cli, &matches))
    }

    /// Checks everything that can be checked before binding a socket or
    /// opening the database; returns the address to bind.
    pub fn validate(&self) -> Result<SocketAddr, ConfigError> {
        let addr = self
            .listen
            .parse::<SocketAddr>()
            .map_err(|source| ConfigError::Listen {
                addr: self.listen.clone(),
                source,
            })?;
        if self.db.is_dir() {
            return Err(ConfigError::DbIsDir(self.db.clone()));
        }
        let dir = match self.db.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir).map_err(|source| ConfigError::DbDir {
            dir: dir.to_owned(),
            source,
        })?;
        if self.commit_entries == 0 {
            return Err(ConfigError::TooSmall {
                name: "commit-entries",
                min: 1,
            });
        }
        if self.max_message_bytes < 4096 {
            return Err(ConfigError::TooSmall {
                name: "max-message-bytes",
                min: 4096,
            });
        }
        Ok(addr)
    }
}

/// Fields given on the command line or in the environment win over the
/// file; the file wins over defaults.
fn merge(mut file: ServerConfig, cli: ServerConfig, m: &ArgMatches) -> ServerConfig {
    let explicit = |id: &str| {
        matches!(
            m.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    macro_rules! take {
        ($($field:ident),*) => {
            $(if explicit(stringify!($field)) {
                file.$field = cli.$field;
            })*
        };
    }
    take!(
        listen,
        db,
        synchronous,
        commit_entries,
        commit_latency,
        max_message_bytes,
        local_agent,
        local_agent_directory
    );
    file.config = cli.config;
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_loopback() {
        let c = ServerConfig::load_from(["jr-server"]).unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.commit_latency, Duration::from_millis(50));
        assert_eq!(c.synchronous, Synchronous::Normal);
    }

    #[test]
    fn file_is_under_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\ncommit-latency = \"1s\"\nsynchronous = \"full\"\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let c = ServerConfig::load_from(["jr-server", "--config", p, "--listen", "127.0.0.1:1"])
            .unwrap();
        assert_eq!(c.listen, "127.0.0.1:1");
        assert_eq!(c.commit_latency, Duration::from_secs(1));
        assert_eq!(c.synchronous, Synchronous::Full);
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:9999\"\n").unwrap();
        let err =
            ServerConfig::load_from(["jr-server", "--config", path.to_str().unwrap()]).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn bad_listen_address_is_named() {
        let c = ServerConfig {
            listen: "nowhere".into(),
            ..ServerConfig::default()
        };
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("nowhere"), "{err}");
    }
}
