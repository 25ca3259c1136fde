//! Escapes through what the sandbox shares with its caller: the terminal and the process group.
//! Run as root and rootless, under a real pseudo-terminal made by the test
//! (`fixtures/pty_harness.py`), with the caller's side checked from the host after the run.
//! Each attack has a control that must succeed.

// Test helpers outside #[test] functions panic on purpose: a failed step fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{bunker_bin, modes, shared_tempdir, stderr, stdout};
use serde_json::{json, Value};

const HARNESS: &str = include_str!("fixtures/pty_harness.py");
const PYTHON: &str = "/usr/bin/python3";
/// The rootless mode's user, as in `common::bunker_as_nobody`.
const NOBODY: [&str; 4] = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];

/// The command line of `bunker` in `mode` (as `common::modes` runs it), for a wrapper.
fn bunker_argv(mode: &str) -> Vec<String> {
    let mut argv: Vec<String> = Vec::new();
    if mode == "rootless" {
        argv.extend(NOBODY.iter().map(|s| s.to_string()));
        argv.push("--".into());
    }
    argv.push(bunker_bin().to_string_lossy().into_owned());
    argv
}

fn policy(dir: &Path, name: &str, json: Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, json.to_string()).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p.to_string_lossy().into_owned()
}

/// Runs `bunker <args>` on a terminal of the harness's, inside `sh` that leads the terminal's
/// session and says `BUNKER-DONE <exit code>` when bunker is gone, then waits for a line (so
/// the terminal is looked at while its session still exists). `input`: (trigger, text typed).
fn on_terminal(mode: &str, args: &[&str], input: &[(&str, &str)]) -> Value {
    on_terminal_with(
        mode,
        args,
        input.iter().map(|(t, s)| json!([t, s])).collect(),
    )
}

/// [`on_terminal`] with the harness's steps as they are: `[trigger, text]` or
/// `[trigger, text, [rows, cols]]` (the terminal is resized before the text is typed).
fn on_terminal_with(mode: &str, args: &[&str], mut steps: Vec<Value>) -> Value {
    let mut argv: Vec<String> = vec![
        "sh".into(),
        "-c".into(),
        "\"$@\"; echo BUNKER-DONE $?; read x".into(),
        "sh".into(),
    ];
    argv.extend(bunker_argv(mode));
    argv.extend(args.iter().map(|s| s.to_string()));
    steps.push(json!(["BUNKER-DONE", "\n"]));
    let spec = json!({"argv": argv, "input": steps});
    let out = Command::new(PYTHON)
        .args(["-c", HARNESS, &spec.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "harness failed: {}", stderr(&out));
    let run: Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("bad harness output ({e}): {}", stdout(&out)));
    assert_eq!(
        run["untyped"],
        json!([]),
        "{mode}: the run never printed a trigger; output:\n{}",
        run["output"]
    );
    run
}

/// The terminal's state at the `BUNKER-DONE` trigger (the last), which must equal the state
/// before the run in every respect the program could have changed.
fn assert_terminal_unchanged(what: &str, run: &Value) {
    let before = &run["before"];
    let after = run["at_trigger"].as_array().unwrap().last().unwrap();
    for key in [
        "termios",
        "echo",
        "icanon",
        "nonblock",
        "ldisc",
        "foreground",
    ] {
        assert_eq!(
            before[key], after[key],
            "{what}: the caller's terminal changed ({key}): before {before}, after {after}\n\
             output:\n{}",
            run["output"]
        );
    }
    assert_eq!(before["nonblock"], false, "{what}: {before}");
    assert_eq!(before["ldisc"], 0, "{what}: {before}");
}

