//! `bunker run --connect SOCKET` (and `BUNKER_SOCKET`) against a real `bunker serve` started on a
//! temporary socket: for each case, the run through the daemon has the same stdout, stderr, exit
//! code and report (timings aside) as the same `bunker run` here. As root and rootless (the
//! daemon then runs as the same unprivileged user as its client).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A `bunker serve` of the test's own, stopped (by its pid) when dropped.
struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `bunker serve` as `make()`'s user and waits until it answers on its socket.
    fn start(make: CommandMaker) -> Daemon {
        let dir = shared_tempdir();
        // The rootless daemon creates its socket here.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let socket = dir.path().join("bunker.sock");
        let log = dir.path().join("serve.log");
        let child = make()
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut daemon = Daemon {
            child,
            socket,
            log,
            _dir: dir,
        };
        // Readiness, not timing: a daemon that never answers fails the test with its log.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::os::unix::net::UnixStream::connect(&daemon.socket).is_ok() {
                return daemon;
            }
            if let Some(status) = daemon.child.try_wait().unwrap() {
                panic!("bunker serve exited with {status}:\n{}", daemon.log());
            }
            assert!(
                Instant::now() < deadline,
                "bunker serve does not answer on {}:\n{}",
                daemon.socket.display(),
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `bunker run`: its arguments (after `run`), stdin bytes, working directory, environment.
#[derive(Clone, Default)]
struct Case {
    name: &'static str,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    cwd: Option<PathBuf>,
    env: Vec<(String, String)>,
    /// stdout and stderr on one pipe (their interleaving is then part of the output).
    merged: bool,
}

fn case(name: &'static str, args: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Case::default()
    }
}

/// Runs `bunker run --report json <how> <case.args>` and returns what it gave.
fn run_case(make: CommandMaker, case: &Case, how: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = make();
    cmd.arg("run").args(["--report", "json"]).args(how);
    cmd.args(&case.args);
    cmd.env_remove("BUNKER_SOCKET");
    for (k, v) in case
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(env.iter().copied())
    {
        cmd.env(k, v);
    }
    if let Some(dir) = &case.cwd {
        cmd.current_dir(dir);
    }
    cmd.stdin(if case.stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let merged = if case.merged {
        let (reader, writer) = std::io::pipe().unwrap();
        cmd.stdout(writer.try_clone().unwrap()).stderr(writer);
        Some(reader)
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        None
    };
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    if let Some(bytes) = &case.stdin {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(bytes).unwrap();
    }
    match merged {
        Some(mut reader) => {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).unwrap();
            let status = child.wait().unwrap();
            Output {
                status,
                stdout: all,
                stderr: Vec::new(),
            }
        }
        None => child.wait_with_output().unwrap(),
    }
}

/// The report line (the last line starting with `{"status"`) out of `bytes`, and the rest.
fn split_report(bytes: &[u8]) -> (Vec<u8>, Value) {
    let start = b"{\"status\"";
    let at = bytes
        .windows(start.len())
        .rposition(|w| w == start)
        .unwrap_or_else(|| panic!("no report in:\n{}", String::from_utf8_lossy(bytes)));
    let end = bytes[at..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |n| at + n + 1);
    // Cgroup names carry the supervisor's pid (a limit's notes and errors).
    let line = without_pids(&String::from_utf8_lossy(&bytes[at..end]));
    let report: Value = serde_json::from_str(&line).unwrap();
    let mut rest = bytes[..at].to_vec();
    rest.extend_from_slice(&bytes[end..]);
    (rest, without_timings(report))
}

/// The report minus what differs from run to run.
fn without_timings(mut report: Value) -> Value {
    let map = report.as_object_mut().unwrap();
    for key in ["wall_ms", "cpu_ms", "peak_memory_bytes"] {
        map.remove(key);
    }
    if let Some(requests) = map
        .get_mut("http")
        .and_then(|h| h.get_mut("requests"))
        .and_then(Value::as_array_mut)
    {
        for r in requests {
            r.as_object_mut().unwrap().remove("duration_ms");
        }
    }
    report
}

