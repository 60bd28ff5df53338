//! Bad route configuration is refused with the file, line and key; a
//! reload (SIGHUP) with a bad file keeps the running routes, a good one
//! swaps routes without touching unchanged ones.

mod common;
mod forward_support;

use common::*;
use forward_support::*;
use jr_tests::procs::{processes_mentioning, Server};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::Command;

fn refused(toml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jr-server"))
        .args([
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--db")
        .arg(dir.path().join("j.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "jr-server must refuse {toml}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains(path.to_str().unwrap()),
        "names the file: {err}"
    );
    err
}

#[test]
fn bad_routes_are_refused_at_start_up() {
    let e = refused(&format!(
        "[[routes]]\nname = \"a\"\ndestination = {{ token = \"{TOKEN_A}\" }}\nfliter = {{}}\n"
    ));
    assert!(e.contains("line 4") && e.contains("fliter"), "{e}");
    let e = refused("[[routes]]\nname = \"a\"\ndestination = { token = \"my-token\" }\n");
    assert!(
        e.contains("line 3") && e.contains("token") && e.contains("UUID"),
        "{e}"
    );
    let e = refused(&format!(
        "[[routes]]\nname = \"a\"\ndestination = {{ token = \"{TOKEN_A}\" }}\n\ntemplate = \"{{host}} {{pid}}\"\n"
    ));
    assert!(e.contains("line 5") && e.contains("{pid}"), "{e}");
    let e = refused(&format!(
        "[[routes]]\nname = \"a\"\ndestination = {{ token = \"{TOKEN_A}\" }}\nfilter = {{ message = \"(\" }}\n"
    ));
    assert!(e.contains("line 4") && e.contains("regex"), "{e}");
}

fn hup(needle: &str) {
    let procs: Vec<_> = processes_mentioning(needle)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("jr-server"))
        .collect();
    assert_eq!(procs.len(), 1, "{procs:?}");
    kill(Pid::from_raw(procs[0].0 as i32), Signal::SIGHUP).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_routes_on_a_bad_file_and_swaps_on_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let fa = Fake::plain().await;
    let fb = Fake::plain().await;
    let path = dir.path().join("server.toml");
    let a = route("a", TOKEN_A, fa.addr, None, "");
    std::fs::write(&path, &a).unwrap();
    let mut server = Server::start_with(dir.path(), &["--config", path.to_str().unwrap()]).await;
    eventually("route a", 500, async || {
        list(server.addr()).await.len() == 1
    })
    .await;
    let m = machine(4);
    let mut agent = Agent::connect(server.addr()).await;
    let mut prev = agent.hello(&m).await.cursor;
    prev = agent.batch(1, &prev, entries(0..10)).await;
    agent.ack().await;
    fa.wait_for(10).await;

    // A bad file: logged, and route a goes on.
    std::fs::write(
        &path,
        format!("{a}\n[[routes]]\nname = \"b\"\ndestination = {{ token = \"x\" }}\n"),
    )
    .unwrap();
    hup(path.to_str().unwrap());
    eventually("reload error logged", 500, async || {
        server.log().contains("config reload failed")
    })
    .await;
    assert!(server.log().contains("line 8"), "{}", server.log());
    prev = agent.batch(2, &prev, entries(10..20)).await;
    agent.ack().await;
    fa.wait_for(20).await;
    assert_eq!(list(server.addr()).await.len(), 1);

    // A good file adding b (and a route whose host does not resolve): a
    // keeps its connection.
    let unresolvable = "[[routes]]\nname = \"nowhere\"\ndestination = { token = \"cccccccc-3333-4333-8333-cccccccccccc\", endpoint = \"no-such-host.invalid\" }\n";
    std::fs::write(
        &path,
        format!(
            "{a}{}{unresolvable}",
            route(
                "b",
                TOKEN_B,
                fb.addr,
                None,
                "start = \"1970-01-01T00:00:00Z\""
            )
        ),
    )
    .unwrap();
    hup(path.to_str().unwrap());
    eventually("routes reloaded", 500, async || {
        list(server.addr()).await.len() == 3
    })
    .await;
    // Reported at reload, before the route has anything to send.
    eventually("unresolvable host logged at reload", 1000, async || {
        server.log().contains("route endpoint does not resolve")
    })
    .await;
    agent.batch(3, &prev, entries(20..30)).await;
    agent.ack().await;
    fa.wait_for(30).await;
    fb.wait_for(30).await;
    assert_eq!(numbers(&fa.lines(), TOKEN_A), (0..30).collect::<Vec<_>>());
    assert_eq!(numbers(&fb.lines(), TOKEN_B), (0..30).collect::<Vec<_>>());
    assert_eq!(
        fa.connections(),
        1,
        "the unchanged route kept its connection"
    );
    eventually("unresolvable host reported", 1000, async || {
        status(server.addr(), "nowhere")
            .await
            .last_error
            .contains("no-such-host.invalid")
    })
    .await;
    server.stop().await;
}
