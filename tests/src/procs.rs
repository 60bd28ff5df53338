//! `jr-server` and `jr-agent` as real child processes.
//!
//! The binaries are the ones `cargo build --workspace --bins` put next to
//! the test executable's directory (target/debug/). Each process writes its
//! stderr to a log file in the test's scratch directory; restarts append to
//! the same file, so the log tells the whole story, and it is printed when a
//! test panics. Children are killed when their handle is dropped.
//!
//! The server is started on `127.0.0.1:0` and its address read from its
//! "listening on" line, so no port is guessed; a restart binds the same
//! address again so that running agents find it.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long a process gets to exit after SIGTERM before the test fails.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the server gets to print its address.
const START_TRIES: u32 = 600;
const START_INTERVAL: Duration = Duration::from_millis(25);

/// The path of a workspace binary built beside the test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    // target/debug/deps/<test> -> target/debug/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: run cargo build --workspace --bins first",
        path.display()
    );
    path
}

fn command(binary_name: &str, workdir: &Path, log: &Path) -> Command {
    let mut cmd = Command::new(binary(binary_name));
    let stderr = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open process log");
    cmd.current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(stderr.try_clone().expect("clone log handle"))
        .stderr(stderr)
        .kill_on_drop(true)
        .env("NO_COLOR", "1");
    // Settings meant for a real deployment must not leak into a test.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("JR_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn signal(child: &Child, sig: Signal) {
    if let Some(pid) = child.id() {
        let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits in i32"));
        // The process may have exited on its own; that is not an error here.
        let _ = kill(pid, sig);
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn print_log_on_panic(what: &str, path: &Path) {
    if std::thread::panicking() {
        let log = read_log(path);
        let tail: String = {
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(200)..].join("\n")
        };
        eprintln!("----- {what} log ({}) -----\n{tail}\n-----", path.display());
    }
}

/// A running (or stopped) `jr-server`.
pub struct Server {
    child: Option<Child>,
    addr: SocketAddr,
    db: PathBuf,
    log: PathBuf,
    workdir: PathBuf,
    args: Vec<OsString>,
    starts: u32,
}

impl Server {
    /// Starts a server in `workdir` with its database there.
    pub async fn start(workdir: &Path) -> Server {
        Server::start_with(workdir, &[]).await
    }

    /// Starts a server with extra flags.
    pub async fn start_with(workdir: &Path, extra: &[&str]) -> Server {
        let mut server = Server {
            child: None,
            addr: "127.0.0.1:0".parse().expect("socket address"),
            db: workdir.join("journal-router.db"),
            log: workdir.join("jr-server.log"),
            workdir: workdir.to_owned(),
            args: extra.iter().map(OsString::from).collect(),
            starts: 0,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "server is already running");
        let offset = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = command("jr-server", &self.workdir, &self.log);
        cmd.arg("--listen")
            .arg(self.addr.to_string())
            .arg("--db")
            .arg(&self.db)
            .args(&self.args);
        let mut child = cmd.spawn().expect("start jr-server");
        self.starts += 1;
        for _ in 0..START_TRIES {
            let log = read_log(&self.log);
            let fresh = log.get(offset as usize..).unwrap_or("");
            if let Some(addr) = listening_address(fresh) {
                self.addr = addr;
                self.child = Some(child);
                return;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "jr-server exited at start ({status}):\n{}",
                    fresh.trim_end()
                );
            }
            tokio::time::sleep(START_INTERVAL).await;
        }
        panic!(
            "jr-server printed no \"listening on ADDR\" line within {:?}:\n{}",
            START_INTERVAL * START_TRIES,
            read_log(&self.log)
        );
    }

    /// `http://ADDR`, for `jr-agent --server`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn db_path(&self) -> &Path {
        &self.db
    }

    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// SIGKILL: the server gets no chance to finish anything.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, Signal::SIGKILL);
            child.wait().await.expect("reap jr-server");
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub async fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is running");
        signal(&child, Signal::SIGTERM);
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(status) => status.expect("reap jr-server"),
            Err(_) => panic!("jr-server did not exit within {STOP_TIMEOUT:?} of SIGTERM"),
        }
    }

    /// Starts the server again on the same address and database.
    pub async fn restart(&mut self) {
        self.spawn().await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        print_log_on_panic("jr-server", &self.log);
    }
}

