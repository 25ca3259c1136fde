//! Warm pools of `bunker serve` (docs/protocol.md, "Warm pools"), as root and rootless: a
//! pooled run reports what a cold one does (but for its timings and `warm`), a pooled sandbox
//! is never handed out twice, lower memory and pids limits run warm and hold as cold, a pool
//! refills after a burst, and a daemon SIGKILLed while it refills leaves nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::serve::{
    assert_all_end_after_sigkill, assert_no_cgroups_of, descendants, eventually, pid_alive, Client,
    Daemon, DaemonSpec,
};
use serde_json::{json, Value};

/// The pooled policy: small limits, so each limit is quick to reach.
const SMALL: &str = r#"{"extends": ["default"],
    "limits": {"memory": "64MiB", "pids": 64, "output": "64KB", "timeout": "20s",
               "best_effort": ["memory", "pids"]}}"#;

/// A daemon for `mode` whose config names `small` (pooled `pool` times when `pool > 0`); as
/// rootless (uid 65534) this test's uid (root) is let in under the `default` ceiling.
fn daemon(mode: &str, pool: usize) -> Daemon {
    let pools = if pool > 0 {
        format!(r#", "pools": {{"small": {pool}}}"#)
    } else {
        String::new()
    };
    let grants = if mode == "root" {
        "[]"
    } else {
        r#"[{"uid": 0, "ceiling": "small"}]"#
    };
    let config = format!(r#"{{"policies": {{"small": "small.json"}}, "grants": {grants}{pools}}}"#);
    Daemon::start_with(DaemonSpec {
        config: Some(&config),
        as_nobody: mode != "root",
        files: &[("small.json", SMALL)],
    })
}

fn modes() -> Vec<&'static str> {
    if common::is_root() {
        vec!["root", "rootless"]
    } else {
        vec!["root"]
    }
}

fn stats(c: &mut Client) -> Value {
    let reply = c.call(json!({"id": 90, "op": "stats"}));
    reply["ok"].clone()
}

/// Waits until the pool has `n` ready sandboxes.
fn ready(daemon: &Daemon, c: &mut Client, n: u64) {
    let mut last = Value::Null;
    assert!(
        eventually(Duration::from_secs(20), || {
            last = stats(c);
            last["pools"]["small"]["ready"] == n
        }),
        "the pool never had {n} ready: {last}\n{}",
        daemon.log_text()
    );
}

fn run(c: &mut Client, spec: Value) -> Value {
    c.call(json!({"id": 1, "op": "run", "spec": spec}))
}

/// What a pooled run must share with a cold one: everything but timings, the peak memory
/// (which includes the build for a cold run) and `warm`; the enforced notes name each
/// sandbox's numbered cgroup.
fn comparable(reply: &Value) -> Value {
    let Some(result) = reply.get("ok") else {
        // A refusal: its error.
        return reply["error"].clone();
    };
    let notes: Vec<String> = result["enforced"]["notes"]
        .as_array()
        .map(|n| {
            n.iter()
                .map(|s| {
                    s.as_str()
                        .unwrap_or("")
                        .replace(|c: char| c.is_ascii_digit(), "")
                })
                .collect()
        })
        .unwrap_or_default();
    let mut enforced = result["enforced"].clone();
    enforced["notes"] = json!(notes);
    json!({
        "status": result["status"],
        "exit_code": result["exit_code"],
        "signal": result["signal"],
        "error": result["error"],
        "error_code": result["error_code"],
        "stdout": result["stdout"],
        "stderr": result["stderr"],
        "enforced": enforced,
        "http": result["http"],
    })
}

fn small(argv: &[&str]) -> Value {
    json!({"policy": {"name": "small"}, "argv": argv})
}

#[test]
fn a_pooled_run_reports_what_a_cold_one_does() {
    if !common::is_root() {
        return common::skip("the rootless daemon is started through setpriv, which needs root");
    }
    let mut timeout = small(&["sleep", "5"]);
    timeout["options"] = json!({"timeout_ms": 300});
    let mut stdin = small(&[
        "python3",
        "-c",
        "import sys; print(sys.stdin.read().upper())",
    ]);
    stdin["stdin"] = json!({"data": {"utf8": "through the pool"}});
    let cases = [
        small(&["/bin/sh", "-c", "echo out; echo err >&2; pwd; id -u"]),
        small(&["/bin/sh", "-c", "exit 7"]),
        timeout,
        small(&[
            "python3",
            "-c",
            "b = bytearray(512 * 1024 * 1024); print(len(b))",
        ]),
        small(&["no-such-command-here"]),
        small(&["head", "-c", "1000000", "/dev/zero"]),
        stdin,
        // Landlock and seccomp: the host's /etc is not writable, no new user namespace.
        small(&[
            "/bin/sh",
            "-c",
            "echo x > /etc/bunker-pool; echo $?; unshare -U true; echo $?",
        ]),
    ];
    for mode in modes() {
        let cold_daemon = daemon(mode, 0);
        let warm_daemon = daemon(mode, 2);
        let mut cold = cold_daemon.client();
        let mut warm = warm_daemon.client();
        for case in &cases {
            ready(&warm_daemon, &mut warm, 2);
            let warm_reply = run(&mut warm, case.clone());
            let cold_reply = run(&mut cold, case.clone());
            assert_eq!(
                comparable(&warm_reply),
                comparable(&cold_reply),
                "{mode}: {case}\nwarm: {warm_reply}\ncold: {cold_reply}"
            );
            if let Some(result) = warm_reply.get("ok") {
                assert_eq!(result["warm"], true, "{mode}: {warm_reply}");
                // A cold result says nothing of pools.
                assert!(cold_reply["ok"].get("warm").is_none(), "{cold_reply}");
            }
        }
        // The limits were really reached (the cases are not all alike); rootless, the memory
        // limit is best effort, and off without cgroup delegation.
        let results: Vec<Value> = cases
            .iter()
            .map(|case| {
                ready(&warm_daemon, &mut warm, 2);
                run(&mut warm, case.clone())["ok"].clone()
            })
            .collect();
        let statuses: Vec<&Value> = results.iter().map(|r| &r["status"]).collect();
        let mut expected = vec!["ok", "exit", "timeout"];
        if mode == "root" {
            expected.push("memory_limit");
        }
        for status in expected {
            assert!(
                statuses.contains(&&json!(status)),
                "{mode}: no {status} in {statuses:?}"
            );
        }
        assert!(
            results.iter().any(|r| r["stdout"]["truncated"] == true),
            "{mode}: no output cut at limits.output: {results:?}"
        );
    }
}

/// `small` but for its memory and pids limits (`SMALL`'s others kept).
fn small_limited(memory: &str, pids: u64) -> Value {
    json!({"inline": {"extends": ["default"],
        "limits": {"memory": memory, "pids": pids, "output": "64KB", "timeout": "20s",
                   "best_effort": ["memory", "pids"]}}})
}

#[test]
fn lower_memory_and_pids_limits_run_warm_and_are_enforced_as_cold() {
    if !common::is_root() {
        return common::skip("the rootless daemon is started through setpriv, which needs root");
    }
    // 40 MiB touched: above the request's 32 MiB, below the pool's 64 MiB.
    let allocate = ["python3", "-c", "b = b'x' * (40 << 20); print(len(b))"];
    // Up to 40 children (each gone quiet, holding a pid): more than 16, fewer than 64.
    let fork = [
        "python3",
        "-c",
        "import os, time\nn = 0\ntry:\n    for _ in range(40):\n        if os.fork() == 0:\n            os.close(1); os.close(2); time.sleep(20); os._exit(0)\n        n += 1\nexcept OSError as e:\n    print('fork failed', e.errno)\nprint(n)",
    ];
    let lower = small_limited("32MiB", 16);
    for mode in modes() {
        let cold_daemon = daemon(mode, 0);
        let warm_daemon = daemon(mode, 2);
        let mut cold = cold_daemon.client();
        let mut warm = warm_daemon.client();
        let mut replies = Vec::new();
        for argv in [&allocate[..], &fork[..]] {
            ready(&warm_daemon, &mut warm, 2);
            let spec = json!({"policy": lower, "argv": argv});
            let warm_reply = run(&mut warm, spec.clone());
            let cold_reply = run(&mut cold, spec.clone());
            assert_eq!(warm_reply["ok"]["warm"], true, "{mode}: {warm_reply}");
            assert_eq!(
                comparable(&warm_reply),
                comparable(&cold_reply),
                "{mode}: {spec}\nwarm: {warm_reply}\ncold: {cold_reply}"
            );
            // Under the pool's own limits the same programs fit.
            ready(&warm_daemon, &mut warm, 2);
            let pooled = run(&mut warm, small(argv));
            assert_eq!(pooled["ok"]["warm"], true, "{mode}: {pooled}");
            replies.push((warm_reply["ok"].clone(), pooled["ok"].clone()));
        }
        let [(memory, memory_pooled), (pids, pids_pooled)] = &replies[..] else {
            unreachable!()
        };
        assert_eq!(memory_pooled["status"], "ok", "{mode}: {memory_pooled}");
        assert_eq!(
            pids_pooled["stdout"]["data"]["utf8"], "40\n",
            "{mode}: {pids_pooled}"
        );
        // Rootless, both limits are best effort, and off without cgroup delegation.
        if mode == "root" {
            assert_eq!(memory["status"], "memory_limit", "{mode}: {memory}");
            assert_eq!(memory["enforced"]["memory_limit"], "on", "{memory}");
            let peak = memory["peak_memory_bytes"].as_u64().unwrap();
            assert!(
                peak <= 32 << 20,
                "{mode}: peak above the request's limit: {memory}"
            );
            let out = pids["stdout"]["data"]["utf8"].as_str().unwrap_or("");
            assert!(out.starts_with("fork failed 11\n"), "{mode}: {pids}");
            assert_eq!(pids["enforced"]["pids_limit"], "on", "{pids}");
        }
        // Higher than the pool's: cold (rootless, the `small` ceiling refuses them).
        if mode != "root" {
            continue;
        }
        for policy in [small_limited("128MiB", 64), small_limited("64MiB", 65)] {
            ready(&warm_daemon, &mut warm, 2);
            let reply = run(&mut warm, json!({"policy": policy, "argv": ["true"]}));
            assert_eq!(reply["ok"]["status"], "ok", "{mode}: {reply}");
            assert!(
                reply["ok"].get("warm").is_none(),
                "{mode}: {policy}: {reply}"
            );
        }
    }
}

#[test]
fn a_pooled_sandbox_is_never_handed_out_twice() {
    if !common::is_root() {
        return common::skip("the rootless daemon is started through setpriv, which needs root");
    }
    let marker = "test -e /tmp/marker && echo reused; touch /tmp/marker; echo fresh";
    for mode in modes() {
        let daemon = daemon(mode, 2);
        let mut c = daemon.client();
        // More runs than the pool holds, each from a ready pool.
        for n in 0..6 {
            ready(&daemon, &mut c, 2);
            let reply = run(&mut c, small(&["/bin/sh", "-c", marker]));
            assert_eq!(reply["ok"]["warm"], true, "{mode} run {n}: {reply}");
            assert_eq!(
                reply["ok"]["stdout"]["data"]["utf8"], "fresh\n",
                "{mode} run {n}: {reply}"
            );
        }
        let pool = &stats(&mut c)["pools"]["small"];
        assert_eq!(pool["taken"], 6, "{mode}: {pool}");
    }
}

#[test]
fn a_pool_refills_after_a_burst_and_reports_its_idle_memory() {
    if !common::is_root() {
        return common::skip("the rootless daemon is started through setpriv, which needs root");
    }
    for mode in modes() {
        let daemon = daemon(mode, 2);
        let mut c = daemon.client();
        ready(&daemon, &mut c, 2);
        let pool = &stats(&mut c)["pools"]["small"];
        assert_eq!(pool["size"], 2, "{mode}: {pool}");
        if mode == "root" {
            // Each idle sandbox's cgroup holds its init's memory.
            assert!(
                pool["idle_memory_bytes"].as_u64().unwrap_or(0) > 0,
                "{pool}"
            );
        }
        // A burst larger than the pool: the first ones warm, the rest cold, all fine.
        let socket = daemon.socket.clone();
        let replies: Vec<Value> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..5)
                .map(|_| {
                    let socket = socket.clone();
                    s.spawn(move || {
                        let mut c = Client::connect(&socket);
                        run(&mut c, small(&["/bin/echo", "burst"]))
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        for reply in &replies {
            assert_eq!(
                reply["ok"]["stdout"]["data"]["utf8"], "burst\n",
                "{mode}: {reply}"
            );
        }
        assert!(
            replies.iter().any(|r| r["ok"]["warm"] == true),
            "{mode}: none warm: {replies:?}"
        );
        ready(&daemon, &mut c, 2);
        let pool = &stats(&mut c)["pools"]["small"];
        assert!(pool["taken"].as_u64().unwrap() >= 1, "{mode}: {pool}");
    }
}

#[test]
fn a_daemon_killed_while_its_pool_fills_leaves_nothing() {
    if !common::is_root() {
        return common::skip("the cgroups a killed daemon leaves are root's");
    }
    let mut daemon = daemon("root", 4);
    let mut c = daemon.client();
    ready(&daemon, &mut c, 4);
    // Take some, so the refill is running when the kill comes.
    for _ in 0..2 {
        run(&mut c, small(&["/bin/true"]));
    }
    let own = descendants(daemon.pid());
    assert!(own.len() >= 4, "no pooled inits among {own:?}");
    let daemon_pid = daemon.pid();
    daemon.sigkill();
    assert_all_end_after_sigkill(&own);
    daemon.restart();
    let mut c = daemon.client();
    ready(&daemon, &mut c, 4);
    // The restarted daemon removed the killed one's cgroups (its own pool's are its own).
    assert_no_cgroups_of(daemon_pid);
}

/// The host pids of the daemon's sandbox inits (pid 1 of a pid namespace of their own).
fn inits_of(daemon: &Daemon) -> Vec<i32> {
    descendants(daemon.pid())
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("NSpid:") && l.split_whitespace().nth(2) == Some("1"))
        })
        .collect()
}

/// Kills the one idle pooled sandbox of `daemon` and waits until its init is dead.
fn kill_the_idle_one(mode: &str, daemon: &Daemon, c: &mut Client) {
    ready(daemon, c, 1);
    let idle = inits_of(daemon);
    assert_eq!(idle.len(), 1, "{mode}: {idle:?}");
    bunker_sys::event::kill(idle[0], libc::SIGKILL).unwrap();
    assert!(eventually(Duration::from_secs(5), || !pid_alive(idle[0])
        || std::fs::read_to_string(format!("/proc/{}/stat", idle[0]))
            .unwrap_or_default()
            .contains(") Z ")));
}

/// A pooled sandbox whose init died while it waited is handed out (nothing checks it before),
/// its launch finds init gone, and the request starts over: cold, or with `warm: require` in a
/// sandbox prepared for it. The request succeeds either way; the daemon logs the start over.
#[test]
fn a_pooled_sandbox_killed_while_idle_is_retried_cold() {
    if !common::is_root() {
        return common::skip("killing the rootless daemon's sandboxes needs root");
    }
    for mode in modes() {
        let daemon = daemon(mode, 1);
        let mut c = daemon.client();
        kill_the_idle_one(mode, &daemon, &mut c);
        let reply = run(&mut c, small(&["/bin/echo", "after"]));
        assert_eq!(
            reply["ok"]["stdout"]["data"]["utf8"], "after\n",
            "{mode}: {reply}"
        );
        assert!(reply["ok"].get("warm").is_none(), "{mode}: {reply}");
        assert_eq!(stats(&mut c)["pools"]["small"]["taken"], 1, "{mode}");
        assert!(
            daemon.log_text().contains("the request runs cold"),
            "{mode}: no start over: {}",
            daemon.log_text()
        );
        // Required warm: the start over is a sandbox prepared now, still warm.
        kill_the_idle_one(mode, &daemon, &mut c);
        let mut spec = small(&["/bin/echo", "required"]);
        spec["options"] = json!({"warm": "require"});
        let reply = run(&mut c, spec);
        assert_eq!(
            reply["ok"]["stdout"]["data"]["utf8"], "required\n",
            "{mode}: {reply}"
        );
        assert_eq!(reply["ok"]["warm"], true, "{mode}: {reply}");
        assert!(
            daemon.log_text().contains("another is prepared"),
            "{mode}: {}",
            daemon.log_text()
        );
        // And the pool refills.
        ready(&daemon, &mut c, 1);
        let reply = run(&mut c, small(&["/bin/echo", "warm"]));
        assert_eq!(reply["ok"]["warm"], true, "{mode}: {reply}");
    }
}

/// `warm: require` with no pool that fits: the daemon prepares a sandbox for the request, as
/// a refill does, and hands it the program; the result is warm and otherwise a cold one's.
#[test]
fn a_required_warm_run_without_a_pool_is_prepared_for_it() {
    for mode in modes() {
        let daemon = daemon(mode, 0);
        let mut c = daemon.client();
        let cold = run(&mut c, small(&["/bin/sh", "-c", "echo hi; exit 3"]));
        let mut spec = small(&["/bin/sh", "-c", "echo hi; exit 3"]);
        spec["options"] = json!({"warm": "require"});
        let warm = run(&mut c, spec);
        assert_eq!(warm["ok"]["warm"], true, "{mode}: {warm}");
        assert_eq!(comparable(&warm), comparable(&cold), "{mode}");
        assert!(stats(&mut c).get("pools").is_none(), "{mode}");
    }
}

#[test]
fn a_config_reload_rebuilds_the_pools() {
    if !common::is_root() {
        return common::skip("the rootless daemon is started through setpriv, which needs root");
    }
    let daemon = daemon("root", 1);
    let mut c = daemon.client();
    ready(&daemon, &mut c, 1);
    let before = inits_of(&daemon);
    let config = daemon.dir.path().join("serve.json");
    std::fs::write(
        &config,
        r#"{"policies": {"small": "small.json"}, "grants": [], "pools": {"small": 2}}"#,
    )
    .unwrap();
    daemon.signal("HUP");
    ready(&daemon, &mut c, 2);
    assert_eq!(stats(&mut c)["pools"]["small"]["size"], 2);
    // The sandboxes built under the old config are gone, the new ones are others.
    assert!(
        eventually(Duration::from_secs(5), || before
            .iter()
            .all(|p| !pid_alive(*p))),
        "{before:?} outlived the reload"
    );
    let after = inits_of(&daemon);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} {after:?}"
    );
    // A reload without pools ends them.
    std::fs::write(
        &config,
        r#"{"policies": {"small": "small.json"}, "grants": []}"#,
    )
    .unwrap();
    daemon.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || stats(&mut c)
            .get("pools")
            .is_none()
            && inits_of(&daemon).is_empty()),
        "{}",
        stats(&mut c)
    );
}

