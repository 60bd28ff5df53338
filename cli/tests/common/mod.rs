//! Harness of the jrctl tests: a real jr-server on 127.0.0.1:0 with its
//! SQLite file in a scratch directory, fixture journals written by
//! systemd-journal-remote and shipped by the jr-agent library, the real
//! `jrctl` binary, and journalctl as the oracle. Both jrctl and journalctl
//! run with `TZ=UTC`, so local-time layouts agree on any machine.

#![allow(dead_code)]

use bytes::BytesMut;
use jr_proto::v1::Entry;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::codec::Decoder as _;
use tokio_util::sync::CancellationToken;

pub use jr_tests::fixture::{Fixture, Host, JournalWriter, Layout};

/// Field size cap when reading export streams back.
const MAX_FIELD_BYTES: usize = 64 << 20;

/// How long an agent gets to ship a fixture.
const SHIP_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub url: String,
    listen: String,
    shutdown: CancellationToken,
    server: Option<JoinHandle<()>>,
}

async fn serve(dir: &Path, listen: &str) -> (String, CancellationToken, JoinHandle<()>) {
    let config = jr_server::ServerConfig {
        listen: listen.to_owned(),
        db: dir.join("journal-router.db"),
        commit_latency: Duration::from_millis(10),
        ..Default::default()
    };
    let server = jr_server::Server::bind(config)
        .await
        .expect("bind jr-server");
    let addr = server.local_addr().to_string();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        server.serve(token).await.expect("jr-server serves");
    });
    (addr, shutdown, handle)
}

impl Cluster {
    pub async fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("jrctl-test-")
            .tempdir()
            .expect("scratch directory");
        let (addr, shutdown, handle) = serve(dir.path(), "127.0.0.1:0").await;
        Cluster {
            dir,
            url: format!("http://{addr}"),
            listen: addr,
            shutdown,
            server: Some(handle),
        }
    }

    /// Stops the server (draining it) and starts it again on the same
    /// address and database.
    pub async fn restart(&mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.server.take() {
            h.await.expect("jr-server stops");
        }
        let (_, shutdown, handle) = serve(self.dir.path(), &self.listen).await;
        self.shutdown = shutdown;
        self.server = Some(handle);
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn agent_config(&self, journal_dir: &Path, follow: bool) -> jr_agent::AgentConfig {
        jr_agent::AgentConfig {
            server: self.url.clone(),
            directory: Some(journal_dir.to_owned()),
            no_follow: !follow,
            linger: Duration::from_millis(20),
            state_file: Some(journal_dir.join("agent.state")),
            ..Default::default()
        }
    }

    /// Ships everything in `journal_dir` and waits for every ack.
    pub async fn ship(&self, journal_dir: &Path) {
        let run = jr_agent::run(
            self.agent_config(journal_dir, false),
            CancellationToken::new(),
        );
        tokio::time::timeout(SHIP_TIMEOUT, run)
            .await
            .expect("agent finishes in time")
            .expect("agent ships the fixture");
    }

    /// An agent following `journal_dir` until `stop` fires.
    pub fn follow(&self, journal_dir: &Path, stop: CancellationToken) -> JoinHandle<()> {
        let run = jr_agent::run(self.agent_config(journal_dir, true), stop);
        tokio::spawn(async move {
            run.await.expect("following agent runs");
        })
    }

    /// Runs `jrctl ARGS` against this server.
    pub async fn jrctl(&self, args: &[&str]) -> Output {
        jrctl_at(&self.url, args).await
    }

    /// `jrctl` that must succeed; its stdout.
    pub async fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.jrctl(args).await;
        assert!(
            out.status.success(),
            "jrctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.server.take() {
            h.abort();
        }
    }
}

pub fn jrctl_command(url: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_jrctl"));
    cmd.env_remove("JR_SERVER")
        .env("TZ", "UTC")
        .arg("--server")
        .arg(url)
        .args(args)
        .kill_on_drop(true);
    cmd
}

pub async fn jrctl_at(url: &str, args: &[&str]) -> Output {
    jrctl_command(url, args).output().await.expect("run jrctl")
}

/// `journalctl --file F… -q ARGS` with `TZ=UTC`; its stdout.
pub fn journalctl(files: &[PathBuf], args: &[&str]) -> Vec<u8> {
    let mut cmd = std::process::Command::new("journalctl");
    cmd.env("TZ", "UTC")
        .env("SYSTEMD_COLORS", "0")
        .arg("-q")
        .arg("--no-pager");
    for f in files {
        cmd.arg("--file").arg(f);
    }
    let out = cmd.args(args).output().expect("run journalctl");
    // journalctl exits 1 when a filter matches nothing; only stderr tells
    // a real failure.
    assert!(
        out.status.success() || out.stderr.is_empty(),
        "journalctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Entries of an export-format stream.
pub fn parse_export(data: &[u8]) -> Vec<Entry> {
    let mut dec = jr_journal::export::ExportDecoder::new(MAX_FIELD_BYTES);
    let mut buf = BytesMut::from(data);
    let mut out = Vec::new();
    while let Some(e) = dec.decode_eof(&mut buf).expect("export decodes") {
        out.push(e);
    }
    assert_eq!(dec.stats().malformed, 0, "export stream is well formed");
    out
}

/// Polls `check` up to `tries` times, 50 ms apart.
pub async fn eventually<F, Fut>(tries: u32, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..tries {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
