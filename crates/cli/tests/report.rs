//! What bunker says and where the report goes: `--report-fd` on every kind of descriptor,
//! `--report-file`, a failed write as an error, a report bounded in size, a report line the
//! program cannot forge, the end-of-run summary of denials and cuts, `-v` and `-q`, and the
//! best-effort warnings before the program's output. Each holds as root and rootless.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

/// A temporary directory that bunker as nobody, and the sandbox, can write into.
fn writable_tempdir() -> tempfile::TempDir {
    let d = shared_tempdir();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

/// The command line of `bunker` in `mode`, for the Python driver below (which must hand it a
/// descriptor: std's `Command` passes none but 0–2).
fn argv(mode: &str) -> Vec<String> {
    let bin = bunker_bin().display().to_string();
    match mode {
        "root" => vec![bin],
        _ => vec![
            "setpriv".into(),
            "--reuid=65534".into(),
            "--regid=65534".into(),
            "--clear-groups".into(),
            "--".into(),
            bin,
        ],
    }
}

/// Opens a descriptor of `kind`, runs bunker with `--report-fd` on it and `args`, reads what
/// arrived on it only after bunker has exited (the order that deadlocked on an unbounded
/// report), and returns bunker's exit code, stderr and the bytes read.
const FD_DRIVER: &str = r#"
import json, os, socket, subprocess, sys
kind, tmp, argv = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
def drain(r):
    """Everything waiting on the non-blocking descriptor r, up to end of file."""
    data = b""
    while True:
        try:
            chunk = os.read(r, 1 << 20)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk

if kind == "socket":
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)  # bunker must wait out a full buffer, not fail on EAGAIN
    give = theirs.fileno()
    def read():
        ours.setblocking(False)
        data = b""
        while True:
            try:
                chunk = ours.recv(1 << 20)
            except BlockingIOError:
                return data
            if not chunk:
                return data
            data += chunk
elif kind in ("pipe", "closed-pipe"):
    r, give = os.pipe()
    if kind == "closed-pipe":
        os.close(r)
    def read():
        if kind == "closed-pipe":
            return b""
        os.set_blocking(r, False)
        return drain(r)
elif kind == "fifo":
    path = os.path.join(tmp, "report.fifo")
    os.mkfifo(path)
    r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    give = os.open(path, os.O_WRONLY)
    def read():
        return drain(r)
elif kind == "file":
    path = os.path.join(tmp, "report.json")
    give = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    def read():
        return open(path, "rb").read()