#[test]
fn a_full_pool_gives_its_slots_up_to_cold_requests() {
    if !common::is_root() {
        return common::skip("the rootless daemon is started through setpriv, which needs root");
    }
    // The pool holds every slot there is.
    let daemon = Daemon::start_with(DaemonSpec {
        config: Some(
            r#"{"max_sandboxes": 2, "policies": {"small": "small.json"}, "grants": [],
                "pools": {"small": 2}}"#,
        ),
        files: &[("small.json", SMALL)],
        ..Default::default()
    });
    let mut c = daemon.client();
    ready(&daemon, &mut c, 2);
    // A request no pool fits still runs: a ready sandbox is ended for its slot.
    let reply = run(
        &mut c,
        json!({"policy": {"name": "default"}, "argv": ["/bin/echo", "cold"]}),
    );
    assert_eq!(reply["ok"]["stdout"]["data"]["utf8"], "cold\n", "{reply}");
    assert!(reply["ok"].get("warm").is_none(), "{reply}");
    // The pool refills behind it, within the two slots.
    ready(&daemon, &mut c, 2);
    let s = stats(&mut c);
    assert_eq!(s["live"], 0, "{s}");
}

/// A pooled policy file that grants reading `dir` (and the `small` limits).
fn grants_read(dir: &std::path::Path) -> String {
    format!(
        r#"{{"extends": ["default"], "allow": {{"read": ["{}"]}},
            "limits": {{"memory": "64MiB", "pids": 64, "timeout": "20s",
                        "best_effort": ["memory", "pids"]}}}}"#,
        dir.display()
    )
}