/// The JSON the program printed after `RESULT `.
fn results(what: &str, output: &str) -> Value {
    let line = output
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r.trim().to_string()))
        .unwrap_or_else(|| panic!("{what}: no RESULT line in:\n{output}"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: bad RESULT {line}: {e}"))
}

/// The report bunker printed on the terminal (its stderr).
fn terminal_report(what: &str, output: &str) -> Value {
    let start = output
        .rfind("{\"status\"")
        .unwrap_or_else(|| panic!("{what}: no report in:\n{output}"));
    let line = output[start..].lines().next().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: bad report {line}: {e}"))
}

/// Attacks on fd 0 when it is (or was) the caller's terminal; `try(name, f)` records "ok" or
/// the errno's name.
const TERMINAL_ATTACKS: &str = r#"
import errno, fcntl, json, os, struct, sys, termios
res = {}
def attempt(name, f):
    try:
        f()
        res[name] = "ok"
    except (OSError, termios.error) as e:
        code = e.errno if isinstance(e, OSError) else e.args[0]
        res[name] = errno.errorcode.get(code, str(code))
def echo_off():
    a = termios.tcgetattr(0)
    a[3] &= ~termios.ECHO
    termios.tcsetattr(0, termios.TCSANOW, a)
def nonblock():
    flags = fcntl.fcntl(0, fcntl.F_GETFL)
    fcntl.fcntl(0, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    # Back, so output to a pty sharing the open file does not fail with EAGAIN.
    assert fcntl.fcntl(0, fcntl.F_SETFL, flags) == 0
res["isatty"] = [os.isatty(n) for n in range(3)]
res["fd0"] = os.readlink("/proc/self/fd/0")
print("READY", flush=True)
res["line"] = sys.stdin.readline()
print("GOT-LINE", flush=True)
"#;

/// What the caller's terminal in the middle of a run may never see: the program's own writes
/// past the output cap, through any fd.
const FLOOD: usize = 2 << 20;

#[test]
fn the_callers_terminal_is_relayed_never_handed_over() {
    let dir = shared_tempdir();
    let p = policy(
        dir.path(),
        "p.json",
        json!({"extends": ["default"], "limits": {"output": "64KB", "timeout": "60s"}}),
    );
    let code = format!(
        r#"{TERMINAL_ATTACKS}
res["rest"] = sys.stdin.read()
attempt("write_fd0", lambda: os.write(0, b"X" * {FLOOD}))
attempt("echo_off", echo_off)
attempt("nonblock", nonblock)
attempt("tiocsetd_n_null", lambda: fcntl.ioctl(0, termios.TIOCSETD, struct.pack("i", 27)))
attempt("tiocspgrp", lambda: fcntl.ioctl(0, termios.TIOCSPGRP, struct.pack("i", os.getpgrp())))
attempt("open_dev_tty", lambda: os.close(os.open("/dev/tty", os.O_RDWR)))
attempt("setsid", os.setsid)
attempt("tiocsctty", lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 1))
print("RESULT " + json.dumps(res), flush=True)
os.write(1, b"Y" * {FLOOD})
"#
    );
    for (mode, _) in modes() {
        let run = on_terminal(
            mode,
            &[
                "run", "--report", "json", "--policy", &p, "--", PYTHON, "-c", &code,
            ],
            &[("READY", "typed line\n"), ("GOT-LINE", "more\n\x04")],
        );
        let output = run["output"].as_str().unwrap();
        let r = results(mode, output);
        // Controls: what is typed reaches the program, and ^D ends its input.
        assert_eq!(r["line"], "typed line\n", "{mode}: {r}");
        assert_eq!(r["rest"], "more\n", "{mode}: {r}");
        assert!(
            r["fd0"].as_str().unwrap().starts_with("pipe:"),
            "{mode}: {r}"
        );
        assert_eq!(r["isatty"], json!([false, false, false]), "{mode}: {r}");
        // The attacks: fd 0 is the relay's pipe, not a terminal, and there is no other.
        for (name, want) in [
            ("write_fd0", "EBADF"),
            ("echo_off", "ENOTTY"),
            ("tiocsetd_n_null", "ENOTTY"),
            ("tiocspgrp", "ENOTTY"),
            ("tiocsctty", "ENOTTY"),
            // Control: a new session is allowed, it just has no terminal to take.
            ("setsid", "ok"),
            // Allowed, on the pipe: the caller's terminal keeps its flags (checked below).
            ("nonblock", "ok"),
        ] {
            assert_eq!(r[name], want, "{mode}: {name}: {r}");
        }
        assert_ne!(r["open_dev_tty"], "ok", "{mode}: {r}");
        // Every byte the program wrote went through the output cap.
        let report = terminal_report(mode, output);
        assert_eq!(report["stdout"]["truncated"], true, "{mode}: {report}");
        let seen = run["output_bytes"].as_u64().unwrap();
        assert!(
            seen < 64_000 + 32_000,
            "{mode}: {seen} bytes reached the terminal past a 64 kB output cap"
        );
        assert_terminal_unchanged(mode, &run);
    }
}

#[test]
fn with_kernel_tty_the_program_gets_a_pty_of_bunkers_and_the_terminal_comes_back() {
    let dir = shared_tempdir();
    let p = policy(
        dir.path(),
        "p.json",
        json!({"extends": ["default"], "kernel": {"tty": true},
               "limits": {"output": "64KB", "timeout": "60s"}}),
    );
    let code = format!(
        r#"{TERMINAL_ATTACKS}
res["size"] = list(os.get_terminal_size(0))
res["own_session"] = os.getsid(0) == os.getpid() and os.tcgetpgrp(0) == os.getpgrp()
# Controls: the pty is the program's to change; the caller's terminal is not (checked outside).
attempt("echo_off", echo_off)
attempt("nonblock", nonblock)
attempt("tiocspgrp", lambda: fcntl.ioctl(0, termios.TIOCSPGRP, struct.pack("i", os.getpgrp())))
print("RESULT " + json.dumps(res), flush=True)
os.write(0, b"X" * {FLOOD})
# Last: N_NULL refuses output on the pty from here on.
fcntl.ioctl(0, termios.TIOCSETD, struct.pack("i", 27))
"#
    );
    for (mode, _) in modes() {
        let run = on_terminal(
            mode,
            &[
                "run", "--report", "json", "--policy", &p, "--", PYTHON, "-c", &code,
            ],
            &[("READY", "typed line\r")],
        );
        let output = run["output"].as_str().unwrap();
        let r = results(mode, output);
        assert_eq!(r["isatty"], json!([true, true, true]), "{mode}: {r}");
        assert_eq!(r["own_session"], true, "{mode}: {r}");
        // A slave of the host's devpts; rootless reopened through a detached read-only clone
        // of /dev/pts, whose path is then relative to the clone (`/<n>`).
        let fd0 = r["fd0"].as_str().unwrap();
        let number = match mode {
            "root" => fd0.strip_prefix("/dev/pts/"),
            _ => fd0.strip_prefix('/'),
        };
        assert!(
            number.is_some_and(|n| n.parse::<u32>().is_ok()),
            "{mode}: {r}"
        );
        // The harness's terminal is 97 columns by 31 rows: passed to bunker's pty.
        assert_eq!(r["size"], json!([97, 31]), "{mode}: {r}");
        // Typed in raw mode, carried by bunker's pty (its ICRNL turns the return into \n).
        assert_eq!(r["line"], "typed line\n", "{mode}: {r}");
        for name in ["echo_off", "nonblock", "tiocspgrp"] {
            assert_eq!(r[name], "ok", "{mode}: {name}: {r}");
        }
        // While the program ran, the caller's terminal was raw: keys went to the pty as typed.
        let during = &run["at_trigger"][0];
        assert_eq!(
            (&during["echo"], &during["icanon"]),
            (&json!(false), &json!(false)),
            "{mode}: {during}"
        );
        // The write to fd 0 came out of the pty into the output cap.
        let report = terminal_report(mode, output);
        assert_eq!(report["stdout"]["truncated"], true, "{mode}: {report}");
        let seen = run["output_bytes"].as_u64().unwrap();
        assert!(
            seen < 64_000 + 32_000,
            "{mode}: {seen} bytes reached the terminal"
        );
        assert_terminal_unchanged(mode, &run);
    }
}

#[test]
fn the_terminal_comes_back_after_a_timeout_or_a_setup_error_and_ctrl_c_reaches_the_program() {
    let dir = shared_tempdir();
    let timeout = policy(
        dir.path(),
        "timeout.json",
        json!({"extends": ["default"], "kernel": {"tty": true}, "limits": {"timeout": "2s"}}),
    );
    let long = policy(
        dir.path(),
        "long.json",
        json!({"extends": ["default"], "kernel": {"tty": true}, "limits": {"timeout": "60s"}}),
    );
    let code = "import time; print('READY', flush=True); time.sleep(600)";
    for (mode, _) in modes() {
        let what = format!("{mode}, timeout");
        let run = on_terminal(
            mode,
            &[
                "run", "--report", "json", "--policy", &timeout, "--", PYTHON, "-c", code,
            ],
            &[],
        );
        let r = terminal_report(&what, run["output"].as_str().unwrap());
        assert_eq!(r["status"], "timeout", "{what}: {r}");
        assert_terminal_unchanged(&what, &run);

        // A setup error, after the terminal went raw: it comes back too.
        let what = format!("{mode}, setup error");
        let run = on_terminal(
            mode,
            &[
                "run",
                "--report",
                "json",
                "--policy",
                &long,
                "--cwd",
                "/nonexistent",
                "--",
            ]
            .into_iter()
            .chain([PYTHON, "-c", code])
            .collect::<Vec<_>>(),
            &[],
        );
        let r = terminal_report(&what, run["output"].as_str().unwrap());
        assert_eq!(r["status"], "setup_error", "{what}: {r}");
        assert_terminal_unchanged(&what, &run);

        // ^C, typed into the raw terminal, is the pty's interrupt key: SIGINT to the program,
        // long before the timeout.
        let what = format!("{mode}, ^C");
        let run = on_terminal(
            mode,
            &[
                "run", "--report", "json", "--policy", &long, "--", PYTHON, "-c", code,
            ],
            &[("READY", "\x03")],
        );
        let r = terminal_report(&what, run["output"].as_str().unwrap());
        // Python ends an unhandled KeyboardInterrupt by SIGINT.
        assert_eq!(r["status"], "signal", "{what}: {r}");
        assert_eq!(r["signal"], 2, "{what}: {r}");
        assert!(
            run["output"]
                .as_str()
                .unwrap()
                .contains("KeyboardInterrupt"),
            "{what}: {}",
            run["output"]
        );
        assert_terminal_unchanged(&what, &run);
    }
}

#[test]
fn a_resized_terminal_resizes_bunkers_pty() {
    let dir = shared_tempdir();
    let p = policy(
        dir.path(),
        "p.json",
        json!({"extends": ["default"], "kernel": {"tty": true}, "limits": {"timeout": "60s"}}),
    );
    let code = "import os, signal\n\
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGWINCH})\n\
                print('READY', tuple(os.get_terminal_size(0)), flush=True)\n\
                signal.sigwait({signal.SIGWINCH})\n\
                print('RESIZED', tuple(os.get_terminal_size(0)), flush=True)";
    for (mode, _) in modes() {
        // Typed nothing: the resize alone must reach the program, as SIGWINCH and a new size.
        let run = on_terminal_with(
            mode,
            &["run", "--policy", &p, "--", PYTHON, "-c", code],
            vec![json!(["READY", "", [40, 120]])],
        );
        let output = run["output"].as_str().unwrap();
        assert!(output.contains("READY (97, 31)"), "{mode}: {output}");
        assert!(output.contains("RESIZED (120, 40)"), "{mode}: {output}");
        assert_terminal_unchanged(mode, &run);
    }
}

#[test]
fn pipes_files_and_sockets_as_stdin_keep_working() {
    let dir = shared_tempdir();
    let data = dir.path().join("data.txt");
    std::fs::write(&data, "0123456789").unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (mode, bunker) in modes() {
        // A pipe: passed on as it is, to end of file.
        let mut child = bunker()
            .args(["run", "--", PYTHON, "-c"])
            .arg("import os, sys; print(os.readlink('/proc/self/fd/0')[:5], sys.stdin.read())")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"piped").unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(stdout(&out), "pipe: piped\n", "{mode}: {}", stderr(&out));

        // A regular file: passed on, so seeking works.
        let out = bunker()
            .args(["run", "--", PYTHON, "-c"])
            .arg("import os; os.lseek(0, 4, 0); print(os.read(0, 100).decode())")
            .stdin(std::fs::File::open(&data).unwrap())
            .output()
            .unwrap();
        assert_eq!(stdout(&out), "456789\n", "{mode}: {}", stderr(&out));

        // A socket: the program could write through it, so it gets the bytes through a pipe.
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        (&ours).write_all(b"over a socket").unwrap();
        ours.shutdown(std::net::Shutdown::Write).unwrap();
        let out = bunker()
            .args(["run", "--", PYTHON, "-c"])
            .arg(
                "import os, sys\n\
                 print(os.readlink('/proc/self/fd/0')[:5], sys.stdin.read())\n\
                 try:\n    os.write(0, b'back to the caller')\nexcept OSError as e:\n    \
                 print(e.errno == 9)",
            )
            .stdin(std::os::fd::OwnedFd::from(theirs))
            .output()
            .unwrap();
        assert_eq!(
            stdout(&out),
            "pipe: over a socket\nTrue\n",
            "{mode}: {}",
            stderr(&out)
        );
        let mut back = Vec::new();
        (&ours).read_to_end(&mut back).unwrap();
        assert_eq!(
            back, b"",
            "{mode}: the program wrote to the caller's socket"
        );
    }
}

