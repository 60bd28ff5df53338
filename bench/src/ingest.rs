//! The ingest benchmark: the same journal files shipped by jr-agent →
//! jr-server and by systemd-journal-upload → systemd-journal-remote, one
//! client per host, each client's traffic through a counting proxy.

use crate::journals::{self, Dataset, JOURNAL_REMOTE, JOURNAL_UPLOAD};
use crate::procs::{self, free_port, wait_listening, Proc, Sampler};
use crate::proxy::CountingProxy;
use crate::report::Side;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a server gets to shut down cleanly before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// Where the binaries are and whether to profile them.
pub struct Ours {
    pub bin_dir: PathBuf,
    /// Record `perf record -g` profiles of the server and agents here.
    pub perf: Option<PathBuf>,
    /// Passed to every jr-agent after the benchmark's own flags.
    pub agent_args: Vec<String>,
}

/// jr-agent per host → counting proxy → jr-server → SQLite.
pub async fn run_ours(ours: &Ours, data: &Dataset, work: &Path) -> Result<Side> {
    let dir = work.join("ours");
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("journal-router.db");
    let addr = free_port()?;
    let sampler = Sampler::start();
    let mut server_cmd = Command::new(ours.bin_dir.join("jr-server"));
    server_cmd
        .arg("--db")
        .arg(&db)
        .arg("--listen")
        .arg(addr.to_string());
    let mut server = Proc::spawn("jr-server", server_cmd, &dir.join("jr-server.log"))?;
    sampler.track(server.pid());
    wait_listening("jr-server", addr).await?;
    let mut perf_procs = Vec::new();
    if let Some(perf_dir) = &ours.perf {
        perf_procs.push(perf_attach(perf_dir, "jr-server", server.pid())?);
    }
    let proxy = CountingProxy::start(addr).await?;
    let url = format!("http://{}", proxy.addr());

    let started = Instant::now();
    let mut agents = Vec::new();
    for host in &data.hosts {
        let mut cmd = match &ours.perf {
            Some(perf_dir) => {
                let mut c = Command::new("perf");
                c.args(["record", "-g", "-q", "-o"])
                    .arg(perf_dir.join(format!("perf-jr-agent-{}.data", host.hostname)))
                    .arg("--")
                    .arg(ours.bin_dir.join("jr-agent"));
                c
            }
            None => Command::new(ours.bin_dir.join("jr-agent")),
        };
        cmd.arg("--server")
            .arg(&url)
            .arg("--directory")
            .arg(&host.dir)
            .arg("--hostname")
            .arg(&host.hostname)
            .arg("--state-file")
            .arg(dir.join(format!("{}.state", host.hostname)))
            .arg("--no-follow")
            .args(&ours.agent_args);
        let log = dir.join(format!("jr-agent-{}.log", host.hostname));
        let agent = Proc::spawn(&format!("jr-agent {}", host.hostname), cmd, &log)?;
        sampler.track(agent.pid());
        agents.push(agent);
    }
    let mut client_cpu = Duration::ZERO;
    for agent in &mut agents {
        let exit = agent
            .wait_success()
            .await
            .with_context(|| format!("see the logs in {}", dir.display()))?;
        client_cpu += exit.cpu;
    }
    // Stored means searchable too: the full-text index, filled beside the
    // writer, must have reached the newest entry.
    wait_indexed(&db).await?;
    let wall = started.elapsed();
    let server_cpu = procs::cpu_now(server.pid()).context("jr-server is gone")?;
    let (server_mem, _) = sampler.peak(server.pid());
    let (client_mem, client_child_mem) = peaks(&sampler, &agents);
    let wire_bytes = proxy.upstream_bytes();
    let stored_entries = count_db_entries(&db).await?;
    for p in &mut perf_procs {
        p.signal(libc::SIGINT);
        let _ = p.wait().await;
    }
    server.stop(STOP_GRACE).await?;
    // After the server stopped: its last connection copied the logs into
    // the files, so pages are not counted twice.
    let stored_bytes = ["", "-wal", "-fts", "-fts-wal"]
        .iter()
        .map(|suffix| {
            let mut p = db.clone().into_os_string();
            p.push(suffix);
            file_len(Path::new(&p))
        })
        .sum();
    if stored_entries != data.entries {
        bail!(
            "jr-server stored {stored_entries} entries, the dataset has {}",
            data.entries
        );
    }
    Ok(Side {
        name: "jr-agent → jr-server",
        entries: stored_entries,
        wall,
        client_cpu,
        server_cpu,
        client_mem,
        client_child_mem: Some(client_child_mem),
        server_mem,
        wire_bytes,
        stored_bytes,
    })
}