/// `text` with each `bunker-<pid>-<n>` as `bunker-PID-N`.
fn without_pids(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("bunker-") {
        out.push_str(&rest[..at + "bunker-".len()]);
        rest = &rest[at + "bunker-".len()..];
        let digits = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'-')
            .count();
        if digits > 0 {
            out.push_str("PID-N");
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

/// What is compared: stdout, stderr without the report, the exit code, the report.
#[derive(Debug, PartialEq)]
struct Observed {
    stdout: String,
    stderr: String,
    code: Option<i32>,
    report: Value,
}

fn observe(out: &Output, merged: bool) -> Observed {
    let (stdout, stderr, report) = if merged {
        // The two streams on one pipe: each keeps its order (lines `o…` and `e…`); how they
        // interleave is not promised, locally either (docs/cli.md).
        let (rest, report) = split_report(&out.stdout);
        let text = String::from_utf8_lossy(&rest).into_owned();
        let of = |prefix: char| -> Vec<u8> {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .flat_map(|l| [l.as_bytes(), b"\n"].concat())
                .collect()
        };
        let others: Vec<u8> = text
            .lines()
            .filter(|l| !l.starts_with('o') && !l.starts_with('e'))
            .flat_map(|l| [l.as_bytes(), b"\n"].concat())
            .collect();
        ([of('o'), others].concat(), of('e'), report)
    } else {
        let (rest, report) = split_report(&out.stderr);
        (out.stdout.clone(), rest, report)
    };
    // Non-UTF-8 output is compared byte for byte through its escape.
    Observed {
        stdout: format!("{:?}", bstr(&stdout)),
        stderr: without_pids(&String::from_utf8_lossy(&stderr)),
        code: out.status.code(),
        report,
    }
}

fn bstr(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn cases(data_dir: &Path) -> Vec<Case> {
    let mut cases = vec![
        case("ok", &["--", "sh", "-c", "echo hello; echo to-stderr >&2"]),
        case("exit 3", &["--", "sh", "-c", "echo before; exit 3"]),
        case("timeout", &["--timeout", "300ms", "--", "sleep", "10"]),
        case(
            "memory limit",
            &[
                "--memory",
                "50MB",
                "--",
                "python3",
                "-c",
                "x = b'a' * (500 << 20); print('allocated')",
            ],
        ),
        case(
            "command not found",
            &["--", "no-such-command-bunker-connect"],
        ),
        case(
            "policy invalid",
            &["--policy-json", r#"{"allow": {"nope": 1}}"#, "--", "true"],
        ),
        case(
            "output limit",
            &["--output", "10B", "--", "sh", "-c", "echo 0123456789abcdef"],
        ),
        case(
            "non-UTF-8 output",
            &["--", "sh", "-c", r"printf 'a\377\376b'; printf '\200' >&2"],
        ),
        Case {
            stdin: Some(b"from a pipe\n\xff".to_vec()),
            ..case("stdin from a pipe", &["--", "sh", "-c", "cat; echo; wc -c"])
        },
        case(
            "stdout and stderr order",
            &[
                "--",
                "sh",
                "-c",
                "for i in $(seq 1 300); do echo out$i; echo err$i >&2; done; printf tail >&2",
            ],
        ),
        Case {
            merged: true,
            ..case(
                "stdout and stderr on one pipe",
                &[
                    "--",
                    "sh",
                    "-c",
                    "for i in $(seq 1 50); do echo o$i; echo e$i >&2; done; exit 5",
                ],
            )
        },
        Case {
            env: vec![("BUNKER_CONNECT_TEST".into(), "from the caller".into())],
            ..case(
                "allow.env from the caller",
                &[
                    "--allow-env",
                    "BUNKER_CONNECT_TEST",
                    "--allow-env",
                    "BUNKER_CONNECT_UNSET",
                    "--",
                    "sh",
                    "-c",
                    "echo \"$BUNKER_CONNECT_TEST\"; env | grep -c BUNKER_CONNECT",
                ],
            )
        },
    ];
    // The daemon's egress proxy decides as the local one: a host no rule allows is refused
    // (no name is resolved for it), and the report lists it.
    cases.push(case(
        "egress denied",
        &[
            "--allow-net",
            "example.com",
            "--",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\\n",
            "http://other.test/",
        ],
    ));
    // stdout and stderr on one pipe: bunker's line (the timeout) starts on a fresh line after
    // the program's unfinished stdout line, as locally.
    cases.push(Case {
        merged: true,
        ..case(
            "an unfinished stdout line before bunker's",
            &[
                "--timeout",
                "300ms",
                "--",
                "sh",
                "-c",
                "printf ounfinished; sleep 10",
            ],
        )
    });
    // Relative paths (a grant, the program) resolve against the caller's directory, which the
    // program also starts in.
    cases.push(Case {
        cwd: Some(data_dir.to_path_buf()),
        ..case(
            "relative paths",
            &[
                "--allow-read",
                "data.txt",
                "--",
                "sh",
                "-c",
                "pwd; cat data.txt",
            ],
        )
    });
    cases
}

#[test]
fn a_run_through_the_daemon_is_the_same_as_a_local_one() {
    let data = shared_tempdir();
    write_file(data.path(), "data.txt", "the caller's file\n");
    for (mode, make) in modes() {
        let daemon = Daemon::start(make);
        let socket = arg(&daemon.socket);
        for case in cases(data.path()) {
            let local = observe(&run_case(make, &case, &[], &[]), case.merged);
            let remote = observe(
                &run_case(make, &case, &["--connect", &socket], &[]),
                case.merged,
            );
            // Each case is the run it says it is (and not two equal failures).
            let expected = match case.name {
                "exit 3" => Some(3),
                "timeout" | "an unfinished stdout line before bunker's" => Some(124),
                "memory limit" if mode == "root" => Some(122),
                "memory limit" => None, // rootless here: no memory cgroup (121, unenforceable)
                "command not found" => Some(127),
                "policy invalid" => Some(120),
                "stdout and stderr on one pipe" => Some(5),
                _ => Some(0),
            };
            if let Some(code) = expected {
                assert_eq!(local.code, Some(code), "{mode}: {}: {local:?}", case.name);
            }
            assert_eq!(
                local,
                remote,
                "{mode}: {}: local (left) and through the daemon (right) differ\ndaemon log:\n{}",
                case.name,
                daemon.log()
            );
            // BUNKER_SOCKET says the same as --connect.
            if case.name == "ok" {
                let by_env = observe(
                    &run_case(make, &case, &[], &[("BUNKER_SOCKET", &socket)]),
                    false,
                );
                assert_eq!(local, by_env, "{mode}: BUNKER_SOCKET");
            }
        }
    }
}

#[test]
fn the_run_reaches_the_daemon_and_local_overrides_bunker_socket() {
    for (mode, make) in modes() {
        let daemon = Daemon::start(make);
        let socket = arg(&daemon.socket);
        let probe = case("probe", &["--", "true"]);
        // The daemon logs each run it does.
        let runs = || daemon.log().matches("op=\"run\"").count();
        let out = run_case(make, &probe, &["--connect", &socket], &[]);
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        assert_eq!(runs(), 1, "{mode}: {}", daemon.log());
        // --local runs here even with BUNKER_SOCKET naming a socket nobody listens on.
        let dead = "/nonexistent/bunker-connect.sock";
        let out = run_case(make, &probe, &["--local"], &[("BUNKER_SOCKET", dead)]);
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        // An empty BUNKER_SOCKET is no socket either.
        let out = run_case(make, &probe, &[], &[("BUNKER_SOCKET", "")]);
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        assert_eq!(runs(), 1, "{mode}: {}", daemon.log());
        // BUNKER_SOCKET alone goes to the daemon, and --connect wins over it.
        let out = run_case(make, &probe, &[], &[("BUNKER_SOCKET", &socket)]);
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        let both = [("BUNKER_SOCKET", dead)];
        let out = run_case(make, &probe, &["--connect", &socket], &both);
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        assert_eq!(runs(), 3, "{mode}: {}", daemon.log());
    }
}

#[test]
fn a_dead_socket_is_a_clear_error_with_its_exit_code() {
    let dir = shared_tempdir();
    // A socket file nobody listens on, and no file at all.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o777)).unwrap();
    for (mode, make) in modes() {
        for (path, says) in [
            (stale.clone(), "nobody listens on it"),
            (dir.path().join("missing.sock"), "is the daemon running"),
        ] {
            let how = ["--connect", path.to_str().unwrap()];
            let out = run_case(make, &case("dead", &["--", "true"]), &how, &[]);
            assert_eq!(out.status.code(), Some(125), "{mode}: {}", stderr(&out));
            let (rest, report) = split_report(&out.stderr);
            let rest = String::from_utf8_lossy(&rest).into_owned();
            assert!(
                rest.contains(&format!(
                    "bunker: cannot connect to bunker serve at {}",
                    path.display()
                )) && rest.contains(says),
                "{mode}: {rest}"
            );
            assert_eq!(report["error_code"], "unavailable", "{mode}: {report}");
            assert_eq!(report["status"], "setup_error", "{mode}: {report}");
        }
        // BUNKER_SOCKET alone is used the same way.
        let out = run_case(
            make,
            &case("dead", &["--", "true"]),
            &[],
            &[("BUNKER_SOCKET", stale.to_str().unwrap())],
        );
        assert_eq!(out.status.code(), Some(125), "{mode}: {}", stderr(&out));
    }
}

#[test]
fn sigterm_to_the_client_kills_the_remote_sandbox_like_a_local_one() {
    // The sandboxed program is `sleep 987` itself (the shell execs it); the clients' own
    // command lines only contain it inside the shell's script.
    let script = "exec sleep 987";
    let sandboxed = || processes_running(&["sleep", "987"]);
    for (mode, make) in modes() {
        let daemon = Daemon::start(make);
        let socket = arg(&daemon.socket);
        let mut reports = Vec::new();
        for how in [vec![], vec!["--connect", socket.as_str()]] {
            let mut child = make()
                .args(["run", "--report", "json"])
                .args(&how)
                .args(["--", "sh", "-c", script])
                .env_remove("BUNKER_SOCKET")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            while sandboxed().is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "{mode} {how:?}: the sandbox never ran"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            // The client's own pid: setpriv execs bunker in place.
            let pid = child.id().to_string();
            assert!(Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success());
            // Bounded: a client that ignored the signal would wait for `sleep 987`.
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("{mode} {how:?}: the client did not end after SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(128 + 15),
                "{mode} {how:?}: {}",
                stderr(&out)
            );
            // The sandbox is gone with the answer (bounded wait for the host's view of it).
            let deadline = Instant::now() + Duration::from_secs(10);
            while !sandboxed().is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "{mode} {how:?}: the sandbox outlived the run: {:?}",
                    sandboxed()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            let (rest, report) = split_report(&out.stderr);
            reports.push((String::from_utf8_lossy(&rest).into_owned(), report));
        }
        assert_eq!(
            reports[0], reports[1],
            "{mode}: local vs through the daemon"
        );
        assert_eq!(reports[0].1["error_code"], "terminated", "{mode}");
    }
}

/// Pids of live processes whose command line is exactly `argv`.
fn processes_running(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read(entry.path().join("cmdline")).unwrap_or_default() != want {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
        if !matches!(state, Some('Z') | Some('X') | None) {
            found.push(pid);
        }
    }
    found
}

/// The client library (bunker-client) against the real daemon: every operation. As root only:
/// the test process is the client, and a daemon without a config takes only its own uid.
#[test]
fn the_client_drives_every_operation_of_the_daemon() {
    use bunker_api::protocol::HealthStatus;
    use bunker_api::{OutputMode, RunEvent, RunSpec, Status, StdinSource};
    if !is_root() {
        return skip("the client test runs as root (a daemon takes only its own uid)");
    }
    let daemon = Daemon::start(bunker);
    let mut client = bunker_client::Client::connect(&daemon.socket).unwrap();
    assert!(
        client.server().starts_with("bunker "),
        "{}",
        client.server()
    );
    assert_eq!(client.health().unwrap().status, HealthStatus::Serving);
    let spec = |argv: &[&str], stdin: StdinSource| {
        let mut spec: RunSpec = serde_json::from_value(serde_json::json!({
            "policy": {"name": "default"},
            "argv": argv,
        }))
        .unwrap();
        spec.stdin = stdin;
        spec.options.output = OutputMode::Events;
        spec
    };
    // run, capturing.
    let mut captured = spec(&["sh", "-c", "echo captured; exit 4"], StdinSource::Null);
    captured.options.output = OutputMode::Capture;
    let result = client.run(&captured).unwrap();
    assert_eq!((result.status, result.exit_code), (Status::Exit, Some(4)));
    let data = result.stdout.data.and_then(|d| d.to_bytes()).unwrap();
    assert_eq!(data, b"captured\n");
    // start, stdin, close_stdin, the events to `exit`, then wait.
    let cat = client
        .start(&spec(&["cat"], StdinSource::Stream), Default::default())
        .unwrap();
    client.stdin(&cat, b"hello \xff").unwrap();
    client.close_stdin(&cat).unwrap();
    let mut out = Vec::new();
    let exit = loop {
        let frame = client.next_event().unwrap();
        assert_eq!(frame.sandbox, cat);
        match frame.event {
            RunEvent::Stdout { data } => out.extend(data.to_bytes().unwrap()),
            RunEvent::Exit { result } => break result,
            _ => {}
        }
    };
    assert_eq!(out, b"hello \xff");
    assert_eq!(exit.status, Status::Ok);
    assert_eq!(client.wait(&cat).unwrap().status, Status::Ok);
    // pause, resume, kill: the result carries `cancelled`.
    let sleeper = client
        .start(
            &spec(&["sleep", "986"], StdinSource::Null),
            Default::default(),
        )
        .unwrap();
    client.pause(&sleeper).unwrap();
    client.resume(&sleeper).unwrap();
    client.kill(&sleeper).unwrap();
    let killed = client.wait(&sleeper).unwrap();
    assert_eq!(
        killed.error_code,
        Some(bunker_api::ErrorCode::Cancelled),
        "{killed:?}"
    );
    assert!(processes_running(&["sleep", "986"]).is_empty());
    // An unknown sandbox is `not_found`; stats counted the runs.
    let unknown = client.kill("no-such-sandbox").unwrap_err();
    assert_eq!(unknown.code, bunker_api::ErrorCode::NotFound, "{unknown}");
    let stats = client.stats().unwrap();
    assert_eq!(stats.live, 0, "{stats:?}");
    assert_eq!(stats.totals.values().sum::<u64>(), 3, "{stats:?}");
}

/// What a run through a daemon cannot carry is refused before anything is sent, with exit 2
/// and a message saying why and what to do (`--local`): `--resolve`, and a pseudo-terminal
/// (`kernel.tty`) for a stdin that is a terminal. Controls: the same runs with `--local` work.
#[test]
fn what_a_daemon_cannot_carry_is_refused_before_connecting() {
    let dead = "/nonexistent/bunker-connect.sock";
    for (mode, make) in modes() {
        let resolve = ["--resolve", "api.test:127.0.0.1"];
        let out = make()
            .args(["run", "--connect", dead])
            .args(resolve)
            .args(["--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{mode}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--resolve is not available through a daemon"),
            "{mode}: {}",
            stderr(&out)
        );
        let out = make()
            .args(["run", "--local"])
            .args(resolve)
            .args(["--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        // A terminal on stdin, from script(1).
        let Some(script) = which("script") else {
            return skip("script(1) is not installed (util-linux)");
        };
        let tty = r#"{"extends": ["default"], "kernel": {"tty": true}}"#;
        for (how, code) in [(format!("--connect {dead}"), 2), ("--local".to_string(), 0)] {
            let command = format!(
                "{} run {how} --policy-json '{tty}' -- true; echo exit=$?",
                bunker_bin().display()
            );
            let mut cmd = Command::new(&script);
            cmd.args(["-qec", &command, "/dev/null"]);
            if mode == "rootless" {
                cmd = bunker_as_nobody_running(&script, &command);
            }
            let out = cmd.stdin(Stdio::null()).output().unwrap();
            let text = stdout(&out);
            assert!(
                text.contains(&format!("exit={code}")),
                "{mode} {how}: {text}"
            );
            if code == 2 {
                assert!(
                    text.contains("kernel.tty (a pseudo-terminal for the program) is not available through a daemon"),
                    "{mode}: {text}"
                );
            }
        }
    }
}

/// `script -qec COMMAND /dev/null` as the unprivileged user (the `bunker` in COMMAND then runs
/// rootless).
fn bunker_as_nobody_running(script: &str, command: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(script)
        .args(["-qec", command, "/dev/null"]);
    cmd
}

/// Attack: the caller's stdin is a file the sandbox's user owns (the caller's own file,
/// rootless), open read-only. Handed over as it is, the program could `fchmod` the host file
/// through its fd 0; through the daemon, as locally, it only gets the bytes. Checked from the
/// host after each run. Control: the program reads the same bytes.
#[test]
fn a_stdin_file_the_sandbox_could_change_reaches_it_only_as_bytes() {
    use std::os::unix::fs::MetadataExt;
    for (mode, make) in modes() {
        let daemon = Daemon::start(make);
        let socket = arg(&daemon.socket);
        let dir = shared_tempdir();
        let file = write_file(dir.path(), "input.txt", "the caller's input\n");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        if mode == "rootless" {
            std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
        }
        let chmod = "import os\ntry:\n  os.fchmod(0, 0o777)\nexcept OSError as e:\n  print(e)";
        for how in [vec![], vec!["--connect", socket.as_str()]] {
            let run = |argv: &[&str]| {
                make()
                    .arg("run")
                    .args(&how)
                    .arg("--")
                    .args(argv)
                    .env_remove("BUNKER_SOCKET")
                    .stdin(std::fs::File::open(&file).unwrap())
                    .output()
                    .unwrap()
            };
            let out = run(&["python3", "-c", chmod]);
            assert!(out.status.success(), "{mode} {how:?}: {}", stderr(&out));
            let now = std::fs::metadata(&file).unwrap().mode() & 0o7777;
            assert_eq!(
                now, 0o644,
                "{mode} {how:?}: the host file's mode was changed"
            );
            let control = run(&["cat"]);
            assert_eq!(stdout(&control), "the caller's input\n", "{mode} {how:?}");
        }
    }
}
