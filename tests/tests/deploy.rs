//! The files in `deploy/`: systemd units checked by `systemd-analyze`
//! against the built binaries, the fleet unit, the Butane snippet, the
//! Kubernetes manifests and the container recipe parsed and checked for
//! what the README promises, and the example configs loaded with the real
//! config parsers and compared with every flag each binary has.
//!
//! Every `JR_…` variable a deployment file sets must be one a binary reads,
//! so a renamed option cannot leave a manifest silently ignored.

use clap::CommandFactory;
use jr_tests::procs::binary;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

/// The image every deployment file runs; the Containerfile's usage line
/// builds it under this name.
const IMAGE: &str = "journal-router:0.1.0";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_owned()
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn s(y: &Yaml) -> &str {
    y.as_str()
        .unwrap_or_else(|| panic!("expected a string, found {y:?}"))
}

fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map_or(&[], Vec::as_slice)
}

/// `(section, key, value)` of a systemd unit (continuation lines joined).
fn unit_settings(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        let full = std::mem::take(&mut pending) + line;
        if full.starts_with('[') && full.ends_with(']') {
            section = full[1..full.len() - 1].to_owned();
        } else if let Some((k, v)) = full.split_once('=') {
            out.push((section.clone(), k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

fn values<'a>(settings: &'a [(String, String, String)], section: &str, key: &str) -> Vec<&'a str> {
    settings
        .iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

fn one<'a>(settings: &'a [(String, String, String)], section: &str, key: &str) -> &'a str {
    match values(settings, section, key).as_slice() {
        [v] => v,
        other => panic!("[{section}] {key}: expected one value, found {other:?}"),
    }
}

fn seconds(v: &str) -> u64 {
    v.trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("{v:?} is not a number of seconds"))
}

/// The environment variables a command (and its subcommands) reads.
fn env_names(cmd: &clap::Command) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    for sub in cmd.get_subcommands() {
        out.extend(env_names(sub));
    }
    out
}

fn agent_env() -> BTreeSet<String> {
    env_names(&jr_agent::cli::Cli::command())
}

fn server_env() -> BTreeSet<String> {
    env_names(&jr_server::ServerConfig::command())
}