/// systemd-journal-upload per host → counting proxy →
/// systemd-journal-remote → journal files.
pub async fn run_peer(data: &Dataset, work: &Path) -> Result<Side> {
    let dir = work.join("peer");
    let out = dir.join("out");
    std::fs::create_dir_all(&out)?;
    let addr = free_port()?;
    let sampler = Sampler::start();
    let mut cmd = Command::new(JOURNAL_REMOTE);
    cmd.arg(format!("--listen-http={addr}"))
        .arg(format!("--output={}/", out.display()))
        .arg("--split-mode=host");
    let mut receiver = Proc::spawn(
        "systemd-journal-remote",
        cmd,
        &dir.join("systemd-journal-remote.log"),
    )?;
    sampler.track(receiver.pid());
    wait_listening("systemd-journal-remote", addr).await?;
    let proxy = CountingProxy::start(addr).await?;

    let started = Instant::now();
    let mut uploaders = Vec::new();
    for host in &data.hosts {
        let mut cmd = Command::new(JOURNAL_UPLOAD);
        // Without --save-state nothing is written outside the run
        // directory; --follow=no ends the upload at the end of the journal.
        cmd.arg(format!("--url=http://{}", proxy.addr()))
            .arg(format!("--directory={}", host.dir.display()))
            .arg("--follow=no");
        let log = dir.join(format!("systemd-journal-upload-{}.log", host.hostname));
        let p = Proc::spawn(
            &format!("systemd-journal-upload {}", host.hostname),
            cmd,
            &log,
        )?;
        sampler.track(p.pid());
        uploaders.push(p);
    }
    let mut client_cpu = Duration::ZERO;
    for p in &mut uploaders {
        let exit = p
            .wait_success()
            .await
            .with_context(|| format!("see the logs in {}", dir.display()))?;
        client_cpu += exit.cpu;
    }
    let wall = started.elapsed();
    let server_cpu = procs::cpu_now(receiver.pid()).context("the receiver is gone")?;
    let (server_mem, _) = sampler.peak(receiver.pid());
    let (client_mem, _) = peaks(&sampler, &uploaders);
    let wire_bytes = proxy.upstream_bytes();
    // The receiver closes (and completes) its files when it stops.
    receiver.stop(STOP_GRACE).await?;
    let stored_bytes = journals::dir_bytes(&out);
    let stored_entries = journals::count_entries(&out)?;
    if stored_entries != data.entries {
        bail!(
            "systemd-journal-remote stored {stored_entries} entries, the dataset has {}",
            data.entries
        );
    }
    Ok(Side {
        name: "journal-upload → journal-remote",
        entries: stored_entries,
        wall,
        client_cpu,
        server_cpu,
        client_mem,
        client_child_mem: None,
        server_mem,
        wire_bytes,
        stored_bytes,
    })
}

/// The largest peak among `clients` (one client's memory is what a node
/// pays), for the processes and for their children.
fn peaks(sampler: &Sampler, clients: &[Proc]) -> (procs::Memory, procs::Memory) {
    let mut own = procs::Memory::default();
    let mut children = procs::Memory::default();
    for c in clients {
        let (o, ch) = sampler.peak(c.pid());
        own.rss_anon = own.rss_anon.max(o.rss_anon);
        own.hwm = own.hwm.max(o.hwm);
        children.rss_anon = children.rss_anon.max(ch.rss_anon);
        children.hwm = children.hwm.max(ch.hwm);
    }
    (own, children)
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// A read-only connection to the database at `db`.
async fn open_read(db: &Path) -> Result<sqlx::SqliteConnection> {
    use sqlx::ConnectOptions;
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("cannot open {}", db.display()))
}

/// Rows in the `entries` table, read through a read-only connection.
pub async fn count_db_entries(db: &Path) -> Result<u64> {
    let mut conn = open_read(db).await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM entries")
        .fetch_one(&mut conn)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Waits until the full-text index file beside `db` covers its newest
/// entry.
async fn wait_indexed(db: &Path) -> Result<()> {
    let mut conn = open_read(db).await?;
    let mut fts = db.as_os_str().to_owned();
    fts.push("-fts");
    sqlx::query("ATTACH DATABASE ?1 AS fts")
        .bind(fts.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        let (newest, indexed): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM entries), (SELECT upto FROM fts.fts_position)",
        )
        .fetch_one(&mut conn)
        .await?;
        if indexed >= newest {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "the full-text index of {} stayed at id {indexed} of {newest}",
                db.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `perf record -g` attached to a running process until SIGINT.
fn perf_attach(dir: &Path, name: &str, pid: i32) -> Result<Proc> {
    let mut cmd = Command::new("perf");
    cmd.args(["record", "-g", "-q", "-o"])
        .arg(dir.join(format!("perf-{name}.data")))
        .arg("-p")
        .arg(pid.to_string());
    Proc::spawn(
        &format!("perf {name}"),
        cmd,
        &dir.join(format!("perf-{name}.log")),
    )
}
