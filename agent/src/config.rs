//! The agent's configuration: one struct that is at once the command line
//! (clap, every flag also an environment variable `JR_<NAME>`) and a TOML
//! table (serde, unknown keys rejected). Its doc comments are the help.
//!
//! [`AgentConfig::validate`] checks everything that can be checked without
//! I/O — server URL, globs, priority, matches, machine id, limits — and
//! compiles it, so a typo fails at start-up with a clear message instead
//! of after a connection was made.

use crate::filter::{Filter, FilterError};
use crate::reader::JournalSource;
use clap::ValueEnum;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use thiserror::Error;

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";
pub const DEFAULT_BATCH_ENTRIES: usize = 2048;
/// A decoded batch takes several times its encoded size in the agent and
/// in the server; 512 KiB keeps both small at the same throughput as
/// larger batches (`jr-bench ingest`).
pub const DEFAULT_BATCH_BYTES: usize = 512 * 1024;
pub const DEFAULT_LINGER: Duration = Duration::from_millis(200);
pub const DEFAULT_MAX_INFLIGHT: usize = 4;
pub const DEFAULT_MAX_FIELD_BYTES: usize = 4 * 1024 * 1024;

/// Where reading starts when the server has no position for this machine
/// and there is no local state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartPosition {
    /// Everything still on disk.
    #[default]
    Head,
    /// Only entries written from now on.
    Tail,
    /// Entries written within this long before start-up.
    Ago(Duration),
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid start position {0:?}: expected head, tail or a duration such as 1h or 30min")]
pub struct StartPositionError(String);

impl FromStr for StartPosition {
    type Err = StartPositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "head" => Ok(StartPosition::Head),
            "tail" => Ok(StartPosition::Tail),
            other => parse_duration(other)
                .ok()
                .filter(|d| !d.is_zero())
                .map(StartPosition::Ago)
                .ok_or_else(|| StartPositionError(s.to_owned())),
        }
    }
}

impl fmt::Display for StartPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartPosition::Head => f.write_str("head"),
            StartPosition::Tail => f.write_str("tail"),
            StartPosition::Ago(d) => write!(f, "{}s ago", d.as_secs_f64()),
        }
    }
}

