//! `jrctl routes`: the server's forwarding routes (position, lag, what
//! they sent, their last error) and `jrctl routes replay` to send a time
//! range again.

use crate::output::short::format_bytes;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use jr_proto::v1::routes_client::RoutesClient;
use jr_proto::v1::{ListRoutesRequest, ReplayRouteRequest, RouteStatus};
use std::fmt::Write as _;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

#[derive(Debug, Args)]
pub struct RoutesArgs {
    #[command(subcommand)]
    pub command: Option<RoutesCommand>,
}

#[derive(Debug, Subcommand)]
pub enum RoutesCommand {
    /// List routes with position, lag, what they sent and their last error
    /// (the default).
    List,
    /// Send the entries of a time range again (those the route already
    /// delivered; later ones follow in the normal way).
    Replay {
        /// The route's name.
        name: String,
        /// Entries from this time (`2024-05-01 10:00`, `-1h`, `yesterday`).
        #[arg(
            short = 'S',
            long,
            env = "JR_REPLAY_SINCE",
            value_name = "TIME",
            allow_hyphen_values = true
        )]
        since: String,
        /// Up to this time (default: what the route delivered so far).
        #[arg(
            short = 'U',
            long,
            env = "JR_REPLAY_UNTIL",
            value_name = "TIME",
            allow_hyphen_values = true
        )]
        until: Option<String>,
    },
}

async fn connect(
    url: &str,
    creds: &crate::client::ConnectArgs,
) -> anyhow::Result<RoutesClient<InterceptedService<Channel, crate::client::Bearer>>> {
    let (channel, bearer) = crate::client::channel(url, creds).await?;
    Ok(RoutesClient::with_interceptor(channel, bearer))
}

/// Runs `jrctl routes …` against `server`.
pub async fn run(
    server: &str,
    creds: &crate::client::ConnectArgs,
    args: RoutesArgs,
) -> anyhow::Result<()> {
    match args.command.unwrap_or(RoutesCommand::List) {
        RoutesCommand::List => {
            print!("{}", render(&list(server, creds).await?));
            Ok(())
        }
        RoutesCommand::Replay { name, since, until } => {
            let since_usec = usec(&since)?;
            let until_usec = until.as_deref().map(usec).transpose()?;
            let r = connect(server, creds)
                .await?
                .replay_route(ReplayRouteRequest {
                    name: name.clone(),
                    since_usec,
                    until_usec,
                })
                .await?
                .into_inner();
            println!(
                "replaying route {name}: entries {}..={} in the time range (see `jrctl routes` for progress)",
                r.first_id, r.last_id
            );
            Ok(())
        }
    }
}

/// The routes part of `jrctl stats`: each route's forwarding position.
pub async fn stats(server: &str, creds: &crate::client::ConnectArgs) -> anyhow::Result<()> {
    print!("{}", positions(&list(server, creds).await?));
    Ok(())
}

/// Every route the server forwards by, with its state.
async fn list(
    server: &str,
    creds: &crate::client::ConnectArgs,
) -> anyhow::Result<Vec<RouteStatus>> {
    Ok(connect(server, creds)
        .await?
        .list_routes(ListRoutesRequest {})
        .await?
        .into_inner()
        .routes)
}

/// One line per route: position, what is still to send, what was sent.
pub fn positions(routes: &[RouteStatus]) -> String {
    if routes.is_empty() {
        return "routes:         none\n".to_owned();
    }
    let mut out = String::new();
    for r in routes {
        let _ = writeln!(
            out,
            "route {}:{:w$}position {}, {} entries behind ({:.1}s), {} lines sent, {}",
            r.name,
            "",
            r.position,
            r.lag_entries,
            r.lag_seconds,
            r.lines_sent,
            if r.connected { "connected" } else { "down" },
            w = 9usize.saturating_sub(r.name.chars().count()).max(1),
        );
    }
    out
}

fn usec(t: &str) -> anyhow::Result<i64> {
    let u = crate::time::parse(t)?;
    i64::try_from(u).with_context(|| format!("time {t:?} is out of range"))
}

fn when(usec: i64) -> String {
    match Timestamp::from_microsecond(usec) {
        Ok(ts) if usec > 0 => ts
            .to_zoned(TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        _ => "-".to_owned(),
    }
}

/// The routes as a table, then each route's last error on its own line.
pub fn render(routes: &[RouteStatus]) -> String {
    let header = [
        "ROUTE",
        "DESTINATION",
        "STATE",
        "POSITION",
        "LAG",
        "LAG-AGE",
        "LINES",
        "BYTES",
        "REPEATED",
    ];
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|r| {
            let mut state = if r.connected { "connected" } else { "down" }.to_owned();
            if r.replay_pending > 0 {
                let _ = write!(state, " +replay {}", r.replay_pending);
            }
            vec![
                r.name.clone(),
                r.destination.clone(),
                state,
                r.position.to_string(),
                r.lag_entries.to_string(),
                format!("{:.1}s", r.lag_seconds),
                r.lines_sent.to_string(),
                format_bytes(r.bytes_sent),
                r.repeated_lines.to_string(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (c, w) in cells.iter().zip(&widths) {
            let _ = write!(l, "{c:<w$}  ");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
    for r in routes.iter().filter(|r| !r.last_error.is_empty()) {
        let _ = writeln!(
            out,
            "{}: last error at {}: {}",
            r.name,
            when(r.last_error_usec),
            r.last_error
        );
    }
    if routes.is_empty() {
        out.push_str("(no routes configured: add [[routes]] to jr-server's config file)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_lag_counts_and_errors() {
        let r = RouteStatus {
            name: "prod".into(),
            destination: "logentries+tls://data.logentries.com:443".into(),
            position: 120,
            lag_entries: 5,
            lag_seconds: 2.5,
            lines_sent: 115,
            bytes_sent: 2048,
            repeated_lines: 3,
            connected: false,
            last_error: "cannot connect to 1.2.3.4:443: refused".into(),
            last_error_usec: 1_700_000_000_000_000,
            ..RouteStatus::default()
        };
        let t = render(&[r]);
        let mut lines = t.lines();
        assert!(lines.next().unwrap().starts_with("ROUTE"));
        let row = lines.next().unwrap();
        for cell in ["prod", "down", "120", "5", "2.5s", "115", "3"] {
            assert!(row.split_whitespace().any(|c| c == cell), "{cell} in {row}");
        }
        assert!(lines.next().unwrap().contains("refused"));
    }

    #[test]
    fn stats_lines_give_each_position() {
        assert_eq!(positions(&[]), "routes:         none\n");
        let r = RouteStatus {
            name: "prod".into(),
            position: 120,
            lag_entries: 5,
            lag_seconds: 2.5,
            lines_sent: 115,
            connected: true,
            ..RouteStatus::default()
        };
        assert_eq!(
            positions(&[r]),
            "route prod:     position 120, 5 entries behind (2.5s), 115 lines sent, connected\n"
        );
    }
}
