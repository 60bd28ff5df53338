//! The command line, in journalctl's vocabulary where journalctl has a word
//! for it. The doc comment of each field is its `--help` text.
//!
//! [`load_from`] adds the config file (`--config`, `JR_CONFIG`): its keys
//! are the long flag names, `[logs]` and the other subcommand tables hold
//! defaults for that subcommand; defaults < file < environment < flags.

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
pub use jr_config::ConfigFileError;

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

#[derive(Debug, Parser)]
#[command(
    name = "jrctl",
    version,
    about = "Query the journals that journal-router collected from every node"
)]
pub struct Cli {
    /// Read options from this TOML file: top-level keys are the global
    /// long flags (`server`), a `[logs]` table holds defaults for
    /// `jrctl logs` (`output = "short-iso"`). Environment variables and
    /// flags override it.
    #[arg(long, global = true, env = "JR_CONFIG", value_name = "PATH")]
    pub config: Option<std::path::PathBuf>,

    /// jr-server to ask.
    #[arg(long, global = true, env = "JR_SERVER", value_name = "URL", default_value = DEFAULT_SERVER)]
    pub server: String,

    /// TLS and credentials for the connection.
    #[command(flatten)]
    pub connect: crate::client::ConnectArgs,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process; the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show log entries, like journalctl.
    Logs(LogsArgs),
    /// List the hosts that ship to the server: entries, last contact, lag
    /// behind their journal and state (ok, stalled, silent, disconnected).
    Hosts(HostsArgs),
    /// List entries lost before shipping, per host and unit: journald's
    /// "Suppressed N messages" and vacuumed resume positions.
    Gaps(GapsArgs),
    /// List units with their entry counts.
    Units {
        /// Only units of these hosts (globs on hostname or machine id).
        #[arg(short = 'H', long = "host", env = "JR_UNITS_HOST", value_name = "GLOB")]
        hosts: Vec<String>,
    },
    /// Show store totals, size, ingest rate and each forwarding route's
    /// position.
    Stats,
    /// Forwarding routes: position, lag, lines sent, last error; `replay`
    /// sends a time range again.
    Routes(crate::routes::RoutesArgs),
}

/// How `jrctl hosts` and `jrctl gaps` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum InfoOutput {
    /// Aligned columns.
    #[default]
    Table,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Args)]
pub struct HostsArgs {
    /// Also list each host's gaps (see `jrctl gaps`).
    #[arg(long, env = "JR_HOSTS_GAPS")]
    pub gaps: bool,

    /// Output format.
    #[arg(short = 'o', long, env = "JR_HOSTS_OUTPUT", value_enum, default_value_t = InfoOutput::Table)]
    pub output: InfoOutput,
}

#[derive(Debug, Args)]
pub struct GapsArgs {
    /// Only these hosts (globs on hostname or machine id; repeatable).
    #[arg(short = 'H', long = "host", env = "JR_GAPS_HOST", value_name = "GLOB")]
    pub hosts: Vec<String>,

    /// Gaps on or newer than this time (as for `jrctl logs --since`).
    #[arg(
        short = 'S',
        long,
        env = "JR_GAPS_SINCE",
        value_name = "TIME",
        allow_hyphen_values = true
    )]
    pub since: Option<String>,

    /// The newest N gaps.
    #[arg(short = 'n', long = "lines", env = "JR_GAPS_LINES", value_name = "N")]
    pub lines: Option<u32>,

    /// Output format.
    #[arg(short = 'o', long, env = "JR_GAPS_OUTPUT", value_enum, default_value_t = InfoOutput::Table)]
    pub output: InfoOutput,
}

