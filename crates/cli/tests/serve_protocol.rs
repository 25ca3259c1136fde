//! `bunker serve` against real programs: a round trip for every operation, as root and
//! rootless; authorization of a second uid; hostile clients refused while another client's run
//! goes on; a disconnect, SIGTERM and SIGKILL, each checked from the host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use common::serve::{
    assert_all_end_after_sigkill, assert_no_cgroups_of, descendants, eventually, pid_alive, spec,
    stdout_of, Client, Daemon, DaemonSpec,
};
use serde_json::{json, Value};

/// The daemon for one mode: as root without a config; rootless (uid 65534) with a config that
/// lets this test's uid (root) in, under the `default` ceiling.
fn daemon_for(mode: &str) -> Daemon {
    match mode {
        "root" => Daemon::start(),
        _ => Daemon::start_with(DaemonSpec {
            config: Some(r#"{"grants": [{"uid": 0, "ceiling": "default"}]}"#),
            as_nobody: true,
            ..Default::default()
        }),
    }
}

fn modes() -> Vec<&'static str> {
    if common::is_root() {
        vec!["root", "rootless"]
    } else {
        vec!["root"]
    }
}

fn result_of(reply: &Value) -> &Value {
    assert!(reply.get("ok").is_some(), "not ok: {reply}");
    &reply["ok"]
}