/// Every `JR_…` name in `text` (assignments, `--env NAME=`, YAML `name:`).
fn jr_names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("JR_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        // `JR_*` in prose names the family, not a variable.
        if end > "JR_".len() {
            out.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    // The deployment files' own variable for the image, not an option.
    out.remove("JR_IMAGE");
    out
}

fn assert_env_known(what: &str, used: &BTreeSet<String>, known: &BTreeSet<String>) {
    let unknown: Vec<&String> = used.difference(known).collect();
    assert!(
        unknown.is_empty(),
        "{what} sets {unknown:?}, which the binary does not read (it reads {known:?})"
    );
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// Copies of the units whose ExecStart points at the freshly built binary.
fn local_units(dir: &Path) -> Vec<PathBuf> {
    ["jr-server", "jr-agent"]
        .into_iter()
        .map(|name| {
            let text = read(&format!("deploy/systemd/{name}.service"));
            let installed = format!("/usr/local/bin/{name}");
            assert!(
                text.contains(&format!("ExecStart={installed} ")),
                "{name}.service starts {installed}"
            );
            let built = binary(name);
            let local = text.replace(&installed, built.to_str().expect("UTF-8 target path"));
            let path = dir.join(format!("{name}.service"));
            std::fs::write(&path, local).expect("write unit copy");
            path
        })
        .collect()
}

fn analyze(args: &[&str], units: &[PathBuf]) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .args(units)
        .output()
        .expect("run systemd-analyze");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

/// systemd-analyze verify works without systemd running as PID 1 (it loads
/// the units in a private manager), so it runs wherever it is installed.
#[test]
fn systemd_units_pass_systemd_analyze_verify_and_security() {
    if which("systemd-analyze").is_none() {
        eprintln!("deploy: skipped: systemd-analyze is not installed on this machine");
        return;
    }
    let dir = tempfile::tempdir().expect("scratch directory");
    let units = local_units(dir.path());
    let (ok, output) = analyze(&["verify", "--man=no"], &units);
    assert!(ok, "systemd-analyze verify failed:\n{output}");
    let complaints: Vec<&str> = output.lines().filter(|l| l.contains("jr-")).collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify warns:\n{output}"
    );

    // The check itself can fail: an unknown setting is reported and a
    // missing binary is an error.
    let broken = dir.path().join("jr-broken.service");
    let text = std::fs::read_to_string(&units[1]).expect("read unit copy");
    std::fs::write(
        &broken,
        text.replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"),
    )
    .expect("write unit");
    let (_, output) = analyze(&["verify", "--man=no"], std::slice::from_ref(&broken));
    assert!(output.contains("Unknown key"), "{output}");
    std::fs::write(
        &broken,
        text.replace(
            binary("jr-agent").to_str().unwrap(),
            "/nonexistent/jr-agent",
        ),
    )
    .expect("write unit");
    let (ok, _) = analyze(&["verify", "--man=no"], &[broken]);
    assert!(!ok, "a unit whose binary is missing fails verification");

    // Hardening, as systemd scores it (0 safe … 100 exposed): both "OK".
    for unit in &units {
        let (ok, output) = analyze(
            &["security", "--offline=yes", "--threshold=20", "--no-pager"],
            std::slice::from_ref(unit),
        );
        assert!(ok, "{} is exposed beyond 2.0:\n{output}", unit.display());
    }
}

#[test]
fn systemd_units_are_hardened_and_drain_on_sigterm() {
    for (name, known_env) in [("jr-server", server_env()), ("jr-agent", agent_env())] {
        let text = read(&format!("deploy/systemd/{name}.service"));
        let u = unit_settings(&text);
        for (key, want) in [
            ("DynamicUser", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("NoNewPrivileges", "yes"),
            ("MemoryDenyWriteExecute", "yes"),
            ("Restart", "on-failure"),
            ("KillSignal", "SIGTERM"),
            ("Type", "exec"),
        ] {
            assert_eq!(one(&u, "Service", key), want, "{name}: {key}");
        }
        assert!(values(&u, "Service", "SystemCallFilter").contains(&"@system-service"));
        assert!(one(&u, "Service", "RestrictAddressFamilies").contains("AF_INET"));
        assert!(
            !values(&u, "Service", "EnvironmentFile").is_empty(),
            "{name}: EnvironmentFile"
        );
        assert!(
            !one(&u, "Service", "StateDirectory").is_empty(),
            "{name}: StateDirectory"
        );
        assert_eq!(one(&u, "Install", "WantedBy"), "multi-user.target");
        assert_env_known(&format!("{name}.service"), &jr_names_in(&text), &known_env);
        // The stop timeout covers the drain deadlines (10 s each step).
        let stop = seconds(one(&u, "Service", "TimeoutStopSec"));
        let drain = if name == "jr-server" { 30 } else { 10 };
        assert!(
            stop > drain,
            "{name}: TimeoutStopSec={stop}s, drains take up to {drain}s"
        );
    }
    let agent = unit_settings(&read("deploy/systemd/jr-agent.service"));
    assert_eq!(
        one(&agent, "Service", "SupplementaryGroups"),
        "systemd-journal"
    );
    assert!(one(&agent, "Service", "Environment").starts_with("JR_STATE_FILE=%S/"));
    let server = unit_settings(&read("deploy/systemd/jr-server.service"));
    assert!(one(&server, "Service", "Environment").starts_with("JR_DB=%S/"));
}

/// Host paths every containerised agent must see, read-only.
const HOST_MOUNTS: [&str; 3] = ["/var/log/journal", "/run/log/journal", "/etc/machine-id"];

fn assert_container_run(what: &str, exec: &str) {
    for path in HOST_MOUNTS {
        assert!(
            exec.contains(&format!("--volume {path}:{path}:ro")),
            "{what}: {path} mounted read-only in {exec}"
        );
    }
    assert!(
        exec.contains("--read-only") && exec.contains("--cap-drop ALL"),
        "{what}: {exec}"
    );
    assert!(
        exec.contains(&format!("{IMAGE} jr-agent")) || exec.contains("${JR_IMAGE} jr-agent"),
        "{what}: {exec}"
    );
}

#[test]
fn fleet_unit_runs_the_agent_container_on_every_machine() {
    let text = read("deploy/fleet/jr-agent.service");
    let u = unit_settings(&text);
    assert_eq!(one(&u, "X-Fleet", "Global"), "true");
    assert_eq!(
        one(&u, "Service", "Environment"),
        format!("JR_IMAGE={IMAGE}")
    );
    assert_container_run("fleet unit", one(&u, "Service", "ExecStart"));
    assert_eq!(one(&u, "Service", "KillSignal"), "SIGTERM");
    assert_eq!(one(&u, "Service", "Restart"), "on-failure");
    assert_env_known("fleet unit", &jr_names_in(&text), &agent_env());
}

#[test]
fn butane_snippet_is_a_fcos_config_with_the_agent_unit() {
    let docs = yaml("deploy/butane/jr-agent.bu");
    assert_eq!(docs.len(), 1);
    let bu = &docs[0];
    assert_eq!(s(&bu["variant"]), "fcos");
    assert_eq!(s(&bu["version"]), "1.5.0");
    let units = list(&bu["systemd"]["units"]);
    let unit = units
        .iter()
        .find(|u| s(&u["name"]) == "jr-agent.service")
        .expect("a jr-agent.service unit");
    assert_eq!(unit["enabled"].as_bool(), Some(true));
    let contents = s(&unit["contents"]);
    let u = unit_settings(contents);
    assert_eq!(
        one(&u, "Service", "Environment"),
        format!("JR_IMAGE={IMAGE}")
    );
    let exec = one(&u, "Service", "ExecStart");
    assert!(exec.starts_with("/usr/bin/podman run"), "{exec}");
    assert_container_run("butane unit", exec);
    let env_file = list(&bu["storage"]["files"])
        .iter()
        .find(|f| s(&f["path"]) == "/etc/journal-router/jr-agent.env")
        .expect("the agent's environment file");
    assert!(exec.contains("--env-file /etc/journal-router/jr-agent.env"));
    let all = format!("{contents}\n{}", s(&env_file["contents"]["inline"]));
    assert_env_known("butane snippet", &jr_names_in(&all), &agent_env());
}

fn env_of(container: &Yaml) -> Vec<(&str, &str)> {
    list(&container["env"])
        .iter()
        .map(|e| (s(&e["name"]), s(&e["value"])))
        .collect()
}

#[test]
fn kubernetes_agent_daemonset_mounts_the_journal_read_only() {
    let docs = yaml("deploy/kubernetes/agent-daemonset.yaml");
    assert_eq!(docs.len(), 1);
    let ds = &docs[0];
    assert_eq!(
        (s(&ds["apiVersion"]), s(&ds["kind"])),
        ("apps/v1", "DaemonSet")
    );
    assert_eq!(s(&ds["metadata"]["namespace"]), "journal-router");
    let pod = &ds["spec"]["template"]["spec"];
    let label = "app.kubernetes.io/name";
    assert_eq!(s(&ds["spec"]["selector"]["matchLabels"][label]), "jr-agent");
    assert_eq!(
        s(&ds["spec"]["template"]["metadata"]["labels"][label]),
        "jr-agent"
    );
    let containers = list(&pod["containers"]);
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(s(&c["image"]), IMAGE);
    assert_eq!(
        list(&c["command"]).iter().map(s).collect::<Vec<_>>(),
        ["jr-agent"]
    );
    for path in HOST_MOUNTS {
        let volume = list(&pod["volumes"])
            .iter()
            .find(|v| v["hostPath"]["path"].as_str() == Some(path))
            .unwrap_or_else(|| panic!("a hostPath volume for {path}"));
        let mount = list(&c["volumeMounts"])
            .iter()
            .find(|m| m["name"] == volume["name"])
            .unwrap_or_else(|| panic!("a mount of {path}"));
        assert_eq!(s(&mount["mountPath"]), path);
        assert_eq!(
            mount["readOnly"].as_bool(),
            Some(true),
            "{path} is mounted read-only"
        );
    }
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );
    for kind in ["cpu", "memory"] {
        assert!(
            !c["resources"]["limits"][kind].is_badvalue(),
            "a {kind} limit"
        );
    }
    assert!(pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(0) > 10);
    let env = env_of(c);
    let names: BTreeSet<String> = env.iter().map(|(n, _)| n.to_string()).collect();
    assert_env_known("agent DaemonSet", &names, &agent_env());
    // The agent ships to the Service that server.yaml defines.
    let server = env
        .iter()
        .find(|(n, _)| *n == "JR_SERVER")
        .expect("JR_SERVER")
        .1;
    assert_eq!(server, "http://jr-server.journal-router.svc:7070");
}

#[test]
fn kubernetes_server_has_deployment_service_and_claim() {
    let docs = yaml("deploy/kubernetes/server.yaml");
    let kinds: Vec<&str> = docs.iter().map(|d| s(&d["kind"])).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "PersistentVolumeClaim",
            "Deployment",
            "Service"
        ]
    );
    let (ns, pvc, deploy, svc) = (&docs[0], &docs[1], &docs[2], &docs[3]);
    assert_eq!(s(&ns["metadata"]["name"]), "journal-router");
    for d in &docs[1..] {
        assert_eq!(s(&d["metadata"]["namespace"]), "journal-router");
    }
    assert_eq!(
        deploy["spec"]["replicas"].as_i64(),
        Some(1),
        "SQLite has one writer"
    );
    assert_eq!(s(&deploy["spec"]["strategy"]["type"]), "Recreate");
    let pod = &deploy["spec"]["template"]["spec"];
    let c = &list(&pod["containers"])[0];
    assert_eq!(s(&c["image"]), IMAGE);
    let ports: Vec<(&str, i64)> = list(&c["ports"])
        .iter()
        .map(|p| (s(&p["name"]), p["containerPort"].as_i64().unwrap_or(0)))
        .collect();
    assert_eq!(ports, [("grpc", 7070), ("metrics", 7071)]);
    let svc_ports: Vec<(i64, &str)> = list(&svc["spec"]["ports"])
        .iter()
        .map(|p| (p["port"].as_i64().unwrap_or(0), s(&p["targetPort"])))
        .collect();
    assert_eq!(svc_ports, [(7070, "grpc"), (7071, "metrics")]);
    assert_eq!(
        svc["spec"]["selector"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(s(&svc["metadata"]["name"]), "jr-server");

    // The database is on the claim.
    assert_eq!(
        list(&pvc["spec"]["accessModes"])
            .iter()
            .map(s)
            .collect::<Vec<_>>(),
        ["ReadWriteOnce"]
    );
    let volume = list(&pod["volumes"])
        .iter()
        .find(|v| v["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"])
        .expect("a volume from the claim");
    let mount = list(&c["volumeMounts"])
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the claim is mounted");
    let env = env_of(c);
    let db = env.iter().find(|(n, _)| *n == "JR_DB").expect("JR_DB").1;
    assert_eq!(
        Path::new(db).parent(),
        Some(Path::new(s(&mount["mountPath"])))
    );
    let listen = env
        .iter()
        .find(|(n, _)| *n == "JR_LISTEN")
        .expect("JR_LISTEN")
        .1;
    assert_eq!(listen, "0.0.0.0:7070");
    let metrics = env
        .iter()
        .find(|(n, _)| *n == "JR_METRICS_LISTEN")
        .expect("JR_METRICS_LISTEN")
        .1;
    assert_eq!(metrics, "0.0.0.0:7071");
    let names: BTreeSet<String> = env.iter().map(|(n, _)| n.to_string()).collect();
    assert_env_known("server Deployment", &names, &server_env());
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
}

#[test]
fn containerfile_builds_in_one_stage_and_runs_in_a_slim_one() {
    let text = read("deploy/container/Containerfile");
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(
        froms[0].contains("rust:") && froms[0].ends_with(" AS builder"),
        "{}",
        froms[0]
    );
    assert!(
        froms[1].contains("debian:") && froms[1].contains("-slim"),
        "{}",
        froms[1]
    );
    for bin in ["jr-server", "jr-agent", "jrctl"] {
        assert!(text.contains(&format!("-p {bin}")), "builds {bin}");
        assert!(
            text.contains(&format!("target/release/{bin}")),
            "copies {bin}"
        );
    }
    assert!(text.contains("COPY --from=builder"));
    // journalctl, for the agent's fallback reader.
    assert!(text.contains("install -y --no-install-recommends systemd"));
    let user = text
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("0") && !user.starts_with("root"),
        "runs as {user}"
    );
    assert!(text.contains("STOPSIGNAL SIGTERM"));
    assert!(text.contains("EXPOSE 7070 7071 7072"));
    assert!(
        text.contains(&format!("-t {IMAGE} .")),
        "the usage line tags {IMAGE}"
    );
    assert_env_known("Containerfile", &jr_names_in(&text), &server_env());
    let ignore = read(".dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "target/"),
        "target/ stays out of the build context"
    );
}