/// Output formats, named as journalctl names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// `Mmm dd HH:MM:SS host identifier[pid]: message`, local time.
    Short,
    /// Like short, with an ISO 8601 timestamp.
    ShortIso,
    /// Like short, with microseconds.
    ShortPrecise,
    /// One JSON object per line, journal field names.
    Json,
    /// The message only.
    Cat,
    /// Journal export format (readable by systemd-journal-remote).
    Export,
    /// `host unit: message`, the line journal-router forwards.
    Logentries,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only these hosts (globs on hostname or machine id; repeatable).
    #[arg(short = 'H', long = "host", env = "JR_LOGS_HOST", value_name = "GLOB")]
    pub hosts: Vec<String>,

    /// Only this unit: its own processes and what systemd says about it
    /// (globs; repeatable).
    #[arg(short = 'u', long = "unit", env = "JR_LOGS_UNIT", value_name = "GLOB")]
    pub units: Vec<String>,

    /// Only this Docker container (CONTAINER_NAME glob; repeatable).
    #[arg(long = "container", env = "JR_LOGS_CONTAINER", value_name = "GLOB")]
    pub containers: Vec<String>,

    /// Priority level or range (`err`, `3`, `err..warning`).
    #[arg(short = 'p', long, env = "JR_LOGS_PRIORITY", value_name = "LEVEL")]
    pub priority: Option<String>,

    /// Only this syslog identifier (glob; repeatable).
    #[arg(
        short = 't',
        long = "identifier",
        env = "JR_LOGS_IDENTIFIER",
        value_name = "ID"
    )]
    pub identifiers: Vec<String>,

    /// FIELD=VALUE matches: the same field ORed, different fields ANDed.
    #[arg(value_name = "FIELD=VALUE")]
    pub matches: Vec<String>,

    /// The current boot of each host, an offset (`-1`: the one before), or
    /// a boot id.
    #[arg(short = 'b', long, env = "JR_LOGS_BOOT", value_name = "ID|OFFSET", num_args = 0..=1, default_missing_value = "0", allow_hyphen_values = true)]
    pub boot: Option<String>,

    /// Entries on or newer than this time (`2024-05-01 10:00`, `today`,
    /// `yesterday`, `-1h`, `2 hours ago`).
    #[arg(
        short = 'S',
        long,
        env = "JR_LOGS_SINCE",
        value_name = "TIME",
        allow_hyphen_values = true
    )]
    pub since: Option<String>,

    /// Entries on or older than this time.
    #[arg(
        short = 'U',
        long,
        env = "JR_LOGS_UNTIL",
        value_name = "TIME",
        allow_hyphen_values = true
    )]
    pub until: Option<String>,

    /// Messages matching this regular expression (case-insensitive unless
    /// it has capitals).
    #[arg(short = 'g', long, env = "JR_LOGS_GREP", value_name = "REGEX")]
    pub grep: Option<String>,

    /// Case-sensitive grep or not, overriding the capitals rule.
    #[arg(long, env = "JR_LOGS_CASE_SENSITIVE", value_name = "BOOL")]
    pub case_sensitive: Option<bool>,

    /// Messages containing all these words, in any order, through the
    /// full-text index. Case and accents do not matter; a word with
    /// punctuation ("10.0.0.1", "disk-full") must appear as written.
    #[arg(long, env = "JR_LOGS_SEARCH", value_name = "WORDS")]
    pub search: Option<String>,

    /// The last N entries (10 without a number).
    #[arg(short = 'n', long = "lines", env = "JR_LOGS_LINES", value_name = "N", num_args = 0..=1, default_missing_value = "10")]
    pub lines: Option<u32>,

    /// Newest first.
    #[arg(short = 'r', long, env = "JR_LOGS_REVERSE")]
    pub reverse: bool,

    /// Keep printing new entries as they arrive.
    #[arg(short = 'f', long, env = "JR_LOGS_FOLLOW")]
    pub follow: bool,

    /// Output format.
    #[arg(short = 'o', long, env = "JR_OUTPUT", value_enum, default_value_t = Output::Short)]
    pub output: Output,

    /// Accepted for journalctl habits; jrctl never pages.
    #[arg(long, env = "JR_LOGS_NO_PAGER")]
    pub no_pager: bool,

    /// Leave out informational lines such as "-- No entries --".
    #[arg(short = 'q', long, env = "JR_LOGS_QUIET")]
    pub quiet: bool,
}

/// Parses `args` (the first is the program name), the environment and the
/// config file named by `--config`.
pub fn load_from<I, T>(args: I) -> Result<Cli, ConfigFileError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = jr_config::matches_with_file(Cli::command(), args)?;
    Ok(Cli::from_arg_matches(&matches)?)
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn config_file_sets_server_and_logs_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jrctl.toml");
        std::fs::write(
            &path,
            "server = \"http://central:7070\"\n\n[logs]\noutput = \"short-iso\"\nquiet = true\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let cli = load_from(["jrctl", "--config", p, "logs", "-u", "x.service"]).unwrap();
        assert_eq!(cli.server, "http://central:7070");
        let Command::Logs(logs) = cli.command else {
            panic!("logs subcommand")
        };
        assert_eq!(logs.output, Output::ShortIso);
        assert!(logs.quiet);
        assert_eq!(logs.units, ["x.service"]);

        let cli = load_from(["jrctl", "logs", "-o", "json", "--config", p]).unwrap();
        let Command::Logs(logs) = cli.command else {
            panic!("logs subcommand")
        };
        assert_eq!(logs.output, Output::Json, "flags win over the file");

        std::fs::write(&path, "[logs]\noutput = \"xml\"\n").unwrap();
        let err = load_from(["jrctl", "--config", p, "logs"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("logs.output"),
            "{err}"
        );
    }

    #[test]
    fn query_options_have_their_own_variables() {
        // JR_LOGS_… rather than JR_UNIT: an agent's JR_UNIT in the same
        // shell must not filter what jrctl shows. No other test reads
        // these variables.
        std::env::set_var("JR_LOGS_SINCE", "-1h");
        std::env::set_var("JR_GAPS_LINES", "7");
        let cli = load_from(["jrctl", "logs"]).unwrap();
        let Command::Logs(logs) = cli.command else {
            panic!("logs subcommand")
        };
        assert_eq!(logs.since.as_deref(), Some("-1h"));
        let cli = load_from(["jrctl", "logs", "--since", "today"]).unwrap();
        let Command::Logs(logs) = cli.command else {
            panic!("logs subcommand")
        };
        assert_eq!(logs.since.as_deref(), Some("today"), "flags win");
        let cli = load_from(["jrctl", "gaps"]).unwrap();
        let Command::Gaps(gaps) = cli.command else {
            panic!("gaps subcommand")
        };
        assert_eq!(gaps.lines, Some(7));
        std::env::remove_var("JR_LOGS_SINCE");
        std::env::remove_var("JR_GAPS_LINES");
    }
}