impl<'de> Deserialize<'de> for StartPosition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How batches are compressed (see `AgentConfig::compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    #[default]
    Zstd,
    None,
}

/// How the journal is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReaderKind {
    /// Journal files read directly (jr-journal-file); falls back to
    /// journalctl for files it cannot read.
    #[default]
    Native,
    /// `journalctl -o export` as a child process.
    Journalctl,
}

impl fmt::Display for ReaderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReaderKind::Native => "native",
            ReaderKind::Journalctl => "journalctl",
        })
    }
}

/// Parses a duration such as `200ms`, `5s`, `1h 30m` or ISO 8601 `PT1H`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let signed: jiff::SignedDuration = s
        .trim()
        .parse()
        .map_err(|e| format!("invalid duration {s:?}: {e}"))?;
    Duration::try_from(signed).map_err(|_| format!("invalid duration {s:?}: must not be negative"))
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// jr-agent: ships this node's systemd journal to a jr-server.
#[derive(Debug, Clone, clap::Args, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentConfig {
    /// gRPC URL of the jr-server to ship to.
    #[arg(long, env = "JR_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,

    /// Read the journal files in this directory instead of the system journal.
    #[arg(long, env = "JR_DIRECTORY", conflicts_with = "file")]
    pub directory: Option<PathBuf>,

    /// Read this journal file (repeatable; globs as journalctl takes them).
    #[arg(long, env = "JR_FILE")]
    pub file: Vec<PathBuf>,

    /// Read this journal namespace.
    #[arg(long, env = "JR_NAMESPACE")]
    pub namespace: Option<String>,

    /// Ship only entries of (or about) units matching this glob (repeatable).
    #[arg(long, env = "JR_UNIT")]
    pub unit: Vec<String>,

    /// Leave out entries of (or about) units matching this glob (repeatable).
    #[arg(long, env = "JR_EXCLUDE_UNIT")]
    pub exclude_unit: Vec<String>,

    /// Ship only entries of this priority or more urgent (0-7 or emerg..debug).
    #[arg(long, env = "JR_PRIORITY")]
    pub priority: Option<String>,

    /// Ship only entries with FIELD=VALUE (repeatable; one field's values
    /// are alternatives, different fields must all match).
    #[arg(long = "match", env = "JR_MATCH", value_name = "FIELD=VALUE")]
    #[serde(rename = "match")]
    pub matches: Vec<String>,

    /// Hostname to report instead of the journal's `_HOSTNAME`.
    #[arg(long, env = "JR_HOSTNAME")]
    pub hostname: Option<String>,

    /// Machine id (32 hex digits) to ship as instead of the journal's `_MACHINE_ID`.
    #[arg(long, env = "JR_MACHINE_ID")]
    pub machine_id: Option<String>,

    /// Where to start when the server has no position for this machine:
    /// head, tail or a duration (e.g. 1h) back from now.
    #[arg(long, env = "JR_START", default_value = "head")]
    pub start: StartPosition,

    /// Local file keeping the last acknowledged cursor, used only when the
    /// server does not know this machine.
    #[arg(long, env = "JR_STATE_FILE")]
    pub state_file: Option<PathBuf>,

    /// Ship what the journal holds now, wait for every acknowledgement, exit.
    #[arg(long, env = "JR_NO_FOLLOW")]
    pub no_follow: bool,

    /// Close a batch at this many entries.
    #[arg(long, env = "JR_BATCH_ENTRIES", default_value_t = DEFAULT_BATCH_ENTRIES)]
    pub batch_entries: usize,

    /// Close a batch at this many encoded bytes. The agent's memory grows
    /// with it (a few times this per batch in flight).
    #[arg(long, env = "JR_BATCH_BYTES", default_value_t = DEFAULT_BATCH_BYTES)]
    pub batch_bytes: usize,

    /// Close a batch this long after its first entry was read.
    #[arg(long, env = "JR_LINGER", default_value = "200ms", value_parser = parse_duration)]
    #[serde(deserialize_with = "de_duration")]
    pub linger: Duration,

    /// Batches sent but not yet acknowledged, at most.
    #[arg(long, env = "JR_MAX_INFLIGHT", default_value_t = DEFAULT_MAX_INFLIGHT)]
    pub max_inflight: usize,

    /// Cut any single field value to this many bytes.
    #[arg(long, env = "JR_MAX_FIELD_BYTES", default_value_t = DEFAULT_MAX_FIELD_BYTES)]
    pub max_field_bytes: usize,

    /// How to read the journal: native (journal files read directly, with
    /// journalctl as the fallback for files it cannot read) or journalctl.
    #[arg(long, env = "JR_READER", value_enum, default_value_t = ReaderKind::Native)]
    pub reader: ReaderKind,

    /// The journalctl binary to read the journal with.
    #[arg(long, env = "JR_JOURNALCTL", default_value = "journalctl")]
    pub journalctl: PathBuf,

    /// How batches are compressed: zstd packs each batch's entries (one
    /// compression context for the whole session; to an older server that
    /// does not take packed batches, the gRPC stream is zstd-compressed
    /// instead), gzip compresses the gRPC stream, none sends them plain.
    #[arg(long, env = "JR_COMPRESSION", value_enum, default_value_t = Compression::Zstd)]
    pub compression: Compression,

    /// PEM CA certificate(s) trusted for an https:// server, in addition
    /// to the system trust store.
    #[arg(long, env = "JR_CA", value_name = "PATH")]
    pub ca: Option<PathBuf>,

    /// PEM client certificate for mutual TLS (needs --key).
    #[arg(long, env = "JR_CERT", value_name = "PATH", requires = "key")]
    pub cert: Option<PathBuf>,

    /// PEM private key of --cert.
    #[arg(long, env = "JR_KEY", value_name = "PATH", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Bearer token sent with every call (prefer --token-file: a command
    /// line is visible to other users).
    #[arg(
        long,
        env = "JR_TOKEN",
        value_name = "TOKEN",
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,

    /// File holding the bearer token; read again at every reconnect.
    #[arg(long, env = "JR_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Allow plain http:// to a server that is not on loopback (logs and
    /// tokens then travel unencrypted).
    #[arg(long, env = "JR_INSECURE")]
    pub insecure: bool,

    /// How often the journal's newest entry (its head) is found and sent to
    /// the server, also when nothing is shipped: the server's measure of
    /// lag and its sign of life for this host.
    #[arg(long, env = "JR_HEAD_INTERVAL", value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    #[serde(deserialize_with = "de_duration")]
    pub head_interval: Duration,

    /// Address of the HTTP endpoint with Prometheus `/metrics` and
    /// `/healthz` [default: 127.0.0.1:7072; skipped with a warning when
    /// that is taken]. `none` turns it off; `0.0.0.0:7072` lets a
    /// Prometheus elsewhere scrape it.
    #[arg(long, env = "JR_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            server: DEFAULT_SERVER.to_owned(),
            directory: None,
            file: Vec::new(),
            namespace: None,
            unit: Vec::new(),
            exclude_unit: Vec::new(),
            priority: None,
            matches: Vec::new(),
            hostname: None,
            machine_id: None,
            start: StartPosition::Head,
            state_file: None,
            no_follow: false,
            batch_entries: DEFAULT_BATCH_ENTRIES,
            batch_bytes: DEFAULT_BATCH_BYTES,
            linger: DEFAULT_LINGER,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            max_field_bytes: DEFAULT_MAX_FIELD_BYTES,
            reader: ReaderKind::Native,
            journalctl: PathBuf::from("journalctl"),
            compression: Compression::Zstd,
            ca: None,
            cert: None,
            key: None,
            token: None,
            token_file: None,
            insecure: false,
            head_interval: crate::head::DEFAULT_INTERVAL,
            metrics_listen: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("invalid --server {url:?}: {reason}")]
    Server { url: String, reason: String },
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("invalid --machine-id {0:?}: expected 32 hex digits")]
    MachineId(String),
    #[error("--hostname must not be empty")]
    EmptyHostname,
    #[error("--{0} must be greater than zero")]
    Zero(&'static str),
    #[error("--directory and --file cannot be used together")]
    DirectoryAndFile,
    #[error("--namespace {0:?} is not a valid journal namespace")]
    Namespace(String),
    #[error("--namespace cannot be used with --file")]
    NamespaceAndFile,
    #[error("{0}")]
    Credentials(&'static str),
    #[error("invalid --metrics-listen: {0}")]
    MetricsListen(String),
}

/// What [`AgentConfig::validate`] compiled.
#[derive(Debug, Clone)]
pub struct Validated {
    pub source: JournalSource,
    pub filter: Filter,
    /// `--machine-id`, lowercased.
    pub machine_id: Option<String>,
}

/// Whether `s` looks like a 128-bit id as sd-id128 prints it (32 hex digits).
pub fn is_id128(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl AgentConfig {
    /// Checks and compiles the configuration; does no I/O.
    pub fn validate(&self) -> Result<Validated, ConfigError> {
        let server_err = |reason: String| ConfigError::Server {
            url: self.server.clone(),
            reason,
        };
        crate::channel::check_url(&self.server, self.insecure).map_err(server_err)?;
        if self.cert.is_some() != self.key.is_some() {
            return Err(ConfigError::Credentials("--cert and --key go together"));
        }
        if self.token.is_some() && self.token_file.is_some() {
            return Err(ConfigError::Credentials(
                "give --token or --token-file, not both",
            ));
        }
        let filter = Filter::new(
            &self.unit,
            &self.exclude_unit,
            self.priority.as_deref(),
            &self.matches,
        )?;
        let machine_id = match &self.machine_id {
            Some(m) if is_id128(m.trim()) => Some(m.trim().to_ascii_lowercase()),
            Some(m) => return Err(ConfigError::MachineId(m.clone())),
            None => None,
        };
        if matches!(&self.hostname, Some(h) if h.trim().is_empty()) {
            return Err(ConfigError::EmptyHostname);
        }
        for (name, v) in [
            ("batch-entries", self.batch_entries),
            ("batch-bytes", self.batch_bytes),
            ("max-inflight", self.max_inflight),
            ("max-field-bytes", self.max_field_bytes),
            ("head-interval", self.head_interval.as_millis() as usize),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        crate::metrics_http::parse_listen(
            self.metrics_listen.as_deref(),
            crate::metrics_http::DEFAULT_METRICS_LISTEN,
        )
        .map_err(ConfigError::MetricsListen)?;
        if self.directory.is_some() && !self.file.is_empty() {
            return Err(ConfigError::DirectoryAndFile);
        }
        if let Some(ns) = &self.namespace {
            let ok = !ns.is_empty()
                && ns.len() <= 64
                && ns
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b) || b == b'*');
            if !ok {
                return Err(ConfigError::Namespace(ns.clone()));
            }
            if !self.file.is_empty() {
                return Err(ConfigError::NamespaceAndFile);
            }
        }
        Ok(Validated {
            source: JournalSource {
                journalctl: self.journalctl.clone(),
                directory: self.directory.clone(),
                files: self.file.clone(),
                namespace: self.namespace.clone(),
            },
            filter,
            machine_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: AgentConfig,
    }

    fn parse(args: &[&str]) -> Result<AgentConfig, clap::Error> {
        Cli::try_parse_from(std::iter::once("jr-agent").chain(args.iter().copied()))
            .map(|c| c.config)
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.server, DEFAULT_SERVER);
        assert_eq!(c.batch_entries, 2048);
        assert_eq!(c.batch_bytes, 512 * 1024);
        assert_eq!(c.linger, Duration::from_millis(200));
        assert_eq!(c.max_inflight, 4);
        assert_eq!(c.start, StartPosition::Head);
        assert_eq!(c.compression, Compression::Zstd);
        assert_eq!(c.reader, ReaderKind::Native);
        assert_eq!(
            parse(&["--reader", "journalctl"]).unwrap().reader,
            ReaderKind::Journalctl
        );
        assert!(!c.no_follow);
        let d = AgentConfig::default();
        assert_eq!(
            (&d.server, d.linger, d.batch_bytes),
            (&c.server, c.linger, c.batch_bytes)
        );
        c.validate().unwrap();
    }

    #[test]
    fn durations_and_start_positions() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!("tail".parse(), Ok(StartPosition::Tail));
        assert_eq!(
            "2h".parse(),
            Ok(StartPosition::Ago(Duration::from_secs(7200)))
        );
        assert!("yesterday-ish".parse::<StartPosition>().is_err());
        assert!("0s".parse::<StartPosition>().is_err());
        let c = parse(&["--linger", "1s", "--start", "30min", "--no-follow"]).unwrap();
        assert_eq!(c.linger, Duration::from_secs(1));
        assert_eq!(c.start, StartPosition::Ago(Duration::from_secs(1800)));
        assert!(c.no_follow);
        let err = parse(&["--start", "sometime"]).unwrap_err().to_string();
        assert!(err.contains("head, tail or a duration"), "{err}");
        assert!(parse(&["--linger", "fast"]).is_err());
    }

    #[test]
    fn validation_rejects_bad_input_before_io() {
        let bad = |args: &[&str]| parse(args).unwrap().validate().unwrap_err().to_string();
        assert!(bad(&["--unit", "foo[.service"]).contains("foo[.service"));
        assert!(bad(&["--exclude-unit", "a{b"]).contains("a{b"));
        assert!(bad(&["--priority", "loud"]).contains("loud"));
        assert!(bad(&["--match", "MESSAGE"]).contains("FIELD=VALUE"));
        assert!(bad(&["--match", "lower=x"]).contains("lower"));
        assert!(bad(&["--machine-id", "xyz"]).contains("32 hex"));
        assert!(bad(&["--server", "127.0.0.1:7070"]).contains("--server"));
        assert!(bad(&["--server", "ftp://x:1"]).contains("--server"));
        assert!(bad(&["--batch-entries", "0"]).contains("batch-entries"));
        assert!(bad(&["--namespace", "a/b"]).contains("namespace"));
        assert!(bad(&["--hostname", " "]).contains("hostname"));
        assert!(parse(&["--directory", "/x", "--file", "/y"]).is_err());
        let c = AgentConfig {
            directory: Some("/x".into()),
            file: vec!["/y".into()],
            ..Default::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::DirectoryAndFile)));
    }

    #[test]
    fn validation_compiles_good_input() {
        let c = parse(&[
            "--unit",
            "nginx*.service",
            "--priority",
            "warning",
            "--match",
            "_TRANSPORT=journal",
            "--machine-id",
            "0123456789ABCDEF0123456789abcdef",
            "--directory",
            "/var/log/journal",
        ])
        .unwrap();
        let v = c.validate().unwrap();
        assert_eq!(
            v.machine_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(
            v.source.directory.as_deref(),
            Some(std::path::Path::new("/var/log/journal"))
        );
    }

    #[test]
    fn toml_fills_the_same_struct() {
        let c: AgentConfig = toml::from_str(
            r#"
            server = "http://logs.example.net:7070"
            unit = ["a.service", "b-*.service"]
            match = ["_TRANSPORT=kernel"]
            linger = "50ms"
            start = "tail"
            no-follow = true
            compression = "gzip"
            reader = "journalctl"
            ca = "/etc/jr/ca.pem"
            cert = "/etc/jr/agent.pem"
            key = "/etc/jr/agent.key"
            token-file = "/etc/jr/agent.token"
            insecure = true
            "#,
        )
        .unwrap();
        assert_eq!(c.unit.len(), 2);
        assert_eq!(c.matches, vec!["_TRANSPORT=kernel".to_owned()]);
        assert_eq!(c.linger, Duration::from_millis(50));
        assert_eq!(c.start, StartPosition::Tail);
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(c.reader, ReaderKind::Journalctl);
        assert_eq!(c.token_file, Some(PathBuf::from("/etc/jr/agent.token")));
        assert!(c.insecure && c.cert.is_some() && c.key.is_some() && c.ca.is_some());
        assert_eq!(c.batch_entries, DEFAULT_BATCH_ENTRIES);
        assert!(c.no_follow);
        let err = toml::from_str::<AgentConfig>("colour = \"red\"").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