/// Priority, I/O-priority and signal calls aimed at the caller's process group and user, from
/// inside, once a line on stdin says the host has looked; then it waits for end of file, so the
/// host can look again while it runs.
const GROUP_ATTACKS: &str = r#"
import ctypes, errno, json, os, signal, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
res = {}
def call(name, f):
    ctypes.set_errno(0)
    r = f()
    e = ctypes.get_errno()
    res[name] = "ok" if r != -1 else errno.errorcode.get(e, str(e))
PRIO_PROCESS, PRIO_PGRP, PRIO_USER = 0, 1, 2
WHO_PROCESS, WHO_PGRP, WHO_USER = 1, 2, 3
IDLE = 3 << 13
SYS_ioprio_set, SYS_ioprio_get = 251, 252
host_pids = [int(p) for p in sys.argv[1:]]
sys.stdin.readline()
call("prio_pgrp", lambda: libc.setpriority(PRIO_PGRP, 0, 19))
call("prio_user", lambda: libc.setpriority(PRIO_USER, 0, 19))
call("prio_process", lambda: libc.setpriority(PRIO_PROCESS, 0, 19))
for i, pid in enumerate(host_pids):
    call(f"prio_host_pid_{i}", lambda: libc.setpriority(PRIO_PROCESS, pid, 19))
    call(f"ioprio_host_pid_{i}", lambda: libc.syscall(SYS_ioprio_set, WHO_PROCESS, pid, IDLE))