/// A pooled policy file changed on disk: without SIGHUP, the daemon reloads the config and
/// rebuilds that pool (new sandboxes, `taken` from 0), and the next warm request sees the new
/// grant; a file that no longer loads is logged and the pool in force stays.
#[test]
fn a_changed_policy_file_rebuilds_its_pool_without_sighup() {
    for mode in modes() {
        let tmp = common::shared_tempdir();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        for dir in [&a, &b] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("f"), dir.display().to_string()).unwrap();
        }
        let grants = if mode == "root" {
            "[]"
        } else {
            r#"[{"uid": 0, "ceiling": "watched"}, {"uid": 0, "ceiling": "small"}]"#
        };
        let config = format!(
            r#"{{"policies": {{"watched": "watched.json", "small": "small.json"}}, "grants": {grants},
                "pools": {{"watched": 1, "small": 1}}}}"#
        );
        let daemon = Daemon::start_with(DaemonSpec {
            config: Some(&config),
            as_nobody: mode != "root",
            files: &[("watched.json", &grants_read(&a)), ("small.json", SMALL)],
        });
        let mut c = daemon.client();
        let ready_watched = |c: &mut Client| {
            assert!(
                eventually(Duration::from_secs(20), || stats(c)["pools"]["watched"]
                    ["ready"]
                    == 1),
                "{mode}: {}",
                daemon.log_text()
            );
        };
        let read_both = json!({"policy": {"name": "watched"}, "argv": ["/bin/sh", "-c",
            format!("cat {}/f {}/f", a.display(), b.display())]});
        ready_watched(&mut c);
        let before = run(&mut c, read_both.clone());
        assert_eq!(before["ok"]["warm"], true, "{mode}: {before}");
        assert_eq!(
            before["ok"]["stdout"]["data"]["utf8"],
            a.display().to_string()
        );
        ready_watched(&mut c);
        // The other pool, taken from once: it is kept through the rebuild of `watched`.
        ready(&daemon, &mut c, 1);
        assert_eq!(
            run(&mut c, small(&["/bin/true"]))["ok"]["warm"],
            true,
            "{mode}"
        );
        ready(&daemon, &mut c, 1);
        let old_inits = inits_of(&daemon);
        // In place, as an editor that writes the file over.
        std::fs::write(daemon.dir.path().join("watched.json"), grants_read(&b)).unwrap();
        assert!(
            eventually(Duration::from_secs(20), || {
                let pools = stats(&mut c)["pools"]["watched"].clone();
                let now = inits_of(&daemon);
                pools["taken"] == 0
                    && pools["ready"] == 1
                    && now.len() == 2
                    && now.iter().filter(|p| old_inits.contains(p)).count() == 1
            }),
            "{mode}: the pool was not rebuilt: {}\n{}",
            stats(&mut c),
            daemon.log_text()
        );
        assert_eq!(stats(&mut c)["pools"]["small"]["taken"], 1, "{mode}: kept");
        let after = run(&mut c, read_both.clone());
        assert_eq!(after["ok"]["warm"], true, "{mode}: {after}");
        assert_eq!(
            after["ok"]["stdout"]["data"]["utf8"],
            b.display().to_string(),
            "{mode}: {after}"
        );
        // A file that no longer loads: logged, the pool in force kept (and still warm).
        ready_watched(&mut c);
        ready(&daemon, &mut c, 1);
        let kept = inits_of(&daemon);
        std::fs::write(daemon.dir.path().join("watched.json"), "{not json").unwrap();
        assert!(
            eventually(Duration::from_secs(20), || daemon
                .log_text()
                .contains("config not reloaded")),
            "{mode}: {}",
            daemon.log_text()
        );
        assert_eq!(inits_of(&daemon), kept, "{mode}");
        let still = run(&mut c, read_both);
        assert_eq!(still["ok"]["warm"], true, "{mode}: {still}");
        assert_eq!(
            still["ok"]["stdout"]["data"]["utf8"],
            b.display().to_string()
        );
    }
}