/// One option line of an example config: active (`key = value`) or
/// commented out (`#key = value`; prose comments have a space after `#`).
#[derive(Debug)]
struct OptionLine {
    /// 0-based line number in the file.
    index: usize,
    /// `key`, or `sub.key` inside a subcommand table.
    key: String,
    commented: bool,
    /// The line without its `#`.
    text: String,
}

/// The option lines of an example; `[[…]]` tables (such as the server's
/// routes) hold no flags and are left out.
fn option_lines(text: &str) -> Vec<OptionLine> {
    let mut out = Vec::new();
    let mut section = Some(String::new());
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let (commented, body) = match line.strip_prefix('#') {
            Some(rest) if rest.starts_with([' ', '#']) || rest.is_empty() => continue,
            Some(rest) => (true, rest),
            None if line.is_empty() => continue,
            None => (false, line),
        };
        if body.starts_with("[[") {
            section = None;
        } else if let Some(name) = body.strip_prefix('[').and_then(|b| b.strip_suffix(']')) {
            section = Some(format!("{name}."));
        } else if let (Some(prefix), Some((key, _))) = (&section, body.split_once('=')) {
            out.push(OptionLine {
                index,
                key: format!("{prefix}{}", key.trim()),
                commented,
                text: body.to_owned(),
            });
        }
    }
    out
}