call("ioprio_pgrp", lambda: libc.syscall(SYS_ioprio_set, WHO_PGRP, 0, IDLE))
call("ioprio_user", lambda: libc.syscall(SYS_ioprio_set, WHO_USER, 0, IDLE))
call("ioprio_process", lambda: libc.syscall(SYS_ioprio_set, WHO_PROCESS, 0, IDLE))
# The scheduler autogroup (a session's): its nice value is the whole group's.
try:
    res["autogroup"] = (open("/proc/self/autogroup").read().split() or [None])[0]
except OSError:
    res["autogroup"] = None
try:
    with open("/proc/self/autogroup", "w") as f:
        f.write("19")
    res["autogroup_nice"] = "ok"
except OSError as e:
    res["autogroup_nice"] = errno.errorcode.get(e.errno, str(e.errno))
# Controls: the calls took effect inside.
res["nice_inside"] = os.getpriority(os.PRIO_PROCESS, 0)
res["ioprio_inside"] = libc.syscall(SYS_ioprio_get, WHO_PROCESS, 0)
# A handler (not SIG_IGN, which a child would inherit) keeps the program alive; a child with
# the default action dies of each group signal: the controls.
signal.signal(signal.SIGUSR1, lambda *a: None)
def group_kill(name, target):
    child = subprocess.Popen(["sleep", "60"])
    call(name, lambda: libc.kill(target, signal.SIGUSR1))
    try:
        res[name + "_reached_child"] = child.wait(timeout=20) == -signal.SIGUSR1
    except subprocess.TimeoutExpired:
        child.kill()
        res[name + "_reached_child"] = False