argv = [a.replace("{FD}", str(give)) for a in argv]
p = subprocess.Popen(argv, pass_fds=[give], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
try:
    _, err = p.communicate(timeout=120)
except subprocess.TimeoutExpired:
    p.kill()
    _, err = p.communicate()
    print(json.dumps({"code": "hung: bunker did not exit", "stderr": err.decode(), "report": ""}))
    sys.exit(0)
print(json.dumps({"code": p.returncode, "stderr": err.decode(errors="replace"),
                  "report": read().decode(errors="replace")}))
"#;

struct FdRun {
    code: Value,
    stderr: String,
    report: String,
}

fn run_with_report_fd(mode: &str, kind: &str, args: &[&str]) -> FdRun {
    let tmp = shared_tempdir();
    let mut full = argv(mode);
    full.extend(["run", "--report-fd", "{FD}"].map(String::from));
    full.extend(args.iter().map(|a| a.to_string()));
    let out = Command::new("python3")
        .args(["-c", FD_DRIVER, kind])
        .arg(tmp.path())
        .arg(serde_json::to_string(&full).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "driver failed: {}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    FdRun {
        code: v["code"].clone(),
        stderr: v["stderr"].as_str().unwrap_or_default().to_string(),
        report: v["report"].as_str().unwrap_or_default().to_string(),
    }
}

#[test]
fn report_fd_works_on_a_socket_a_pipe_a_fifo_and_a_file() {
    for (mode, _) in modes() {
        for kind in ["socket", "pipe", "fifo", "file"] {
            let run = run_with_report_fd(mode, kind, &["--", "sh", "-c", "exit 3"]);
            assert_eq!(run.code, 3, "{mode} {kind}: {}", run.stderr);
            let line = run
                .report
                .strip_suffix('\n')
                .unwrap_or_else(|| panic!("{mode} {kind}: no report line: {:?}", run.report));
            let report: Value = serde_json::from_str(line).unwrap();
            assert_eq!(report["status"], "exit", "{mode} {kind}");
            assert_eq!(report["exit_code"], 3, "{mode} {kind}");
            assert!(!run.stderr.contains("{\"status\""), "{mode} {kind}");
        }
    }
}

#[test]
fn a_report_that_cannot_be_written_is_an_error() {
    for (mode, bunker) in modes() {
        // The reader is gone: EPIPE at the end of the run.
        let run = run_with_report_fd(mode, "closed-pipe", &["--", "true"]);
        assert_eq!(run.code, 123, "{mode}: {}", run.stderr);
        assert!(
            run.stderr.contains("cannot write the report (--report-fd")
                && run.stderr.contains("ended with ok, exit code 0"),
            "{mode}: {}",
            run.stderr
        );
        // A full disk.
        let out = bunker()
            .args(["run", "--report-file", "/dev/full", "--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(123), "{mode}: {}", stderr(&out));
        assert!(stderr(&out).contains("--report-file /dev/full"), "{mode}");
        // Destinations that cannot be opened: refused before anything runs.
        let tmp = writable_tempdir();
        let marker = tmp.path().join("ran");
        let script = format!("touch {}", marker.display());
        let missing_dir = tmp.path().join("no/such/dir/report.json");
        for flags in [
            vec!["--report-fd".to_string(), "97".to_string()],
            vec![
                "--report-file".to_string(),
                missing_dir.display().to_string(),
            ],
        ] {
            let out = bunker()
                .arg("run")
                .args(&flags)
                .args(["--allow-write", &tmp.path().display().to_string()])
                .args(["--", "sh", "-c", &script])
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(123),
                "{mode} {flags:?}: {}",
                stderr(&out)
            );
            assert!(stderr(&out).contains("nothing was run"), "{mode} {flags:?}");
            assert!(!marker.exists(), "{mode} {flags:?}: the program ran");
        }
        // The control: the same run with a destination that works.
        let file = tmp.path().join("report.json");
        let out = bunker()
            .args(["run", "--report-file", &file.display().to_string()])
            .args(["--allow-write", &tmp.path().display().to_string()])
            .args(["--", "sh", "-c", &script])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        assert!(marker.exists(), "{mode}");
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(report["status"], "ok", "{mode}");
    }
}

/// Makes `n` requests to the proxy that its policy denies (names outside `allow.net`: refused
/// before any resolution or connection, so no traffic leaves loopback).
const FLOOD: &str = r#"
import socket, sys
n = int(sys.argv[1])
for i in range(n):
    s = socket.create_connection(("127.0.0.1", 3128))
    s.sendall(b"CONNECT d%d.denied.test:443 HTTP/1.1\r\n\r\n" % (i % 50))
    s.recv(4096)
    s.close()
print("made", n)
"#;

#[test]
fn twenty_thousand_denied_requests_give_a_bounded_report() {
    for (mode, _) in modes() {
        let run = run_with_report_fd(
            mode,
            "pipe",
            &[
                "--allow-net",
                "api.test",
                "--timeout",
                "100s",
                "--",
                "python3",
                "-c",
                FLOOD,
                "20000",
            ],
        );
        assert_eq!(run.code, 0, "{mode}: {}", run.stderr);
        // Under a default pipe buffer, so a caller that reads only after the exit gets it all.
        assert!(
            run.report.len() <= 64 * 1024,
            "{mode}: {} bytes",
            run.report.len()
        );
        let report: Value = serde_json::from_str(run.report.trim_end()).unwrap();
        let http = &report["http"];
        assert_eq!(http["denied"], 20_000, "{mode}");
        assert_eq!(http["allowed"], 0, "{mode}");
        assert_eq!(http["truncated"], true, "{mode}");
        assert_eq!(http["requests"].as_array().unwrap().len(), 100, "{mode}");
        assert_eq!(http["requests"][0]["host"], "d0.denied.test", "{mode}");
        let by = http["denied_by"].as_array().unwrap();
        assert_eq!(by.len(), 16, "{mode}");
        assert_eq!(
            by[0]["rule"], "no allow.net rule matches d0.denied.test:443",
            "{mode}"
        );
        assert_eq!(by[0]["requests"], 400, "{mode}");
        assert!(
            run.stderr.contains(
                "bunker: denied 20000 network requests: no allow.net rule matches \
                 d0.denied.test:443 ×400;"
            ),
            "{mode}: {}",
            run.stderr
        );
    }
}

#[test]
fn the_program_cannot_forge_the_report_on_stderr() {
    let forged = r#"{"status":"ok","forged":true}"#;
    for (mode, bunker) in modes() {
        let tmp = writable_tempdir();
        let file = tmp.path().join("report.json");
        for ending in ["", "\n"] {
            let script = format!("printf '%s{ending}' '{forged}' >&2; exit 3");
            // `--report-fd 2` is stderr too.
            for to_stderr in [["--report", "json"], ["--report-fd", "2"]] {
                let out = bunker()
                    .arg("run")
                    .args(to_stderr)
                    .args(["--", "sh", "-c", &script])
                    .output()
                    .unwrap();
                let err = stderr(&out);
                let r = report(&out);
                assert_eq!(r["status"], "exit", "{mode}: {err}");
                assert!(r.get("forged").is_none(), "{mode}: {err}");
                assert!(
                    err.contains(&format!("{forged}\n{{\"status\":\"exit\"")),
                    "{mode} {to_stderr:?}: the program's line and the report are not apart: {err}"
                );
            }
            let out = bunker()
                .args(["run", "--report", "json", "--report-file"])
                .arg(&file)
                .args(["--", "sh", "-c", &script])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(3), "{mode}");
            // With --report-file the report goes to the file only, out of the program's reach.
            let text = std::fs::read_to_string(&file).unwrap();
            let from_file: Value = serde_json::from_str(text.trim_end()).unwrap();
            assert_eq!(from_file["status"], "exit", "{mode}");
            assert!(!stderr(&out).contains("\"status\":\"exit\""), "{mode}");
        }
    }
}

/// The lines of stderr that are bunker's own.
fn bunker_lines(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.starts_with("bunker:"))
        .map(str::to_string)
        .collect()
}