/// `bunker run --warm` through a daemon without pools: the report says warm, and the output and
/// exit code are a local run's; without a daemon, `--warm` is an error, never a local run.
#[test]
fn bunker_run_warm_goes_through_a_prepared_sandbox_or_fails() {
    let daemon = Daemon::start();
    let run = |extra: &[&str]| {
        common::bunker()
            .env_remove("BUNKER_SOCKET")
            .env_remove("BUNKER_WARM")
            .args(["run", "--report", "json"])
            .args(extra)
            .args(["--", "/bin/sh", "-c", "echo out; exit 4"])
            .output()
            .unwrap()
    };
    let socket = daemon.socket.to_str().unwrap();
    let warm = run(&["--connect", socket, "--warm"]);
    assert_eq!(common::stdout(&warm), "out\n");
    assert_eq!(warm.status.code(), Some(4), "{}", common::stderr(&warm));
    assert_eq!(common::report(&warm)["warm"], true);
    let cold = run(&["--connect", socket]);
    assert_eq!(cold.status.code(), Some(4));
    assert!(common::report(&cold).get("warm").is_none());
    let nowhere = run(&["--warm"]);
    assert_eq!(
        nowhere.status.code(),
        Some(2),
        "{}",
        common::stderr(&nowhere)
    );
    assert!(common::stdout(&nowhere).is_empty());
    assert!(common::stderr(&nowhere).contains("a warm start"));
}

