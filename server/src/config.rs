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
pub const DEFAULT_RETENTION_INTERVAL: &str = "5s";
/// Below this, the write-ahead log and the schema alone fill the limit.
pub const MIN_DB_SIZE: u64 = 1 << 20;
pub const DEFAULT_RELOAD_INTERVAL: &str = "10s";
pub const DEFAULT_MAX_SESSIONS: usize = 4096;
pub const DEFAULT_MAX_BATCH_ENTRIES: usize = crate::ingest::MAX_BATCH_ENTRIES;

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

    /// Delete entries older than this, by their journal timestamp (for
    /// example `30d`, `12h`). Off by default: entries are kept forever.
    #[arg(long, env = "JR_RETENTION", value_name = "DURATION", value_parser = parse_retention)]
    #[serde(deserialize_with = "de_retention")]
    pub retention: Option<Duration>,

    /// Keep the database (the main file in use plus its write-ahead log)
    /// under this size by deleting the oldest entries (for example `20GiB`,
    /// `500MiB`, `10GB`). Off by default. A database created without
    /// incremental auto-vacuum (by an older jr-server) is rewritten once at
    /// start-up (VACUUM; needs as much free disk as the database takes).
    #[arg(long, env = "JR_MAX_DB_SIZE", value_name = "SIZE", value_parser = parse_size)]
    #[serde(deserialize_with = "de_size")]
    pub max_db_size: Option<u64>,

    /// How often --retention and --max-db-size are checked and applied.
    #[arg(long, env = "JR_RETENTION_INTERVAL", value_name = "DURATION", default_value = DEFAULT_RETENTION_INTERVAL, value_parser = parse_duration)]
    #[serde(deserialize_with = "de_duration")]
    pub retention_interval: Duration,

    /// Also run an agent inside the server that ships this machine's journal.
    #[arg(long, env = "JR_LOCAL_AGENT")]
    pub local_agent: bool,

    /// Journal directory the local agent reads instead of the system journal.
    #[arg(long, env = "JR_LOCAL_AGENT_DIRECTORY", value_name = "DIR")]
    pub local_agent_directory: Option<PathBuf>,

    /// Address of the HTTP endpoint with Prometheus `/metrics` and
    /// `/healthz` [default: 127.0.0.1:7071; skipped with a warning when
    /// that is taken]. `none` turns it off.
    #[arg(long, env = "JR_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// A connected host is stalled when its journal's head is ahead of
    /// what was committed and nothing was committed for this long.
    #[arg(long, env = "JR_STALL_AFTER", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    #[serde(deserialize_with = "de_duration")]
    pub stall_after: Duration,

    /// A host is silent when its agent was not heard from (batches or the
    /// head it reports every few seconds) for this long.
    #[arg(long, env = "JR_SILENT_AFTER", value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    #[serde(deserialize_with = "de_duration")]
    pub silent_after: Duration,

    /// PEM certificate chain to serve TLS with (needs --tls-key). Reloaded
    /// when the file changes or on SIGHUP.
    #[arg(long, env = "JR_TLS_CERT", value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "JR_TLS_KEY", value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Mutual TLS: PEM CA certificate(s) that sign client certificates.
    /// A client certificate's URI SANs `jr:agent`, `jr:agent:<machine-id>`
    /// and `jr:reader` (or OU=agent / OU=reader) give its roles.
    #[arg(long, env = "JR_TLS_CLIENT_CA", value_name = "PATH")]
    pub tls_client_ca: Option<PathBuf>,

    /// TOML file of bearer tokens (`[[tokens]]` with name, token, roles
    /// `agent`/`reader`, optional machine-id). Reloaded when it changes.
    #[arg(long, env = "JR_TOKENS_FILE", value_name = "PATH")]
    pub tokens_file: Option<PathBuf>,

    /// Serve plain text without authentication on a non-loopback address.
    /// Anyone who reaches the port can then read and write logs.
    #[arg(long, env = "JR_INSECURE")]
    pub insecure: bool,

    /// How often certificate and token files are checked for changes.
    #[arg(long, env = "JR_RELOAD_INTERVAL", value_name = "DURATION", default_value = DEFAULT_RELOAD_INTERVAL, value_parser = parse_duration)]
    #[serde(deserialize_with = "de_duration")]
    pub reload_interval: Duration,

    /// Ingest sessions (connected agents) at once; more are refused with
    /// RESOURCE_EXHAUSTED until one ends.
    #[arg(long, env = "JR_MAX_SESSIONS", value_name = "N", default_value_t = DEFAULT_MAX_SESSIONS)]
    pub max_sessions: usize,

    /// Entries in one batch from an agent, at most (agents learn it in
    /// Welcome and close their batches below it; its size in bytes is
    /// bounded by --max-message-bytes).
    #[arg(long, env = "JR_MAX_BATCH_ENTRIES", value_name = "N", default_value_t = DEFAULT_MAX_BATCH_ENTRIES)]
    pub max_batch_entries: usize,

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
            metrics_listen: None,
            stall_after: crate::db::hosts::DEFAULT_STALL_AFTER,
            silent_after: crate::db::hosts::DEFAULT_SILENT_AFTER,
            retention: None,
            max_db_size: None,
            retention_interval: Duration::from_secs(5),
            routes: Default::default(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tokens_file: None,
            insecure: false,
            reload_interval: Duration::from_secs(10),
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_batch_entries: DEFAULT_MAX_BATCH_ENTRIES,
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
    #[error("--metrics-listen {0}")]
    MetricsListen(String),
    #[error("--db {0} is a directory; give a file name")]
    DbIsDir(PathBuf),
    #[error("--{name} must be at least {min}")]
    TooSmall { name: &'static str, min: u64 },
    #[error("{0}")]
    Tls(&'static str),
    #[error(
        "refusing to serve plain text without authentication on {0}, which is not loopback: \
         give --tls-cert/--tls-key or --tokens-file, or --insecure to allow it"
    )]
    Plaintext(SocketAddr),
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

/// Durations with calendar units too (`30d`, `2w`), a day being 24 hours.
fn parse_retention(s: &str) -> Result<Duration, String> {
    let span: jiff::Span = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration like 30d or 12h: {e}"))?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| format!("{s:?}: {e}"))?;
    match Duration::try_from(d) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("{s:?} must be longer than zero")),
    }
}

