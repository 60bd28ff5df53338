//! The command line, in journalctl's vocabulary where journalctl has a word
//! for it. The doc comment of each field is its `--help` text.

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

#[derive(Debug, Parser)]
#[command(
    name = "jrctl",
    version,
    about = "Query the journals that journal-router collected from every node"
)]
pub struct Cli {
    /// jr-server to ask.
    #[arg(long, global = true, env = "JR_SERVER", value_name = "URL", default_value = DEFAULT_SERVER)]
    pub server: String,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process; the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show log entries, like journalctl.
    Logs(LogsArgs),
    /// List the hosts that ship to the server.
    Hosts,
    /// List units with their entry counts.
    Units {
        /// Only units of these hosts (globs on hostname or machine id).
        #[arg(short = 'H', long = "host", value_name = "GLOB")]
        hosts: Vec<String>,
    },
    /// Show store totals, size and ingest rate.
    Stats,
    /// Forwarding routes: position, lag, lines sent, last error; `replay`
    /// sends a time range again.
    Routes(crate::routes::RoutesArgs),
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
    #[arg(short = 'H', long = "host", value_name = "GLOB")]
    pub hosts: Vec<String>,

    /// Only this unit: its own processes and what systemd says about it
    /// (globs; repeatable).
    #[arg(short = 'u', long = "unit", value_name = "GLOB")]
    pub units: Vec<String>,

    /// Only this Docker container (CONTAINER_NAME glob; repeatable).
    #[arg(long = "container", value_name = "GLOB")]
    pub containers: Vec<String>,

    /// Priority level or range (`err`, `3`, `err..warning`).
    #[arg(short = 'p', long, value_name = "LEVEL")]
    pub priority: Option<String>,

    /// Only this syslog identifier (glob; repeatable).
    #[arg(short = 't', long = "identifier", value_name = "ID")]
    pub identifiers: Vec<String>,

    /// FIELD=VALUE matches: the same field ORed, different fields ANDed.
    #[arg(value_name = "FIELD=VALUE")]
    pub matches: Vec<String>,

    /// The current boot of each host, an offset (`-1`: the one before), or
    /// a boot id.
    #[arg(short = 'b', long, value_name = "ID|OFFSET", num_args = 0..=1, default_missing_value = "0", allow_hyphen_values = true)]
    pub boot: Option<String>,

    /// Entries on or newer than this time (`2024-05-01 10:00`, `today`,
    /// `yesterday`, `-1h`, `2 hours ago`).
    #[arg(short = 'S', long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,

    /// Entries on or older than this time.
    #[arg(short = 'U', long, value_name = "TIME", allow_hyphen_values = true)]
    pub until: Option<String>,

    /// Messages matching this regular expression (case-insensitive unless
    /// it has capitals).
    #[arg(short = 'g', long, value_name = "REGEX")]
    pub grep: Option<String>,

    /// Case-sensitive grep or not, overriding the capitals rule.
    #[arg(long, value_name = "BOOL")]
    pub case_sensitive: Option<bool>,

    /// Messages containing all these words (full-text index).
    #[arg(long, value_name = "WORDS")]
    pub search: Option<String>,

    /// The last N entries (10 without a number).
    #[arg(short = 'n', long = "lines", value_name = "N", num_args = 0..=1, default_missing_value = "10")]
    pub lines: Option<u32>,

    /// Newest first.
    #[arg(short = 'r', long)]
    pub reverse: bool,

    /// Keep printing new entries as they arrive.
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Short)]
    pub output: Output,

    /// Accepted for journalctl habits; jrctl never pages.
    #[arg(long)]
    pub no_pager: bool,

    /// Leave out informational lines such as "-- No entries --".
    #[arg(short = 'q', long)]
    pub quiet: bool,
}