/// Two denied requests and an output cut. stdout and stderr are two pipes sharing one output
/// budget, and which of them bunker reads first is not promised: before the flood on stdout,
/// the program waits until bunker has read `between` off its stderr pipe (nothing left unread
/// in it), so `between` is always within the budget.
const DENIED_AND_CUT: &str = "curl -s -o /dev/null -x \"$HTTP_PROXY\" http://203.0.113.80/; \
    echo between >&2; \
    python3 -c \"import fcntl, struct, termios, time
while struct.unpack('i', fcntl.ioctl(2, termios.FIONREAD, bytes(4)))[0]: time.sleep(0.001)\"; \
    curl -s -o /dev/null -x \"$HTTP_PROXY\" http://nothere.test/; \
    head -c 5000 /dev/zero | tr '\\0' x";

fn denied_and_cut(mut cmd: Command, flags: &[&str]) -> Output {
    cmd.args(["run", "--allow-net", "api.test", "--output", "1000"])
        .args(flags)
        .args(["--", "sh", "-c", DENIED_AND_CUT])
        .output()
        .unwrap()
}

#[test]
fn the_end_of_a_run_says_what_was_denied_and_cut() {
    for (mode, bunker) in modes() {
        let out = denied_and_cut(bunker(), &[]);
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        let lines = bunker_lines(&out);
        assert!(
            lines.iter().any(|l| l
                == "bunker: denied 2 network requests: no allow.net rule matches \
                    203.0.113.80:80; no allow.net rule matches nothere.test:80 (-v shows each; \
                    the report lists them)"),
            "{mode}: {lines:?}"
        );
        assert!(
            lines.iter().any(|l| l
                == "bunker: stdout was cut at limits.output (1000 bytes for both streams): \
                    992 of 5000 bytes delivered"),
            "{mode}: {lines:?}"
        );
        // The summary comes after the program's output, each line on its own (best-effort
        // warnings, rootless, before it).
        let err = stderr(&out);
        let after_warnings: Vec<&str> = err
            .lines()
            .skip_while(|l| l.starts_with("bunker: warning:"))
            .collect();
        assert_eq!(after_warnings[0], "between", "{mode}: {err}");
        assert!(
            after_warnings[1..]
                .iter()
                .all(|l| l.starts_with("bunker: ")),
            "{mode}: {err}"
        );
        // stdout and stderr on one pipe (`2>&1`): the summary still starts on a line of its own
        // after the program's unfinished stdout line.
        let (mut read, write) = std::io::pipe().unwrap();
        let mut cmd = bunker();
        cmd.args(["run", "-q", "--allow-net", "api.test", "--", "sh", "-c"])
            .arg("curl -s -o /dev/null -x \"$HTTP_PROXY\" http://203.0.113.80/; printf unfinished")
            .stdout(write.try_clone().unwrap())
            .stderr(write);
        let mut child = cmd.spawn().unwrap();
        drop(cmd);
        let mut both = String::new();
        std::io::Read::read_to_string(&mut read, &mut both).unwrap();
        child.wait().unwrap();
        assert_eq!(both, "unfinished", "{mode}: -q");
        let (mut read, write) = std::io::pipe().unwrap();
        let mut cmd = bunker();
        cmd.args(["run", "--allow-net", "api.test", "--", "sh", "-c"])
            .arg("curl -s -o /dev/null -x \"$HTTP_PROXY\" http://203.0.113.80/; printf unfinished")
            .stdout(write.try_clone().unwrap())
            .stderr(write);
        let mut child = cmd.spawn().unwrap();
        drop(cmd);
        let mut both = String::new();
        std::io::Read::read_to_string(&mut read, &mut both).unwrap();
        child.wait().unwrap();
        assert!(
            both.contains("unfinished\nbunker: denied 1 network request: "),
            "{mode}: {both}"
        );
        // The case of the issue: pip's proxy tunnel refused five times, for an allowed name
        // that resolves to a documentation address.
        let out = bunker()
            .args(["run", "--allow-net", "pypi.test", "--resolve", "pypi.test:203.0.113.80"])
            .args(["--", "sh", "-c"])
            .arg("for i in 1 2 3 4 5; do curl -s -o /dev/null -x \"$HTTP_PROXY\" https://pypi.test/; done")
            .output()
            .unwrap();
        let lines = bunker_lines(&out);
        assert!(
            lines.iter().any(|l| l.starts_with(
                "bunker: denied 5 network requests: http.block_private_ips (203.0.113.80 is \
                 documentation 203.0.113.0/24;"
            ) && l.contains(") ×5 (-v shows each")),
            "{mode}: {lines:?}"
        );
        // The control: a run with nothing denied or cut says nothing.
        let quiet_run = bunker()
            .args(["run", "--", "sh", "-c", "echo fine"])
            .output()
            .unwrap();
        let said: Vec<String> = bunker_lines(&quiet_run)
            .into_iter()
            .filter(|l| !l.starts_with("bunker: warning:"))
            .collect();
        assert!(said.is_empty(), "{mode}: {said:?}");
    }
}