/// The v1 freezer state of the sandbox groups this daemon made (`bunker-<daemon pid>-*`).
fn freezer_states(daemon_pid: i32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup/freezer") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("bunker-{daemon_pid}-"))
        })
        .map(|e| {
            std::fs::read_to_string(e.path().join("freezer.state"))
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect()
}

#[test]
fn every_operation_round_trips() {
    if !common::is_root() {
        return common::skip("the rootless daemon is started through setpriv, which needs root");
    }
    for mode in modes() {
        let daemon = daemon_for(mode);
        let mut c = daemon.client();

        // run, captured.
        let reply = c.call(json!({"id": 1, "op": "run",
            "spec": spec(&["python3", "-c", "print(6*7)"])}));
        let result = result_of(&reply);
        assert_eq!(result["status"], "ok", "{mode}: {reply}");
        assert_eq!(result["stdout"]["data"]["utf8"], "42\n", "{mode}: {reply}");

        // run, output as events before the reply.
        let mut events_spec = spec(&["sh", "-c", "echo out; echo err >&2"]);
        events_spec["options"] = json!({"output": "events"});
        let reply = c.call(json!({"id": 2, "op": "run", "spec": events_spec}));
        assert_eq!(result_of(&reply)["status"], "ok", "{mode}: {reply}");
        assert!(result_of(&reply)["stdout"].get("data").is_none(), "{reply}");
        let events: Vec<Value> = c.events.drain(..).collect();
        assert!(events.iter().all(|e| e["id"] == 2), "{events:?}");
        assert_eq!(stdout_of(&events), "out\n", "{mode}: {events:?}");
        assert!(
            events
                .iter()
                .any(|e| e["event"]["event"] == "stderr" && e["event"]["data"]["utf8"] == "err\n"),
            "{mode}: {events:?}"
        );

        // run with the client's own descriptors: stdin, stdout, stderr.
        let (stdin_r, mut stdin_w) = std::io::pipe().unwrap();
        let (mut out_r, out_w) = std::io::pipe().unwrap();
        let (mut err_r, err_w) = std::io::pipe().unwrap();
        stdin_w.write_all(b"through fds\n").unwrap();
        drop(stdin_w);
        let mut fds_spec = spec(&["sh", "-c", "cat; echo e >&2"]);
        fds_spec["stdin"] = json!("fd");
        fds_spec["options"] = json!({"output": "fds"});
        c.send_with_fds(
            &json!({"id": 3, "op": "run", "spec": fds_spec}),
            &[&stdin_r, &out_w, &err_w],
        );
        drop((stdin_r, out_w, err_w));
        let reply = c.reply(3);
        assert_eq!(result_of(&reply)["status"], "ok", "{mode}: {reply}");
        let (mut out, mut err) = (String::new(), String::new());
        out_r.read_to_string(&mut out).unwrap();
        err_r.read_to_string(&mut err).unwrap();
        assert_eq!(
            (out.as_str(), err.as_str()),
            ("through fds\n", "e\n"),
            "{mode}"
        );

        // start with streamed stdin; stdin, close_stdin, wait; its events end with exit.
        let mut cat = spec(&["cat"]);
        cat["stdin"] = json!("stream");
        cat["options"] = json!({"output": "events"});
        let reply = c.call(json!({"id": 4, "op": "start", "spec": cat}));
        let sandbox = result_of(&reply)["sandbox"].as_str().unwrap().to_string();
        let reply = c.call(json!({"id": 5, "op": "stdin", "sandbox": sandbox,
            "data": {"utf8": "hello\n"}}));
        assert_eq!(reply["ok"], json!({}), "{mode}: {reply}");
        let reply = c.call(json!({"id": 6, "op": "close_stdin", "sandbox": sandbox}));
        assert_eq!(reply["ok"], json!({}), "{mode}: {reply}");
        let reply = c.call(json!({"id": 7, "op": "wait", "sandbox": sandbox}));
        assert_eq!(result_of(&reply)["status"], "ok", "{mode}: {reply}");
        let events = c.events_until_end(&sandbox);
        assert_eq!(stdout_of(&events), "hello\n", "{mode}: {events:?}");
        assert_eq!(
            events.last().unwrap()["event"]["event"],
            "exit",
            "{events:?}"
        );

        // start, pause, resume, kill.
        let mut ticker = spec(&["sh", "-c", "while :; do echo tick; sleep 0.02; done"]);
        ticker["options"] = json!({"output": "events"});
        let reply = c.call(json!({"id": 8, "op": "start", "spec": ticker}));
        let ticking = result_of(&reply)["sandbox"].as_str().unwrap().to_string();
        // Up and ticking before it is paused.
        while !c
            .events
            .iter()
            .any(|e| e["sandbox"] == ticking.as_str() && e["event"]["event"] == "stdout")
        {
            let frame = c.recv().unwrap();
            c.events.push(frame);
        }
        let reply = c.call(json!({"id": 9, "op": "pause", "sandbox": ticking}));
        if mode == "root" {
            assert_eq!(reply["ok"], json!({}), "{reply}");
            assert_eq!(freezer_states(daemon.pid()), ["FROZEN"], "{reply}");
            let reply = c.call(json!({"id": 10, "op": "resume", "sandbox": ticking}));
            assert_eq!(reply["ok"], json!({}), "{reply}");
            assert_eq!(freezer_states(daemon.pid()), ["THAWED"]);
        } else {
            // The v1 freezer hierarchy belongs to root: a rootless daemon cannot pause, and
            // says so with a stable code.
            assert_eq!(reply["error"]["code"], "unenforceable", "{reply}");
        }
        let reply = c.call(json!({"id": 11, "op": "kill", "sandbox": ticking}));
        assert_eq!(reply["ok"], json!({}), "{mode}: {reply}");
        let reply = c.call(json!({"id": 12, "op": "wait", "sandbox": ticking}));
        assert_eq!(
            result_of(&reply)["error_code"],
            "cancelled",
            "{mode}: {reply}"
        );
        let events = c.events_until_end(&ticking);
        assert!(stdout_of(&events).starts_with("tick\n"), "{events:?}");
        assert!(
            freezer_states(daemon.pid()).is_empty(),
            "freezer group left"
        );

        // A paused sandbox's wall-clock timeout keeps running: at it, it is thawed and killed.
        if mode == "root" {
            let mut short = spec(&["sleep", "30"]);
            short["options"] = json!({"timeout_ms": 700});
            let reply = c.call(json!({"id": 30, "op": "start", "spec": short}));
            let paused = result_of(&reply)["sandbox"].as_str().unwrap().to_string();
            let reply = c.call(json!({"id": 31, "op": "pause", "sandbox": paused}));
            assert_eq!(reply["ok"], json!({}), "{reply}");
            let reply = c.call(json!({"id": 32, "op": "wait", "sandbox": paused}));
            assert_eq!(result_of(&reply)["error_code"], "limit_timeout", "{reply}");
            c.events_until_end(&paused);
        }

        // cancel a run in flight by its request id.
        c.send(&json!({"id": 13, "op": "run", "spec": spec(&["sleep", "30"])}));
        assert!(eventually(Duration::from_secs(5), || {
            let stats = Client::connect(&daemon.socket).call(json!({"id": 1, "op": "stats"}));
            stats["ok"]["live"] == 1
        }));
        let reply = c.call(json!({"id": 14, "op": "cancel", "request": 13}));
        assert_eq!(reply["ok"], json!({}), "{mode}: {reply}");
        // Killed while running: the result says cancelled; killed before its sandbox was up:
        // a cancelled error.
        let reply = c.reply(13);
        let code = reply["ok"]["error_code"]
            .as_str()
            .or(reply["error"]["code"].as_str());
        assert_eq!(code, Some("cancelled"), "{reply}");

        // stats and health.
        let reply = c.call(json!({"id": 15, "op": "stats"}));
        let stats = result_of(&reply);
        assert_eq!(stats["live"], 0, "{reply}");
        assert!(stats["totals"]["ok"].as_u64().unwrap() >= 4, "{reply}");
        let reply = c.call(json!({"id": 16, "op": "health"}));
        assert_eq!(result_of(&reply)["status"], "serving", "{reply}");

        // Errors keep the connection: an unknown sandbox, an empty argv, a bad policy name.
        let reply = c.call(json!({"id": 17, "op": "kill", "sandbox": "s-999"}));
        assert_eq!(reply["error"]["code"], "not_found", "{reply}");
        let reply = c.call(json!({"id": 18, "op": "run", "spec": spec(&[])}));
        assert_eq!(reply["error"]["code"], "request_invalid", "{reply}");
        let reply = c.call(json!({"id": 19, "op": "run",
            "spec": {"policy": {"name": "no-such"}, "argv": ["true"]}}));
        assert_eq!(reply["error"]["code"], "not_found", "{reply}");
        let reply = c.call(json!({"id": 20, "op": "health"}));
        assert!(reply.get("ok").is_some(), "{reply}");
        let log = daemon.log_text();
        assert!(
            log.contains("op=\"run\"") && log.contains("outcome=\"cancelled\""),
            "{log}"
        );
    }
}

/// Runs the python client as uid 65534 against `socket` with these requests; its frames.
fn client_as_nobody(socket: &std::path::Path, requests: &[Value]) -> Vec<Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/serve_client.py"
    );
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["/usr/bin/python3", script])
        .arg(socket)
        .args(requests.iter().map(|r| r.to_string()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_second_uid_is_held_to_its_ceiling() {
    if !common::is_root() {
        return common::skip("a second uid needs root (setpriv)");
    }
    // The socket's group lets uid 65534 reach it (mode 0660); the grants decide the rest.
    let daemon = Daemon::start_with(DaemonSpec {
        config: Some(
            r#"{"socket_group": "65534", "grants": [{"uid": 65534, "ceiling": "default"}]}"#,
        ),
        ..Default::default()
    });
    let wider = json!({"id": 1, "op": "run", "spec": {
        "policy": {"inline": {"extends": ["default"], "allow": {"net": ["example.com:443"]}}},
        "argv": ["echo", "escaped"]}});
    let within = json!({"id": 2, "op": "run", "spec": spec(&["echo", "within"])});
    let frames = client_as_nobody(&daemon.socket, &[wider, within]);
    let reply = |id: u64| frames.iter().find(|f| f["id"] == id).unwrap().clone();
    let refused = reply(1);
    assert_eq!(
        refused["error"]["code"], "policy_not_permitted",
        "{refused}"
    );
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("example.com") && message.contains("uid 65534"),
        "{message}"
    );
    // The control: the ceiling itself is granted.
    let granted = reply(2);
    assert_eq!(
        granted["ok"]["stdout"]["data"]["utf8"], "within\n",
        "{granted}"
    );

    // With no grant for it, another uid may not even connect; the daemon's own may.
    let daemon = Daemon::start_with(DaemonSpec {
        config: Some(r#"{"socket_group": "65534", "grants": []}"#),
        ..Default::default()
    });
    let frames = client_as_nobody(&daemon.socket, &[json!({"id": 1, "op": "health"})]);
    assert_eq!(
        frames[0]["error"]["code"], "policy_not_permitted",
        "{frames:?}"
    );
    assert!(
        frames.get(1).is_none_or(Value::is_null),
        "not closed: {frames:?}"
    );
    let reply = daemon.client().call(json!({"id": 1, "op": "health"}));
    assert_eq!(reply["ok"]["status"], "serving", "{reply}");
}

/// Reads until the server closes; whether it did (rather than timing out).
fn closed_by_server(c: &mut Client) -> bool {
    c.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    c.stream.read_to_end(&mut rest).is_ok()
}

#[test]
fn hostile_clients_are_refused_while_another_client_runs() {
    let daemon = Daemon::start_with(DaemonSpec {
        config: Some(r#"{"max_frame": 4096, "frame_timeout_ms": 300}"#),
        ..Default::default()
    });
    let mut steady = daemon.client();
    steady.send(&json!({"id": 1, "op": "run",
        "spec": spec(&["sh", "-c", "sleep 1; echo survived"])}));

    // Malformed JSON in a well-formed frame.
    let mut malformed = daemon.client();
    malformed.stream.write_all(&[0, 0, 0, 7]).unwrap();
    malformed.stream.write_all(b"{\"id\":1").unwrap();
    let reply = malformed.recv().unwrap();
    assert_eq!(reply["error"]["code"], "protocol_error", "{reply}");
    assert!(closed_by_server(&mut malformed));

    // A length prefix beyond max_frame: refused from the prefix alone.
    let mut oversized = daemon.client();
    oversized
        .stream
        .write_all(&(1u32 << 30).to_be_bytes())
        .unwrap();
    let reply = oversized.recv().unwrap();
    assert_eq!(reply["error"]["code"], "protocol_error", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds"),
        "{reply}"
    );
    assert!(closed_by_server(&mut oversized));

    // Slowloris: a frame begun and never finished.
    let mut slow = daemon.client();
    slow.stream.write_all(&[0, 0]).unwrap();
    let reply = slow.recv().unwrap();
    assert_eq!(reply["error"]["code"], "protocol_error", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not complete"),
        "{reply}"
    );
    assert!(closed_by_server(&mut slow));

    // A handshake with a version the server does not speak.
    let mut future = Client::raw(&daemon.socket);
    future.send(&json!({"op": "hello", "version": 99}));
    let reply = future.recv().unwrap();
    assert_eq!(reply["error"]["code"], "protocol_error", "{reply}");
    assert!(closed_by_server(&mut future));

    // Meanwhile the well-behaved client's run went on, and new clients are served.
    let reply = steady.reply(1);
    assert_eq!(
        reply["ok"]["stdout"]["data"]["utf8"], "survived\n",
        "{reply}"
    );
    let reply = daemon
        .client()
        .call(json!({"id": 1, "op": "run", "spec": spec(&["echo", "next"])}));
    assert_eq!(reply["ok"]["stdout"]["data"]["utf8"], "next\n", "{reply}");
}

#[test]
fn a_disconnect_kills_the_clients_sandboxes() {
    if !common::is_root() {
        return common::skip("the rootless daemon is started through setpriv, which needs root");
    }
    for mode in modes() {
        let daemon = daemon_for(mode);
        // The daemon's own children before any sandbox: its spawner.
        let own = descendants(daemon.pid());
        let mut c = daemon.client();
        let reply = c.call(json!({"id": 1, "op": "start", "spec": spec(&["sleep", "30.789"])}));
        assert!(reply.get("ok").is_some(), "{mode}: {reply}");
        let mut sandbox = Vec::new();
        // Init and the program.
        assert!(
            eventually(Duration::from_secs(5), || {
                sandbox = descendants(daemon.pid());
                sandbox.retain(|p| !own.contains(p));
                sandbox.len() >= 2
            }),
            "{mode}: {sandbox:?}"
        );
        drop(c);
        let gone_at = Instant::now();
        // Well under the 5 s a closing connection gives its tasks before aborting them.
        let gone = eventually(Duration::from_secs(2), || {
            sandbox.iter().all(|p| !pid_alive(*p))
        });
        eprintln!(
            "{mode}: sandbox gone {:?} after the disconnect",
            gone_at.elapsed()
        );
        assert!(
            gone,
            "{mode}: still alive: {:?}",
            sandbox
                .iter()
                .filter(|p| pid_alive(**p))
                .collect::<Vec<_>>()
        );
        assert!(common::alive_with("30.789").is_empty(), "{mode}");
        // The control: the daemon itself is still serving.
        let reply = daemon.client().call(json!({"id": 1, "op": "health"}));
        assert_eq!(reply["ok"]["status"], "serving", "{mode}: {reply}");
    }
}

#[test]
fn busy_when_every_slot_and_queue_place_is_taken() {
    let daemon = Daemon::start_with(DaemonSpec {
        config: Some(r#"{"max_sandboxes": 1, "max_queue": 1}"#),
        ..Default::default()
    });
    let mut c = daemon.client();
    let reply = c.call(json!({"id": 1, "op": "start", "spec": spec(&["sleep", "30"])}));
    let sandbox = reply["ok"]["sandbox"].as_str().unwrap().to_string();
    c.send(&json!({"id": 2, "op": "run", "spec": spec(&["echo", "queued"])}));
    assert!(eventually(Duration::from_secs(5), || {
        daemon.client().call(json!({"id": 1, "op": "stats"}))["ok"]["queued"] == 1
    }));
    let reply = c.call(json!({"id": 3, "op": "run", "spec": spec(&["echo", "third"])}));
    assert_eq!(reply["error"]["code"], "busy", "{reply}");
    // Freeing the slot lets the queued run through.
    let reply = c.call(json!({"id": 4, "op": "kill", "sandbox": sandbox}));
    assert_eq!(reply["ok"], json!({}), "{reply}");
    let reply = c.reply(2);
    assert_eq!(reply["ok"]["stdout"]["data"]["utf8"], "queued\n", "{reply}");
    let stats = c.call(json!({"id": 5, "op": "stats"}));
    assert_eq!(stats["ok"]["refused_busy"], 1, "{stats}");
}

#[test]
fn sigterm_lets_running_sandboxes_finish_then_exits_zero() {
    let mut daemon = Daemon::start();
    let mut c = daemon.client();
    c.send(&json!({"id": 1, "op": "run",
        "spec": spec(&["sh", "-c", "sleep 0.5; echo finished"])}));
    assert!(eventually(Duration::from_secs(5), || {
        daemon.client().call(json!({"id": 1, "op": "stats"}))["ok"]["live"] == 1
    }));
    daemon.signal("TERM");
    let mut probe = 100;
    assert!(eventually(Duration::from_secs(5), || {
        probe += 1;
        c.call(json!({"id": probe, "op": "health"}))["ok"]["status"] == "draining"
    }));
    let reply = c.call(json!({"id": 2, "op": "run", "spec": spec(&["echo", "late"])}));
    assert_eq!(reply["error"]["code"], "busy", "{reply}");
    let reply = c.reply(1);
    assert_eq!(
        reply["ok"]["stdout"]["data"]["utf8"], "finished\n",
        "{reply}"
    );
    assert_eq!(daemon.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!daemon.socket.exists(), "the socket is removed");
}

#[test]
fn a_live_socket_is_refused_and_a_stale_one_replaced_after_sigkill() {
    if !common::is_root() {
        return common::skip("the cgroups a killed daemon leaves are root's");
    }
    let mut daemon = Daemon::start();
    let second = Command::new(common::bunker_bin())
        .arg("serve")
        .arg("--socket")
        .arg(&daemon.socket)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let message = String::from_utf8_lossy(&second.stderr);
    assert!(message.contains("another daemon is serving"), "{message}");

    let own = descendants(daemon.pid());
    let mut c = daemon.client();
    let reply = c.call(json!({"id": 1, "op": "start", "spec": spec(&["sleep", "30.654"])}));
    assert!(reply.get("ok").is_some(), "{reply}");
    let mut sandbox = Vec::new();
    assert!(
        eventually(Duration::from_secs(5), || {
            sandbox = descendants(daemon.pid());
            sandbox.retain(|p| !own.contains(p));
            sandbox.len() >= 2
        }),
        "{sandbox:?}"
    );
    // The daemon's spawner, too, dies with it.
    sandbox.extend(&own);
    let daemon_pid = daemon.pid();
    daemon.sigkill();
    assert_all_end_after_sigkill(&sandbox);
    daemon.restart();
    // The restarted daemon replaced the stale socket, serves, and removed the killed
    // sandbox's cgroups.
    let reply = daemon.client().call(json!({"id": 1, "op": "health"}));
    assert_eq!(reply["ok"]["status"], "serving", "{reply}");
    assert_no_cgroups_of(daemon_pid);
}

#[test]
fn sighup_reloads_the_config_and_keeps_the_old_one_when_the_new_one_is_bad() {
    if !common::is_root() {
        return common::skip("a second uid needs root (setpriv)");
    }
    let daemon = Daemon::start_with(DaemonSpec {
        config: Some(r#"{"socket_group": "65534", "grants": []}"#),
        ..Default::default()
    });
    let config = daemon.dir.path().join("serve.json");
    let health = json!({"id": 1, "op": "health"});
    let frames = client_as_nobody(&daemon.socket, std::slice::from_ref(&health));
    assert_eq!(
        frames[0]["error"]["code"], "policy_not_permitted",
        "{frames:?}"
    );

    std::fs::write(
        &config,
        r#"{"socket_group": "65534", "grants": [{"uid": 65534, "ceiling": "default"}]}"#,
    )
    .unwrap();
    daemon.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || daemon
            .log_text()
            .contains("config reloaded")),
        "{}",
        daemon.log_text()
    );
    let frames = client_as_nobody(&daemon.socket, std::slice::from_ref(&health));
    assert_eq!(frames[1]["ok"]["status"], "serving", "{frames:?}");

    // A config that does not load changes nothing.
    std::fs::write(&config, r#"{"grants": 5}"#).unwrap();
    daemon.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || daemon
            .log_text()
            .contains("config not reloaded")),
        "{}",
        daemon.log_text()
    );
    let frames = client_as_nobody(&daemon.socket, std::slice::from_ref(&health));
    assert_eq!(frames[1]["ok"]["status"], "serving", "{frames:?}");
}

#[test]
fn policies_resolve_relative_paths_against_the_config_directory() {
    let grant = r#"{"extends": ["default"], "allow": {"read": ["./data"]}}"#;
    let daemon = Daemon::start_with(DaemonSpec {
        config: Some(r#"{"policies": {"reader": "policies/reader.json"}}"#),
        files: &[
            (
                "policies/reader.json",
                r#"{"extends": ["default"], "allow": {"read": ["../data"]}}"#,
            ),
            ("data/hello.txt", "hello from the config dir\n"),
        ],
        ..Default::default()
    });
    let file = daemon.dir.path().join("data/hello.txt");
    let file = file.to_str().unwrap();
    let mut c = daemon.client();
    // A policy of the config: relative to its own file. An inline one: to the config's dir.
    let named = c.call(json!({"id": 1, "op": "run",
        "spec": {"policy": {"name": "reader"}, "argv": ["cat", file]}}));
    assert_eq!(
        named["ok"]["stdout"]["data"]["utf8"], "hello from the config dir\n",
        "{named}"
    );
    let inline: Value = serde_json::from_str(grant).unwrap();
    let inline = c.call(json!({"id": 2, "op": "run",
        "spec": {"policy": {"inline": inline}, "argv": ["cat", file]}}));
    assert_eq!(
        inline["ok"]["stdout"]["data"]["utf8"], "hello from the config dir\n",
        "{inline}"
    );
    // The control: without the grant the file is not there.
    let control = c.call(json!({"id": 3, "op": "run", "spec": spec(&["cat", file])}));
    assert_eq!(control["ok"]["status"], "exit", "{control}");
}

/// The program of the stdin tests: what its fd 0 is (`stat` of /proc/self/fd/0), what it reads
/// there, then an `fchmod` and a write through fd 0, as JSON.
const STDIN_PROBE: &str = r#"
import json, os, stat, sys
st = os.stat("/proc/self/fd/0")
data = sys.stdin.buffer.read().decode()
tried = {}
for name, attempt in (("fchmod", lambda: os.fchmod(0, 0o666)), ("write", lambda: os.write(0, b"PWNED"))):
    try:
        attempt()
        tried[name] = "done"
    except OSError as e:
        tried[name] = e.errno
print(json.dumps({"fifo": stat.S_ISFIFO(st.st_mode), "ino": st.st_ino, "data": data, "tried": tried}))
"#;

/// Runs [`STDIN_PROBE`] with `stdin` passed as its stdin (`spec.stdin: "fd"`); its report.
fn probe_stdin(c: &mut Client, id: u64, stdin: &dyn std::os::fd::AsRawFd) -> Value {
    let mut probe = spec(&["python3", "-c", STDIN_PROBE]);
    probe["stdin"] = json!("fd");
    c.send_with_fds(&json!({"id": id, "op": "run", "spec": probe}), &[stdin]);
    let reply = c.reply(id);
    let result = result_of(&reply);
    assert_eq!(result["status"], "ok", "{reply}");
    let stdout = result["stdout"]["data"]["utf8"].as_str().unwrap();
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {reply}"))
}

#[test]
fn a_client_stdin_the_sandbox_could_change_is_relayed_and_a_pipe_passed_as_is() {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !common::is_root() {
        return common::skip("the rootless daemon is started through setpriv, which needs root");
    }
    for mode in modes() {
        let daemon = daemon_for(mode);
        let mut c = daemon.client();
        // The sandbox's host uid rootless is the daemon's (65534): the file is its own there.
        let sandbox_uid = if mode == "root" { 0 } else { 65534 };

        // (a) A file open for reading and writing, owned by the sandbox's host uid.
        let path = daemon.dir.path().join("client-stdin");
        std::fs::write(&path, "secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&path, Some(sandbox_uid), Some(sandbox_uid)).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let report = probe_stdin(&mut c, 1, &file);
        drop(file);
        // Attack, checked from the host: neither its mode nor its content changed.
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            meta.mode() & 0o7777,
            0o600,
            "{mode}: fchmod got through: {report}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "secret\n",
            "{mode}: a write got through: {report}"
        );
        // Control: the program reads the file's bytes, from a pipe.
        assert_eq!(report["data"], "secret\n", "{mode}: {report}");
        assert_eq!(report["fifo"], true, "{mode}: {report}");

        // (b) One end of a socket pair, open for reading and writing.
        let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
        peer.write_all(b"over the socket\n").unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        let report = probe_stdin(&mut c, 2, &ours);
        drop(ours);
        // The program has exited: whatever it wrote through fd 0 would be here by now.
        peer.set_nonblocking(true).unwrap();
        let mut written = Vec::new();
        match peer.read_to_end(&mut written) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
        }
        assert_eq!(
            String::from_utf8_lossy(&written),
            "",
            "{mode}: the program wrote to the client's socket: {report}"
        );
        assert_eq!(report["data"], "over the socket\n", "{mode}: {report}");
        assert_eq!(report["fifo"], true, "{mode}: {report}");

        // (c) A pipe's read end is still the program's fd 0 itself.
        let (pipe_r, mut pipe_w) = std::io::pipe().unwrap();
        pipe_w.write_all(b"piped\n").unwrap();
        drop(pipe_w);
        let pipe_ino = std::fs::metadata(format!("/proc/self/fd/{}", pipe_r.as_raw_fd()))
            .unwrap()
            .ino();
        let report = probe_stdin(&mut c, 3, &pipe_r);
        assert_eq!(report["data"], "piped\n", "{mode}: {report}");
        assert_eq!(report["fifo"], true, "{mode}: {report}");
        assert_eq!(
            report["ino"], pipe_ino,
            "{mode}: not the client's pipe: {report}"
        );

        // (d) A socket that never ends: the daemon's reading of it ends with the sandbox.
        let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut quick = spec(&["true"]);
        quick["stdin"] = json!("fd");
        c.send_with_fds(&json!({"id": 4, "op": "run", "spec": quick}), &[&ours]);
        let reply = c.reply(4);
        assert_eq!(result_of(&reply)["status"], "ok", "{mode}: {reply}");
        drop(ours);
        peer.set_nonblocking(true).unwrap();
        assert!(
            eventually(Duration::from_secs(10), || matches!(
                peer.read(&mut [0u8; 16]),
                Ok(0)
            )),
            "{mode}: the daemon still holds the client's socket after the run"
        );
    }
}