group_kill("kill_0", 0)
group_kill("kill_own_pgrp", -os.getpgrp())
group_kill("kill_minus_1", -1)
for i, pid in enumerate(host_pids):
    call(f"kill_host_pid_{i}", lambda: libc.kill(pid, signal.SIGUSR1))
    call(f"kill_host_pgrp_{i}", lambda: libc.kill(-pid, signal.SIGUSR1))
print("RESULT " + json.dumps(res), flush=True)
sys.stdin.read()
"#;

/// Nice value (field 19 of /proc/PID/stat), I/O priority (`ionice -p`) and scheduler
/// autogroup (`/proc/PID/autogroup`, when the kernel has them) of a host process.
fn priority(pid: u32) -> (i64, String, Option<String>) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("process {pid} is gone: {e}"));
    let nice = stat
        .rsplit(") ")
        .next()
        .unwrap()
        .split_whitespace()
        .nth(16)
        .unwrap();
    let io = Command::new("ionice")
        .args(["-p", &pid.to_string()])
        .output()
        .unwrap();
    assert!(io.status.success(), "ionice: {}", stderr(&io));
    // A process in the kernel's default autogroup (its session's leader never called setsid,
    // as under some CI runners) reads an empty file: it has no autogroup to compare.
    let autogroup = std::fs::read_to_string(format!("/proc/{pid}/autogroup"))
        .ok()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty());
    (
        nice.parse().unwrap(),
        stdout(&io).trim().to_string(),
        autogroup,
    )
}