#[test]
fn verbose_says_each_decision_as_it_happens() {
    for (mode, bunker) in modes() {
        let out = denied_and_cut(bunker(), &["-v", "--allow-read", "/no/such/grant"]);
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().collect();
        let at = |prefix: &str| {
            lines
                .iter()
                .position(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("{mode}: no line {prefix:?} in:\n{err}"))
        };
        let enforced = at("bunker: enforced: namespaces on, filesystem on, landlock on");
        let skipped = at("bunker: note: allow.read /no/such/grant");
        let first = at("bunker: net: denied http 203.0.113.80:80: no allow.net rule matches");
        let between = at("between");
        let second = at("bunker: net: denied http nothere.test:80: no allow.net rule matches");
        let cut = at("bunker: stdout reached limits.output (1000 bytes");
        let summary = at("bunker: denied 2 network requests");
        assert!(
            enforced < first && skipped < first && first < between && between < second,
            "{mode}: not in the order they happened:\n{err}"
        );
        assert!(second < summary && cut < summary, "{mode}:\n{err}");
        // A decision said while the program's stderr line is unfinished starts a line of its own.
        let out = bunker()
            .args(["run", "-v", "--allow-net", "api.test", "--", "sh", "-c"])
            .arg(
                "printf unfinished >&2; curl -s -o /dev/null -x \"$HTTP_PROXY\" \
                 http://203.0.113.80/; echo ' line' >&2",
            )
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(
            err.contains("unfinished\nbunker: net: denied http 203.0.113.80:80:")
                && err.contains("\n line\n"),
            "{mode}: {err}"
        );
        // The control: without -v, none of the decisions.
        let plain = denied_and_cut(bunker(), &["--allow-read", "/no/such/grant"]);
        assert!(
            !stderr(&plain).contains("bunker: net:") && !stderr(&plain).contains("bunker: note:"),
            "{mode}: {}",
            stderr(&plain)
        );
    }
}

