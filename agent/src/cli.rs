//! The `jr-agent` command line: [`AgentConfig`]'s flags plus `--config`,
//! a TOML file whose keys are the long flag names (see `jr-config` for
//! the merge order: defaults, file, environment, command line).

use crate::config::AgentConfig;
use clap::{CommandFactory, FromArgMatches, Parser};
use std::ffi::OsString;
use std::path::PathBuf;

pub use jr_config::ConfigFileError;

#[derive(Debug, Parser)]
#[command(
    name = "jr-agent",
    version,
    about = "Ships this node's systemd journal to a jr-server."
)]
pub struct Cli {
    /// Read options from this TOML file; its keys are the long flag names
    /// (`server = "http://central:7070"`, `unit = ["a.service"]`).
    /// Environment variables and flags override it.
    #[arg(long, env = "JR_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub agent: AgentConfig,
}

/// Parses the process's arguments, environment and config file.
pub fn load() -> Result<AgentConfig, ConfigFileError> {
    load_from(std::env::args_os())
}

/// [`load`] with explicit arguments (the first is the program name).
pub fn load_from<I, T>(args: I) -> Result<AgentConfig, ConfigFileError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = jr_config::matches_with_file(Cli::command(), args)?;
    Ok(Cli::from_arg_matches(&matches)?.agent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn config_file_fills_flags_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jr-agent.toml");
        std::fs::write(
            &path,
            "server = \"http://central:7070\"\nunit = [\"a.service\"]\nlinger = \"1s\"\nno-follow = true\nmatch = [\"_TRANSPORT=kernel\"]\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let c = load_from(["jr-agent", "--config", p]).unwrap();
        assert_eq!(c.server, "http://central:7070");
        assert_eq!(c.unit, ["a.service"]);
        assert_eq!(c.linger, Duration::from_secs(1));
        assert_eq!(c.matches, ["_TRANSPORT=kernel"]);
        assert!(c.no_follow);
        let c = load_from(["jr-agent", "--config", p, "--linger", "5ms"]).unwrap();
        assert_eq!(c.linger, Duration::from_millis(5));

        std::fs::write(&path, "server = \"http://central:7070\"\nlingr = \"1s\"\n").unwrap();
        let err = load_from(["jr-agent", "--config", p])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("lingr"), "{err}");
    }
}