#[test]
fn process_group_and_user_calls_do_not_reach_host_processes() {
    for (mode, _) in modes() {
        // A process of the sandbox's host uid (65534 in both modes: as root the range of one id
        // below, the hardest case) in bunker's process group, beside bunker itself: `sh` starts
        // it, then becomes bunker.
        let bystander = format!(
            "{} -- {PYTHON} -c 'import time; time.sleep(120)' & echo $!; exec \"$@\"",
            NOBODY.join(" ")
        );
        let mut argv = bunker_argv(mode);
        let test_pid = std::process::id();
        argv.extend(["run", "--", PYTHON, "-c", GROUP_ATTACKS].map(String::from));
        let mut child = Command::new("sh")
            .args(["-c", &bystander, "sh"])
            .args(&argv[..])
            .arg(test_pid.to_string())
            .env("BUNKER_ROOT_IDS", "65534:1")
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let supervisor = child.id();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let bystander: u32 = lines.next().unwrap().unwrap().trim().parse().unwrap();
        let watched = [
            ("supervisor", supervisor),
            ("bystander", bystander),
            ("test", test_pid),
        ];
        let before: Vec<_> = watched.iter().map(|(_, p)| priority(*p)).collect();
        let mut go = child.stdin.take().unwrap();
        go.write_all(b"go\n").unwrap();
        // The host pids, passed as arguments, are the program's to aim at too.
        let result = lines
            .find_map(|l| {
                l.ok()
                    .and_then(|l| l.strip_prefix("RESULT ").map(String::from))
            })
            .unwrap_or_else(|| panic!("{mode}: no RESULT from the program"));
        let after: Vec<_> = watched.iter().map(|(_, p)| priority(*p)).collect();
        drop(go);
        let status = child.wait().unwrap();
        let bystander_alive = Path::new(&format!("/proc/{bystander}")).exists();
        let _ = Command::new("kill").arg(bystander.to_string()).status();
        let r: Value = serde_json::from_str(&result).unwrap();
        for (((name, pid), b), a) in watched.iter().zip(&before).zip(&after) {
            assert_eq!(b, a, "{mode}: the {name} (pid {pid}) was reniced: {r}");
        }
        assert!(
            bystander_alive,
            "{mode}: the bystander died of the sandbox's group signal: {r}"
        );
        assert!(status.success(), "{mode}: bunker ended with {status}: {r}");
        // Controls: inside the sandbox each call worked.
        for name in [
            "prio_pgrp",
            "prio_user",
            "prio_process",
            "ioprio_pgrp",
            "ioprio_user",
            "ioprio_process",
            "kill_0",
            "kill_own_pgrp",
            "kill_minus_1",
        ] {
            assert_eq!(r[name], "ok", "{mode}: {name}: {r}");
        }
        assert_eq!(r["nice_inside"], 19, "{mode}: {r}");
        assert_eq!(r["ioprio_inside"], 3 << 13, "{mode}: {r}");
        // The sandbox is a session of its own, so its autogroup is too: whatever nice value the
        // program may give it is not bunker's (checked above).
        if let Some(host) = &before[0].2 {
            let host_group = host.split_whitespace().next().unwrap();
            assert_ne!(
                r["autogroup"], host_group,
                "{mode}: shares bunker's autogroup: {r}"
            );
        }
        for name in ["kill_0", "kill_own_pgrp", "kill_minus_1"] {
            assert_eq!(
                r[format!("{name}_reached_child")],
                true,
                "{mode}: {name}: {r}"
            );
        }
        // The test's own (host) pid names nothing inside the sandbox's pid namespace.
        for call in [
            "prio_host_pid",
            "ioprio_host_pid",
            "kill_host_pid",
            "kill_host_pgrp",
        ] {
            assert_eq!(r[format!("{call}_0")], "ESRCH", "{mode}: {call}: {r}");
        }
    }
}