#[test]
fn quiet_silences_bunkers_own_lines() {
    for (mode, bunker) in modes() {
        let out = denied_and_cut(bunker(), &["-q"]);
        assert_eq!(out.status.code(), Some(0), "{mode}");
        assert_eq!(stderr(&out), "between\n", "{mode}");
        // Also bunker's reasons and warnings; the program's own stderr still passes, and a
        // report asked for is still written.
        let out = bunker()
            .args([
                "run",
                "-q",
                "--report",
                "json",
                "--",
                "no-such-command-here",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(127), "{mode}");
        assert!(bunker_lines(&out).is_empty(), "{mode}: {}", stderr(&out));
        assert_eq!(report(&out)["exit_code"], 127, "{mode}");
        assert_eq!(report(&out)["error_code"], "command_not_found", "{mode}");
        // The control: without -q the reason is given.
        let out = bunker()
            .args(["run", "--", "no-such-command-here"])
            .output()
            .unwrap();
        assert!(!bunker_lines(&out).is_empty(), "{mode}");
    }
}

#[test]
fn best_effort_warnings_come_once_and_before_the_programs_output() {
    let mut warned_somewhere = false;
    for (mode, bunker) in modes() {
        // The default profile's memory and pids limits are best-effort.
        let out = bunker()
            .args(["run", "--report", "json"])
            .args(["--", "sh", "-c", "echo first >&2; echo out; echo last >&2"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        let report = report(&out);
        let unenforced: Vec<&str> = ["memory", "pids"]
            .into_iter()
            .filter(|l| report["enforced"][format!("{l}_limit")] != "on")
            .collect();
        let err = stderr(&out);
        let warnings: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("bunker: warning: limits."))
            .collect();
        let expected: Vec<String> = unenforced
            .iter()
            .map(|l| format!("bunker: warning: limits.{l} is not enforced on this host"))
            .collect();
        assert_eq!(warnings.len(), expected.len(), "{mode}: once each:\n{err}");
        for (w, e) in warnings.iter().zip(&expected) {
            assert!(w.starts_with(e.as_str()), "{mode}: {w}");
        }
        let program = err.lines().position(|l| l == "first").unwrap();
        assert!(
            err.lines()
                .take(program)
                .filter(|l| l.starts_with("bunker: warning:"))
                .count()
                == warnings.len(),
            "{mode}: a warning came after the program's output:\n{err}"
        );
        warned_somewhere |= !warnings.is_empty();
    }
    // Rootless without cgroup delegation cannot enforce them: the case this test is about.
    if !warned_somewhere {
        skip("every limit is enforced in every mode here: no best-effort warning to place");
    }
}