/// The three binaries: example file, command line, and a loader that
/// reads a config file the way the binary does.
type Loader = fn(&Path) -> Result<(), String>;

fn binaries() -> [(&'static str, clap::Command, Loader); 3] {
    fn arg(path: &Path) -> String {
        path.to_str().expect("UTF-8 path").to_owned()
    }
    [
        ("jr-server", jr_server::ServerConfig::command(), |p| {
            jr_server::ServerConfig::load_from(["jr-server", "--config", &arg(p)])
                .map(drop)
                .map_err(|e| e.to_string())
        }),
        ("jr-agent", jr_agent::cli::Cli::command(), |p| {
            jr_agent::cli::load_from(["jr-agent", "--config", &arg(p)])
                .map(drop)
                .map_err(|e| e.to_string())
        }),
        ("jrctl", jrctl::args::Cli::command(), |p| {
            jrctl::args::load_from(["jrctl", "--config", &arg(p), "logs"])
                .map(drop)
                .map_err(|e| e.to_string())
        }),
    ]
}

fn example(name: &str) -> (PathBuf, String) {
    let rel = format!("deploy/config/{name}.toml");
    (repo().join(&rel), read(&rel))
}

#[test]
fn example_configs_load_with_the_real_parsers() {
    for (name, _, load) in binaries() {
        let (path, _) = example(name);
        load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn example_configs_name_every_option_and_no_other() {
    let mut problems = Vec::new();
    for (name, cmd, _) in binaries() {
        let (_, text) = example(name);
        // In the order the flags are defined, which is the order to show them in.
        let flags = jr_config::keys(&cmd);
        let shown: BTreeSet<String> = option_lines(&text).into_iter().map(|l| l.key).collect();
        let missing: Vec<&String> = flags.iter().filter(|k| !shown.contains(*k)).collect();
        let stale: Vec<&String> = shown.iter().filter(|k| !flags.contains(k)).collect();
        if !missing.is_empty() || !stale.is_empty() {
            let suggestions: Vec<String> = missing.iter().map(|k| suggest(&cmd, k)).collect();
            problems.push(format!(
                "deploy/config/{name}.toml: options missing {missing:?}, keys that are no option \
                 {stale:?}; lines to add (in the table named before the dot):\n\n{}",
                suggestions.join("\n")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The flag a key names (`logs.output` is `--output` of `jrctl logs`).
fn arg_of<'a>(cmd: &'a clap::Command, key: &str) -> Option<&'a clap::Arg> {
    match key.split_once('.') {
        Some((sub, rest)) => arg_of(cmd.find_subcommand(sub)?, rest),
        None => cmd.get_arguments().find(|a| a.get_long() == Some(key)),
    }
}

fn flag_values(v: &toml::Value) -> Vec<String> {
    match v {
        toml::Value::String(s) => vec![s.clone()],
        toml::Value::Array(a) => a.iter().flat_map(flag_values).collect(),
        other => vec![other.to_string()],
    }
}

/// Each commented option, uncommented alone, is accepted by the binary's
/// parser, and where the flag has a default the example shows exactly it.
#[test]
fn every_commented_option_is_valid_and_shows_the_default() {
    let dir = tempfile::tempdir().expect("scratch directory");
    let mut problems = Vec::new();
    for (name, cmd, load) in binaries() {
        let (_, text) = example(name);
        let lines: Vec<&str> = text.lines().collect();
        for opt in option_lines(&text).into_iter().filter(|o| o.commented) {
            let mut edited = lines.clone();
            edited[opt.index] = &opt.text;
            let path = dir.path().join(format!("{name}.toml"));
            std::fs::write(&path, edited.join("\n")).expect("write config");
            if let Err(e) = load(&path) {
                problems.push(format!("{name}: `{}` is refused: {e}", opt.text));
                continue;
            }
            let Some(arg) = arg_of(&cmd, &opt.key) else {
                continue;
            };
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let shown: toml::Table = toml::from_str(&opt.text).expect("an option line is TOML");
            let value = shown.values().next().map(flag_values).unwrap_or_default();
            let is_switch = matches!(arg.get_action(), clap::ArgAction::SetTrue);
            if (!defaults.is_empty() || is_switch)
                && value != defaults
                && !(is_switch && value == ["false"])
            {
                problems.push(format!(
                    "{name}: `{}` is not the default {defaults:?}",
                    opt.text
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A commented example line for `key`, from its flag: the help text, the
/// environment variable and the default (or the value name to fill in).
fn suggest(cmd: &clap::Command, key: &str) -> String {
    let Some(arg) = arg_of(cmd, key) else {
        return format!("# {key}: no such flag\n");
    };
    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    let mut out = format!("# {key}: {help}\n");
    if let Some(env) = arg.get_env() {
        out += &format!(
            "# (env {}, flag --{})\n",
            env.to_string_lossy(),
            arg.get_long().unwrap_or(key)
        );
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| toml_literal(&v.to_string_lossy()))
        .collect();
    let name = key.rsplit('.').next().unwrap_or(key);
    let value = match (defaults.as_slice(), arg.get_action()) {
        (_, clap::ArgAction::SetTrue) => "false".to_owned(),
        ([one], clap::ArgAction::Append) => format!("[{one}]"),
        ([one], _) => one.clone(),
        ([], clap::ArgAction::Append) => "[]".to_owned(),
        (many, _) if !many.is_empty() => format!("[{}]", many.join(", ")),
        _ => format!(
            "\"<{}>\"",
            arg.get_value_names()
                .and_then(|n| n.first())
                .map_or_else(|| "VALUE".to_owned(), |n| n.to_string())
        ),
    };
    out + &format!("#{name} = {value}\n")
}

fn toml_literal(v: &str) -> String {
    if v.parse::<i64>().is_ok() || v == "true" || v == "false" {
        v.to_owned()
    } else {
        toml::Value::String(v.to_owned()).to_string()
    }
}

/// The commented `[[routes]]` example of the server config, uncommented,
/// is a route the server accepts.
#[test]
fn server_example_route_is_valid() {
    let (_, text) = example("jr-server");
    let start = text.find("#[[routes]]").expect("a [[routes]] example");
    let route: Vec<&str> = text[start..]
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| !l.starts_with([' ', '#']) && !l.is_empty())
        .collect();
    assert!(route.len() >= 3, "{route:?}");
    let dir = tempfile::tempdir().expect("scratch directory");
    let path = dir.path().join("jr-server.toml");
    std::fs::write(&path, route.join("\n")).expect("write config");
    let config =
        jr_server::ServerConfig::load_from(["jr-server", "--config", path.to_str().unwrap()])
            .unwrap_or_else(|e| panic!("{route:?}: {e}"));
    assert_eq!(config.routes.0.len(), 1);
}

/// The real binaries read `--config`: defaults < file < environment <
/// flags (shown by the server jrctl names when it cannot connect), and a
/// bad key stops the program with file, line and key.
#[test]
fn binaries_merge_file_environment_and_flags_in_that_order() {
    let dir = tempfile::tempdir().expect("scratch directory");
    let file = dir.path().join("jrctl.toml");
    // Nothing listens on these loopback ports, so each run names its server.
    std::fs::write(&file, "server = \"http://127.0.0.1:1\"\n").expect("write config");
    let run = |env: Option<&str>, flag: Option<&str>| {
        let mut cmd = Command::new(binary("jrctl"));
        cmd.env_remove("JR_SERVER").env_remove("JR_CONFIG");
        cmd.arg("--config").arg(&file);
        if let Some(url) = env {
            cmd.env("JR_SERVER", url);
        }
        if let Some(url) = flag {
            cmd.args(["--server", url]);
        }
        let out = cmd.arg("stats").output().expect("run jrctl");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(None, None).contains("http://127.0.0.1:1"));
    assert!(run(Some("http://127.0.0.1:2"), None).contains("http://127.0.0.1:2"));
    assert!(
        run(Some("http://127.0.0.1:2"), Some("http://127.0.0.1:3")).contains("http://127.0.0.1:3")
    );

    for (name, text) in [
        (
            "jr-agent",
            "server = \"http://127.0.0.1:1\"\nlinger = \"soon\"\n",
        ),
        ("jrctl", "[logs]\noutput = \"xml\"\n"),
    ] {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write config");
        let out = Command::new(binary(name))
            .env_remove("JR_CONFIG")
            .arg("--config")
            .arg(&path)
            .args(if name == "jrctl" {
                &["logs"][..]
            } else {
                &[][..]
            })
            .output()
            .expect("run binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        let key = if name == "jrctl" {
            "logs.output"
        } else {
            "linger"
        };
        assert!(
            stderr.contains(&path.display().to_string())
                && stderr.contains("line 2")
                && stderr.contains(key),
            "{name}: {stderr}"
        );
    }
}