/// A file on stdin that the sandbox's host uid owns (the caller's own file, rootless) or may
/// write is not handed over: with a read-only descriptor its owner could still `fchmod` it
/// (0600 → 0666, open to every host user), and anyone who may write it could set its times and
/// `user.*` attributes, outside every grant. The program gets its bytes through bunker's pipe.
/// Checked from the host: mode, times and xattrs unchanged. Control: the program reads the
/// bytes, and a file it cannot change still arrives as the same open file (seekable).
#[test]
fn a_stdin_file_the_sandbox_could_change_is_relayed_not_handed_over() {
    let code = "import os, sys\n\
                print('KIND', os.readlink('/proc/self/fd/0')[:5])\n\
                for what, f in [('fchmod', lambda: os.fchmod(0, 0o666)),\n\
                \x20               ('setxattr', lambda: os.setxattr(0, 'user.planted', b'x')),\n\
                \x20               ('futimens', lambda: os.utime(0, (0, 0)))]:\n\
                \x20   try:\n\
                \x20       f()\n\
                \x20       print('ESCAPED', what)\n\
                \x20   except OSError as e:\n\
                \x20       print('BLOCKED', what, e)\n\
                print('READ', sys.stdin.read().strip())\n";
    let dir = shared_tempdir();
    for (mode, bunker) in modes() {
        // Owned by the sandbox's host uid (nobody rootless; as root, the one id of the range
        // given), private; and root's own file that every user may write.
        let sandbox_uid = if mode == "root" { 0x7200_0002 } else { 65534 };
        for (name, owner, bits) in [("owned", sandbox_uid, 0o600), ("writable", 0, 0o646)] {
            let path = dir.path().join(format!("{mode}-{name}"));
            std::fs::write(&path, "private\n").unwrap();
            std::os::unix::fs::chown(&path, Some(owner), Some(owner)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bits)).unwrap();
            let before = std::fs::metadata(&path).unwrap();
            let out = bunker()
                .env("BUNKER_ROOT_IDS", format!("{sandbox_uid}:1"))
                .args(["run", "--", PYTHON, "-c", code])
                .stdin(std::fs::File::open(&path).unwrap())
                .output()
                .unwrap();
            let text = stdout(&out);
            let context = format!("{mode} {name}: {text}{}", stderr(&out));
            assert!(text.contains("READ private"), "control: {context}");
            assert!(text.contains("KIND pipe:"), "{context}");
            let after = std::fs::metadata(&path).unwrap();
            assert_eq!(
                after.mode(),
                before.mode(),
                "mode changed on the host; {context}"
            );
            assert_eq!(
                after.mtime(),
                before.mtime(),
                "times changed on the host; {context}"
            );
            let xattrs = Command::new("/usr/bin/python3")
                .args(["-c", "import os, sys; print(os.listxattr(sys.argv[1]))"])
                .arg(&path)
                .output()
                .unwrap();
            assert_eq!(
                stdout(&xattrs),
                "[]\n",
                "xattr planted on the host; {context}"
            );
        }
    }
}