/// With the config's `frequent` rule, a policy that ran cold `after` times gets a pool of one
/// (`seen:N`) and its next run is warm; with `max_pools` of them, a new one ends the one used
/// longest ago. Without the rule (every other test here), nothing is pooled on its own.
#[test]
fn a_frequently_seen_policy_gets_a_pool_of_one_and_the_oldest_is_evicted() {
    for mode in modes() {
        let grants = if mode == "root" {
            "[]"
        } else {
            r#"[{"uid": 0, "ceiling": "default"}]"#
        };
        let config = format!(
            r#"{{"policies": {{"small": "small.json"}}, "grants": {grants},
                "frequent": {{"after": 2, "within_ms": 600000, "max_pools": 1}}}}"#
        );
        let daemon = Daemon::start_with(DaemonSpec {
            config: Some(&config),
            as_nobody: mode != "root",
            files: &[("small.json", SMALL)],
        });
        let mut c = daemon.client();
        let echo = |policy: &str| json!({"policy": {"name": policy}, "argv": ["/bin/echo", "hi"]});
        let warm = |reply: &Value| reply["ok"]["warm"] == true;
        let pools = |c: &mut Client| stats(c)["pools"].clone();
        assert!(!warm(&run(&mut c, echo("default"))), "{mode}");
        assert!(pools(&mut c).is_null(), "{mode}: one run is not frequent");
        assert!(!warm(&run(&mut c, echo("default"))), "{mode}");
        assert!(
            eventually(Duration::from_secs(20), || pools(&mut c)["seen:1"]["ready"]
                == 1),
            "{mode}: {}\n{}",
            stats(&mut c),
            daemon.log_text()
        );
        let third = run(&mut c, echo("default"));
        assert!(warm(&third), "{mode}: {third}");
        assert_eq!(third["ok"]["stdout"]["data"]["utf8"], "hi\n");
        // Another policy, frequent too: it takes the only place, `seen:1` is ended.
        assert!(!warm(&run(&mut c, echo("small"))), "{mode}");
        assert!(!warm(&run(&mut c, echo("small"))), "{mode}");
        assert!(
            eventually(Duration::from_secs(20), || {
                let p = pools(&mut c);
                p["seen:2"]["ready"] == 1 && p.get("seen:1").is_none()
            }),
            "{mode}: {}",
            stats(&mut c)
        );
        assert!(warm(&run(&mut c, echo("small"))), "{mode}");
        assert!(!warm(&run(&mut c, echo("default"))), "{mode}");
    }
}