/// The address in a line like `jr-server listening on 127.0.0.1:7070 (...)`.
fn listening_address(log: &str) -> Option<SocketAddr> {
    log.lines().find_map(|line| {
        let rest = &line[line.find("listening on ")? + "listening on ".len()..];
        let token = rest.split_whitespace().next()?;
        token
            .trim_matches(|c: char| matches!(c, '"' | ',' | '(' | ')'))
            .parse()
            .ok()
    })
}

/// What to start `jr-agent` with; [`Agent::command`] begins one.
#[derive(Clone, Debug)]
pub struct AgentCommand {
    name: String,
    workdir: PathBuf,
    args: Vec<OsString>,
}

impl AgentCommand {
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn flag(self, flag: &str, value: impl Into<OsString>) -> Self {
        self.arg(flag).arg(value)
    }

    pub fn directory(self, dir: &Path) -> Self {
        self.flag("--directory", dir)
    }

    pub fn hostname(self, hostname: &str) -> Self {
        self.flag("--hostname", hostname)
    }

    pub fn machine_id(self, machine_id: &str) -> Self {
        self.flag("--machine-id", machine_id)
    }

    pub fn state_file(self, path: &Path) -> Self {
        self.flag("--state-file", path)
    }

    /// Ship what the journal holds, wait for the acknowledgements, exit.
    pub fn no_follow(self) -> Self {
        self.arg("--no-follow")
    }

    pub fn spawn(self) -> Agent {
        let mut agent = Agent {
            child: None,
            log: self.workdir.join(format!("jr-agent-{}.log", self.name)),
            command: self,
            starts: 0,
        };
        agent.spawn();
        agent
    }
}

/// A running (or stopped) `jr-agent`.
pub struct Agent {
    child: Option<Child>,
    command: AgentCommand,
    log: PathBuf,
    starts: u32,
}

impl Agent {
    /// An agent shipping to `server`; `name` tells its log apart.
    pub fn command(server: &Server, workdir: &Path, name: &str) -> AgentCommand {
        AgentCommand {
            name: name.to_owned(),
            workdir: workdir.to_owned(),
            args: vec!["--server".into(), server.url().into()],
        }
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "agent is already running");
        let mut cmd = command("jr-agent", &self.command.workdir, &self.log);
        cmd.args(&self.command.args);
        self.child = Some(cmd.spawn().expect("start jr-agent"));
        self.starts += 1;
    }

    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    pub fn starts(&self) -> u32 {
        self.starts
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Waits for the agent to exit 0 on its own (as `--no-follow` does).
    pub async fn wait_success(&mut self, timeout: Duration) {
        let child = self.child.as_mut().expect("agent is running");
        let status = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => status.expect("reap jr-agent"),
            Err(_) => panic!("jr-agent did not exit within {timeout:?}"),
        };
        self.child = None;
        assert!(status.success(), "jr-agent exited with {status}");
    }

    /// SIGKILL: the agent gets no chance to finish anything.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, Signal::SIGKILL);
            child.wait().await.expect("reap jr-agent");
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub async fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("agent is running");
        signal(&child, Signal::SIGTERM);
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(status) => status.expect("reap jr-agent"),
            Err(_) => panic!("jr-agent did not exit within {STOP_TIMEOUT:?} of SIGTERM"),
        }
    }

    /// Starts the agent again with the same flags.
    pub fn restart(&mut self) {
        self.spawn();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        print_log_on_panic(&format!("jr-agent {}", self.command.name), &self.log);
    }
}

/// Processes whose command line mentions `needle`, for finding children a
/// killed agent left behind (such as its journalctl).
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) && pid != std::process::id() {
            found.push((pid, cmdline.trim_end().to_owned()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::listening_address;

    #[test]
    fn finds_the_listening_address_in_a_log_line() {
        let log = "2024-01-01T00:00:00Z  INFO jr_server: jr-server listening on 127.0.0.1:41234 (database ./x.db)\n";
        assert_eq!(
            listening_address(log),
            Some("127.0.0.1:41234".parse().unwrap())
        );
        assert_eq!(listening_address("starting\n"), None);
    }
}
