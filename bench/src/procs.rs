//! The processes a benchmark runs: spawned with their output in log files,
//! reaped with `wait4` so that their CPU time (including the children they
//! reaped themselves, such as the agent's journalctl) is exact, sampled
//! from /proc for memory, and killed when their handle is dropped so that
//! an error or Ctrl-C leaves nothing running.
//!
//! `std::process` and `tokio::process` do not report a child's resource
//! usage, hence the small `wait4` waiter here.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// How a process ended.
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    /// The exit code, or `None` when a signal ended it.
    pub code: Option<i32>,
    /// User plus system CPU time of the process and of every descendant it
    /// waited for.
    pub cpu: Duration,
}

/// A running child process, killed (SIGKILL) when dropped before it ended.
pub struct Proc {
    pub name: String,
    pid: i32,
    exited: Arc<AtomicBool>,
    exit: Option<oneshot::Receiver<Exit>>,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc> {
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        cmd.stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null());
        Self::spawn_with(name, cmd)
    }

    /// Starts `cmd` as configured by the caller (stdin piped, for example).
    pub fn spawn_with(name: &str, mut cmd: Command) -> Result<Proc> {
        // SAFETY: prctl is async-signal-safe. The child dies with us even
        // when we are killed too abruptly to drop its handle.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        // The waiter below reaps the process; the std handle must not.
        drop(child);
        let exited = Arc::new(AtomicBool::new(false));
        let (tx, rx) = oneshot::channel();
        let flag = exited.clone();
        std::thread::Builder::new()
            .name(format!("wait-{pid}"))
            .spawn(move || {
                let exit = wait4(pid);
                flag.store(true, Ordering::SeqCst);
                let _ = tx.send(exit);
            })?;
        Ok(Proc {
            name: name.to_owned(),
            pid,
            exited,
            exit: Some(rx),
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `signal` unless the process has already been reaped.
    pub fn signal(&self, signal: i32) {
        if !self.exited.load(Ordering::SeqCst) {
            // SAFETY: kill(2) has no memory effects; the pid is our own
            // child and has not been reaped yet.
            unsafe {
                libc::kill(self.pid, signal);
            }
        }
    }

    /// Waits for the process to end.
    pub async fn wait(&mut self) -> Result<Exit> {
        let Some(rx) = self.exit.take() else {
            bail!("{} was already waited for", self.name);
        };
        rx.await
            .with_context(|| format!("lost the waiter of {}", self.name))
    }

    /// Waits for an exit with code 0.
    pub async fn wait_success(&mut self) -> Result<Exit> {
        let exit = self.wait().await?;
        if exit.code != Some(0) {
            bail!("{} ended with {:?}", self.name, exit.code);
        }
        Ok(exit)
    }

    /// SIGTERM, then SIGKILL if it has not ended within `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Result<Exit> {
        self.signal(libc::SIGTERM);
        let Some(mut rx) = self.exit.take() else {
            bail!("{} was already waited for", self.name);
        };
        match tokio::time::timeout(grace, &mut rx).await {
            Ok(exit) => Ok(exit?),
            Err(_) => {
                self.signal(libc::SIGKILL);
                Ok(rx.await?)
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

fn wait4(pid: i32) -> Exit {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; pid is our unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Exit {
                code: None,
                cpu: Duration::ZERO,
            };
        }
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    Exit {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
    }
}

/// CPU time (user + system) a live process has used so far.
pub fn cpu_now(pid: i32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may itself hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}

/// Memory high-water marks of one process, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// Largest RssAnon sampled.
    pub rss_anon: u64,
    /// The kernel's own peak of the whole resident set (VmHWM).
    pub hwm: u64,
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Samples RssAnon and VmHWM of a set of processes (and of their direct
/// children, separately) every 50 ms until dropped.
pub struct Sampler {
    tracked: Arc<Mutex<Vec<Tracked>>>,
    task: tokio::task::JoinHandle<()>,
}

struct Tracked {
    pid: i32,
    own: Memory,
    children: Memory,
}

/// Sampling period for memory.
const PERIOD: Duration = Duration::from_millis(50);

impl Sampler {
    pub fn start() -> Sampler {
        let tracked: Arc<Mutex<Vec<Tracked>>> = Arc::default();
        let t = tracked.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(PERIOD);
            loop {
                tick.tick().await;
                let pids: Vec<i32> = lock(&t).iter().map(|x| x.pid).collect();
                let samples: Vec<(Memory, Memory)> = pids.iter().map(|&p| sample(p)).collect();
                let mut t = lock(&t);
                for (x, (own, children)) in t.iter_mut().zip(samples) {
                    x.own.rss_anon = x.own.rss_anon.max(own.rss_anon);
                    x.own.hwm = x.own.hwm.max(own.hwm);
                    x.children.rss_anon = x.children.rss_anon.max(children.rss_anon);
                    x.children.hwm = x.children.hwm.max(children.hwm);
                }
            }
        });
        Sampler { tracked, task }
    }

    pub fn track(&self, pid: i32) {
        lock(&self.tracked).push(Tracked {
            pid,
            own: Memory::default(),
            children: Memory::default(),
        });
    }

    /// Peaks of `pid` itself and of its children (largest child).
    pub fn peak(&self, pid: i32) -> (Memory, Memory) {
        lock(&self.tracked)
            .iter()
            .find(|x| x.pid == pid)
            .map(|x| (x.own, x.children))
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn memory(pid: &str) -> Memory {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Memory::default();
    };
    Memory {
        rss_anon: status_kib(&status, "RssAnon:").unwrap_or(0) * 1024,
        hwm: status_kib(&status, "VmHWM:").unwrap_or(0) * 1024,
    }
}

fn sample(pid: i32) -> (Memory, Memory) {
    let own = memory(&pid.to_string());
    let mut children = Memory::default();
    if let Ok(list) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        for child in list.split_whitespace() {
            let m = memory(child);
            children.rss_anon = children.rss_anon.max(m.rss_anon);
            children.hwm = children.hwm.max(m.hwm);
        }
    }
    (own, children)
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_listening(what: &str, addr: std::net::SocketAddr) -> Result<()> {
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("{what} does not listen on {addr}")
}

/// A loopback port that was free a moment ago, for programs that cannot
/// report the port they bound.
pub fn free_port() -> Result<std::net::SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}
