//! `--local-agent`: a jr-agent running inside the server process, shipping
//! this machine's journal (or `--local-agent-directory`) to the server's
//! own address.
//!
//! The agent's failures never stop the server: with no journal to read
//! the server says so on stderr, with how to point it at one, and keeps
//! serving other agents.

use crate::config::ServerConfig;
use crate::progress::say;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Starts the in-process agent; it stops with `shutdown`.
pub fn spawn(
    config: &ServerConfig,
    server: SocketAddr,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) {
    let directory = config.local_agent_directory.clone();
    let target = reachable(server);
    // What the messages name, and where the agent's own discovery looks,
    // so that this check and the agent agree on which files there are.
    let (searched, readable): (Vec<PathBuf>, Vec<PathBuf>) = match &directory {
        Some(d) => (vec![d.clone()], vec![d.clone()]),
        None => (
            jr_journal_file::SYSTEM_JOURNAL_ROOTS
                .iter()
                .map(PathBuf::from)
                .collect(),
            jr_journal_file::system_journal_dirs(),
        ),
    };
    if !readable.iter().any(|d| has_journal_files(d)) {
        say(format_args!(
            "jr-server: --local-agent has no journal to ship: no *.journal files in {}.\n\
             jr-server: point it at one with --local-agent-directory DIR, or run \
             `jr-agent --directory DIR --server http://{target}`; the server keeps serving.",
            shown(&searched)
        ));
        return;
    }
    let agent = jr_agent::AgentConfig {
        server: format!("http://{target}"),
        directory,
        ..jr_agent::AgentConfig::default()
    };
    say(format_args!(
        "jr-server: local agent ships {} to http://{target}",
        shown(&searched)
    ));
    tasks.spawn(async move {
        match jr_agent::run(agent, shutdown).await {
            Ok(summary) => tracing::info!(?summary, "local agent stopped"),
            Err(e) => say(format_args!(
                "jr-server: the local agent stopped: {e:#}\n\
                 jr-server: the server keeps serving; point the agent at a journal with \
                 --local-agent-directory DIR, or run `jr-agent --directory DIR --server http://{target}`."
            )),
        }
    });
}

/// The server's address as a client should dial it: a wildcard listen
/// address is reached through loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

fn shown(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Whether `dir` or its machine-id subdirectories hold journal files.
fn has_journal_files(dir: &Path) -> bool {
    jr_journal_file::journal_files(dir).is_ok_and(|files| !files.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_journals_one_level_down() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_journal_files(dir.path()));
        let sub = dir.path().join("0123456789abcdef0123456789abcdef");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("system.journal"), b"").unwrap();
        assert!(has_journal_files(dir.path()));
        // journald and the agent look only into machine-id subdirectories.
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir(other.path().join("archive")).unwrap();
        std::fs::write(other.path().join("archive/system.journal"), b"").unwrap();
        assert!(!has_journal_files(other.path()));
        assert!(!has_journal_files(&dir.path().join("missing")));
    }

    #[test]
    fn wildcard_listen_is_dialled_on_loopback() {
        let a: SocketAddr = "0.0.0.0:7070".parse().unwrap();
        assert_eq!(reachable(a), "127.0.0.1:7070".parse().unwrap());
        let b: SocketAddr = "10.1.2.3:7070".parse().unwrap();
        assert_eq!(reachable(b), b);
    }
}
