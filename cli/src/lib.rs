//! `jrctl`: journalctl for every node's journal, asked of jr-server.
//!
//! [`args`] is the command line; [`client`] connects to the server;
//! [`logs`] turns `jrctl logs` flags into a `LogsRequest` and prints the
//! stream through [`output`]; [`info`] prints hosts, units and stats;
//! [`time`] parses `--since`/`--until`.

pub mod args;
pub mod client;
pub mod info;
pub mod logs;
pub mod output;
pub mod routes;
pub mod time;

use args::{Cli, Command};

/// Runs one command against the server.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Logs(a) => {
            // Everything that can be checked locally is, before connecting.
            let plan = logs::Plan::from_args(&a)?;
            let mut c = client::connect(&cli.server, &cli.connect).await?;
            logs::run(&mut c, plan).await
        }
        Command::Hosts(a) => {
            info::hosts(&mut client::connect(&cli.server, &cli.connect).await?, &a).await
        }
        Command::Gaps(a) => {
            let since = a
                .since
                .as_deref()
                .map(time::parse)
                .transpose()
                .map_err(|e| anyhow::anyhow!("invalid --since: {e}"))?;
            info::gaps(
                &mut client::connect(&cli.server, &cli.connect).await?,
                &a,
                since,
            )
            .await
        }
        Command::Units { hosts } => {
            info::units(
                &mut client::connect(&cli.server, &cli.connect).await?,
                hosts,
            )
            .await
        }
        Command::Stats => {
            info::stats(&mut client::connect(&cli.server, &cli.connect).await?).await?;
            routes::stats(&cli.server, &cli.connect).await
        }
        Command::Routes(a) => routes::run(&cli.server, &cli.connect, a).await,
    }
}

/// An error as one line: a server's status message alone, otherwise the
/// chain of causes joined with ": ".
pub fn one_line(e: &anyhow::Error) -> String {
    if let Some(s) = e.downcast_ref::<tonic::Status>() {
        return client::status_line(s);
    }
    format!("{e:#}").replace('\n', " ")
}

/// clap's multi-line usage error as one line: the problem and the accepted
/// values, without the "try --help" footer.
pub fn usage_line(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
        })
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join(" ")
}