fn de_retention<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_retention(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Byte sizes like `20GiB`, `500MiB`, `10GB` or a plain number of bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{s:?} is not a size like 20GiB or 500MiB: {e}"))
}

fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let s = String::deserialize(d)?;
    parse_size(&s).map(Some).map_err(serde::de::Error::custom)
}

impl ServerConfig {
    /// When hosts count as stalled or silent.
    pub fn host_policy(&self) -> crate::db::hosts::HealthPolicy {
        crate::db::hosts::HealthPolicy {
            stall_after: self.stall_after,
            silent_after: self.silent_after,
        }
    }

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
        self.validate_security(&addr)?;
        for (name, v) in [
            ("max-sessions", self.max_sessions),
            ("max-batch-entries", self.max_batch_entries),
        ] {
            if v == 0 {
                return Err(ConfigError::TooSmall { name, min: 1 });
            }
        }
        if self.max_db_size.is_some_and(|n| n < MIN_DB_SIZE) {
            return Err(ConfigError::TooSmall {
                name: "max-db-size",
                min: MIN_DB_SIZE,
            });
        }
        if self.max_message_bytes < 4096 {
            return Err(ConfigError::TooSmall {
                name: "max-message-bytes",
                min: 4096,
            });
        }
        self.metrics_spec()?;
        Ok(addr)
    }

    /// The metrics endpoint `--metrics-listen` asks for.
    pub fn metrics_spec(&self) -> Result<crate::metrics::http::ListenSpec, ConfigError> {
        crate::metrics::http::parse_listen(
            self.metrics_listen.as_deref(),
            crate::metrics::http::DEFAULT_METRICS_LISTEN,
        )
        .map_err(ConfigError::MetricsListen)
    }
}