/// Runs `argv` on a pty of its own; once the program prints `TRIED`, looks at the host's
/// `/dev/pts/<MINOR>` (the minor the program printed) and types a line. Prints the host's view
/// of that pty as `HOST-MODE <octal>`, then everything the terminal showed.
const PTS_DRIVER: &str = r#"
import json, os, pty, re, sys, time
argv = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
out, looked, deadline = b"", False, time.time() + 60
while time.time() < deadline:
    try:
        d = os.read(fd, 4096)
    except OSError:
        break
    if not d:
        break
    out += d
    m = re.search(rb"MINOR (\d+)", out)
    if m and b"TRIED" in out and not looked:
        looked = True
        print("HOST-MODE %o" % (os.stat("/dev/pts/" + m.group(1).decode()).st_mode & 0o7777))
        os.write(fd, b"go\r")
os.waitpid(pid, 0)
print(out.decode(errors="replace"))
"#;

/// With `kernel.tty`, the pty's slave is bunker's, on the host's devpts: rootless its inode
/// belongs to the caller, so the program (the same uid) could `fchmod` its fd 0 to 0666 and any
/// host user could then open `/dev/pts/N`, read the keys the caller types for the program and
/// write to it. Init hands the program the slave reopened through a read-only clone of
/// /dev/pts (EROFS). Checked from the host while the run goes on. Control: the program reads
/// the line typed after the attempt.
#[test]
fn with_kernel_tty_the_program_cannot_open_its_pty_to_other_host_users() {
    let dir = shared_tempdir();
    let p = policy(
        dir.path(),
        "p.json",
        json!({"extends": ["default"], "kernel": {"tty": true}, "limits": {"timeout": "60s"}}),
    );
    let code = "import os, sys\n\
                print('MINOR', os.minor(os.fstat(0).st_rdev), flush=True)\n\
                try:\n\
                \x20   os.fchmod(0, 0o666)\n\
                \x20   print('ESCAPED fchmod', flush=True)\n\
                except OSError as e:\n\
                \x20   print('BLOCKED fchmod', e, flush=True)\n\
                print('TRIED', flush=True)\n\
                print('GOT', sys.stdin.readline().strip(), flush=True)\n";
    for (mode, _) in modes() {
        let mut argv = bunker_argv(mode);
        argv.extend(["run", "-q", "--policy", &p, "--", PYTHON, "-c", code].map(String::from));
        let out = Command::new(PYTHON)
            .args(["-c", PTS_DRIVER, &serde_json::to_string(&argv).unwrap()])
            .output()
            .unwrap();
        let text = stdout(&out);
        let context = format!("{mode}: {text}{}", stderr(&out));
        assert!(text.contains("GOT go"), "control: {context}");
        let host_mode = text
            .lines()
            .find_map(|l| l.strip_prefix("HOST-MODE "))
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or_else(|| panic!("the driver never looked; {context}"));
        assert_eq!(
            host_mode & 0o006,
            0,
            "{mode}: other host users may open the program's pty (mode {host_mode:o}); {context}"
        );
    }
}