impl ServerConfig {
    /// The TLS file options fit together, and plain text without
    /// authentication is served on loopback only (unless `--insecure`).
    fn validate_security(&self, addr: &SocketAddr) -> Result<(), ConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err(ConfigError::Tls("--tls-cert needs --tls-key")),
            (None, Some(_)) => return Err(ConfigError::Tls("--tls-key needs --tls-cert")),
            _ => {}
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err(ConfigError::Tls(
                "--tls-client-ca needs --tls-cert and --tls-key: client certificates are checked during the TLS handshake",
            ));
        }
        if self.local_agent && (self.tls_cert.is_some() || self.tokens_file.is_some()) {
            return Err(ConfigError::Tls(
                "--local-agent ships over plain text without credentials; run jr-agent with --ca/--token instead when TLS or tokens are on",
            ));
        }
        let protected = self.tls_cert.is_some() || self.tokens_file.is_some();
        if !addr.ip().is_loopback() && !protected && !self.insecure {
            return Err(ConfigError::Plaintext(*addr));
        }
        Ok(())
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
        local_agent_directory,
        metrics_listen,
        stall_after,
        silent_after,
        retention,
        max_db_size,
        retention_interval,
        tls_cert,
        tls_key,
        tls_client_ca,
        tokens_file,
        insecure,
        reload_interval,
        max_sessions,
        max_batch_entries
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
    fn plain_text_is_for_loopback_only() {
        let on = |listen: &str, extra: &[&str]| {
            let mut args = vec!["jr-server", "--listen", listen];
            args.extend_from_slice(extra);
            ServerConfig::load_from(args).unwrap().validate()
        };
        let err = on("0.0.0.0:7070", &[]).unwrap_err().to_string();
        assert!(
            err.contains("not loopback") && err.contains("--insecure"),
            "{err}"
        );
        on("0.0.0.0:7070", &["--insecure"]).unwrap();
        on("[::1]:7070", &[]).unwrap();
        on("0.0.0.0:7070", &["--tokens-file", "t.toml"]).unwrap();
        let err = on("127.0.0.1:0", &["--tls-client-ca", "ca.pem"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--tls-client-ca needs --tls-cert"), "{err}");
        assert!(ServerConfig::load_from(["jr-server", "--tls-cert", "c.pem"]).is_err());
    }

    #[test]
    fn security_options_are_file_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(
            &path,
            "tls-cert = \"/etc/jr/s.pem\"\ntls-key = \"/etc/jr/s.key\"\n\
             tls-client-ca = \"/etc/jr/ca.pem\"\ntokens-file = \"/etc/jr/tokens.toml\"\n\
             insecure = false\nreload-interval = \"1m\"\nmax-sessions = 10\n\
             max-batch-entries = 100\n",
        )
        .unwrap();
        let c = ServerConfig::load_from(["jr-server", "--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(
            c.tls_client_ca.as_deref(),
            Some(Path::new("/etc/jr/ca.pem"))
        );
        assert_eq!(
            c.tokens_file.as_deref(),
            Some(Path::new("/etc/jr/tokens.toml"))
        );
        assert_eq!(c.reload_interval, Duration::from_secs(60));
        assert_eq!((c.max_sessions, c.max_batch_entries), (10, 100));
        let c = ServerConfig::load_from(["jr-server", "--max-sessions", "0"]).unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max-sessions"));
    }

    #[test]
    fn retention_options_parse_everywhere() {
        let c = ServerConfig::load_from(["jr-server"]).unwrap();
        assert_eq!((c.retention, c.max_db_size), (None, None));
        let c =
            ServerConfig::load_from(["jr-server", "--retention", "30d", "--max-db-size", "20GiB"])
                .unwrap();
        assert_eq!(c.retention, Some(Duration::from_secs(30 * 86400)));
        assert_eq!(c.max_db_size, Some(20 << 30));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(&path, "retention = \"12h\"\nmax-db-size = \"500MiB\"\n").unwrap();
        let p = path.to_str().unwrap();
        let c = ServerConfig::load_from(["jr-server", "--config", p]).unwrap();
        assert_eq!(c.retention, Some(Duration::from_secs(12 * 3600)));
        assert_eq!(c.max_db_size, Some(500 << 20));
        let c =
            ServerConfig::load_from(["jr-server", "--config", p, "--max-db-size", "8MiB"]).unwrap();
        assert_eq!(c.max_db_size, Some(8 << 20));
        for bad in [
            ["--retention", "soon"],
            ["--retention", "0s"],
            ["--max-db-size", "lots"],
        ] {
            let err = ServerConfig::load_from(["jr-server", bad[0], bad[1]]).unwrap_err();
            assert!(err.to_string().contains(bad[1]), "{err}");
        }
        let small = ServerConfig {
            max_db_size: Some(1000),
            ..ServerConfig::default()
        };
        let err = small.validate().unwrap_err().to_string();
        assert!(err.contains("max-db-size"), "{err}");
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
