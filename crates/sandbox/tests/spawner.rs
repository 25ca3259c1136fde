//! The fork server end to end: the spawner is forked first (this binary has no libtest
//! harness, whose threads would make the fork refused), then real programs run in real
//! sandboxes it builds (asked for on a tokio runtime started after the fork, as the daemon
//! does), and this process — init's parent through `CLONE_PARENT` — supervises them with the
//! blocking driver. As root, the same checks then run again rootless, in a copy
//! of this binary started as nobody.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::process::Command;

use bunker_api::{ApiError, ErrorCode};
use bunker_policy::Policy;
use bunker_sandbox::host::HostContext;
use bunker_sandbox::spawn::Sandbox;
use bunker_sandbox::spawner::{SpawnRequest, Spawner};
use bunker_sandbox::supervise;
use bunker_sandbox::Status;

const TEST_NAME: &str = "spawner_round_trip";
const ROOTLESS_ENV: &str = "BUNKER_SPAWNER_TEST_ROOTLESS";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("{TEST_NAME}: test");
        }
        return;
    }
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !TEST_NAME.contains(a.as_str()))
    {
        return;
    }
    // First, while this process is single-threaded.
    let spawner = Spawner::start().expect("start the spawner");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let spawn = |request, stdin| runtime.block_on(spawner.spawn(request, stdin));
    round_trip(&spawner, &spawn);
    a_dropped_caller_gets_nothing_and_leaks_nothing(&spawner, &runtime);
    prepared_like_cold(&spawner, &runtime);
    let spawner_pid = spawner.pid();
    // A spawner that died answers with an error, not a hang.
    bunker_sys::event::kill(spawner_pid, libc::SIGKILL).unwrap();
    let policy = bunker_policy::builtin("default").unwrap();
    let (late, _lease) = request(&policy, &["/bin/true"]);
    let error = spawn(late, None).unwrap_err();
    assert_eq!(error.code, ErrorCode::InternalError, "{error:?}");
    drop(runtime);
    drop(spawner);
    assert!(
        !std::path::Path::new(&format!("/proc/{spawner_pid}")).exists(),
        "the spawner outlived its socket"
    );
    if bunker_sys::process::euid() == 0 && std::env::var_os(ROOTLESS_ENV).is_none() {
        rootless_copy();
    }
    println!("test {TEST_NAME} ... ok");
}

/// A request as this process's; as root with host ids leased for it alone (the lease lives as
/// long as the returned context).
fn request(policy: &Policy, argv: &[&str]) -> (SpawnRequest, HostContext) {
    let host = HostContext::of_this_process().unwrap();
    let request = SpawnRequest {
        policy: policy.clone(),
        argv: argv.iter().map(OsString::from).collect(),
        cwd: None,
        env: host.env.clone(),
        caller_cwd: host.cwd.clone(),
        id_mode: host.id_mode,
    };
    (request, host)
}

/// The parent pid /proc gives for `pid`.
fn parent_of(pid: i32) -> i32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("PPid:")).unwrap();
    line["PPid:".len()..].trim().parse().unwrap()
}

/// This process's children, as /proc lists them.
fn children() -> Vec<i32> {
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// [`Spawner::spawn`], run to its end.
type Spawn<'a> = dyn Fn(SpawnRequest, Option<OwnedFd>) -> Result<Sandbox, ApiError> + Sync + 'a;

fn round_trip(spawner: &Spawner, spawn: &Spawn<'_>) {
    let policy = bunker_policy::builtin("default").unwrap();

    // A real program; its init is our child (CLONE_PARENT), not the spawner's. It waits for a
    // line on its stdin, so it is alive while we look.
    let (hello, _lease) = request(
        &policy,
        &[
            "/bin/sh",
            "-c",
            "read line; echo \"$line from the spawner\"",
        ],
    );
    let (read, write) = pipe();
    let sandbox = spawn(hello, Some(read)).unwrap();
    let init = sandbox.supervised.init_pid;
    assert_eq!(parent_of(init), std::process::id() as i32);
    assert!(children().contains(&init));
    if bunker_sys::process::euid() == 0 {
        // The default policy's limits need a cgroup: it is named after us, the supervisor,
        // not after the spawner that made it.
        let cgroups = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
        let ours = format!("/bunker-{}-", std::process::id());
        assert!(cgroups.contains(&ours), "{cgroups}");
    }
    std::fs::File::from(write).write_all(b"hello\n").unwrap();
    let result = supervise::supervise(sandbox.supervised, &policy).unwrap();
    drop(sandbox.lifeline);
    assert_eq!(result.status, Status::Ok, "{result:?}");
    assert_eq!(stdout(&result), "hello from the spawner\n");

    // The program's stdin is the descriptor handed over.
    let (read, write) = pipe();
    std::fs::File::from(write)
        .write_all(b"bytes through the spawner")
        .unwrap();
    let (upper, _lease) = request(
        &policy,
        &[
            "python3",
            "-c",
            "import sys; print(sys.stdin.read().upper())",
        ],
    );
    let sandbox = spawn(upper, Some(read)).unwrap();
    let result = supervise::supervise(sandbox.supervised, &policy).unwrap();
    assert_eq!(result.status, Status::Ok, "{result:?}");
    assert_eq!(stdout(&result), "BYTES THROUGH THE SPAWNER\n");

    // From many threads at once: each gets its own sandbox back.
    std::thread::scope(|s| {
        for n in 0..4 {
            let policy = &policy;
            s.spawn(move || {
                let word = format!("thread {n}");
                let (echo, _lease) = request(policy, &["/bin/echo", &word]);
                let sandbox = spawn(echo, None).unwrap();
                let result = supervise::supervise(sandbox.supervised, policy).unwrap();
                assert_eq!(stdout(&result), format!("{word}\n"));
            });
        }
    });

    // The handle's lifeline is the sandbox's life: dropped, the sandbox ends (a daemon that
    // loses a handle, or a spawner killed before handing it over, leaves nothing running).
    let (waiting, _lease) = request(&policy, &["/bin/sh", "-c", "read line; echo survived"]);
    let (read, write) = pipe();
    let sandbox = spawn(waiting, Some(read)).unwrap();
    drop(sandbox.lifeline);
    let gone = bunker_sys::event::poll(
        &[std::os::fd::AsFd::as_fd(&sandbox.supervised.pidfd)],
        Some(std::time::Duration::from_secs(30)),
    )
    .unwrap();
    assert!(gone[0].readable, "the sandbox outlived its lifeline");
    let result = supervise::supervise(sandbox.supervised, &policy).unwrap();
    assert_eq!(stdout(&result), "", "{result:?}");
    drop(write);

    // A step that fails inside init, after the clone: the error comes back, and the dead init,
    // which only we can reap, is reaped.
    let (mut bad_cwd, _lease) = request(&policy, &["/bin/true"]);
    bad_cwd.cwd = Some("/no/such/dir".into());
    let error = spawn(bad_cwd, None).unwrap_err();
    assert_eq!(error.code, ErrorCode::SetupFailed, "{error:?}");
    assert!(error.message.contains("/no/such/dir"), "{error:?}");
    assert_eq!(children(), vec![spawner.pid()], "an init was left unreaped");

    // A request larger than one message: refused, saying so; the spawner goes on serving.
    let huge = "x".repeat(bunker_sandbox::spawner::MAX_SPAWN_MESSAGE);
    let (huge, _lease) = request(&policy, &["/bin/echo", &huge]);
    let error = spawn(huge, None).unwrap_err();
    assert_eq!(error.code, ErrorCode::RequestInvalid);
    assert!(
        error.message.contains("more than the spawner takes"),
        "{error:?}"
    );
    let (still, _lease) = request(&policy, &["/bin/echo", "still here"]);
    let sandbox = spawn(still, None).unwrap();
    let result = supervise::supervise(sandbox.supervised, &policy).unwrap();
    assert_eq!(stdout(&result), "still here\n");
}

/// A sandbox prepared without its program runs one handed later with the cold start's result;
/// its time counts from the program's start; unlaunched, it ends with its lifeline or handle.
fn prepared_like_cold(spawner: &Spawner, runtime: &tokio::runtime::Runtime) {
    let mut policy = bunker_policy::builtin("default").unwrap();
    policy.limits.timeout = Some(std::time::Duration::from_secs(1));
    let host = HostContext::of_this_process().unwrap();
    let cases: [&[&str]; 6] = [
        &["/bin/sh", "-c", "echo \"$0 $PATH\"; echo err >&2; pwd"],
        &["/bin/sh", "-c", "exit 3"],
        &["no-such-command-here"],
        // Landlock: the host's /etc is not writable; seccomp: no new user namespace.
        &[
            "/bin/sh",
            "-c",
            "echo x > /etc/bunker-warm; echo $?; unshare -U true; echo $?",
        ],
        &["/bin/sh", "-c", "read line; echo \"got $line\""],
        &["/bin/sleep", "5"],
    ];
    for argv in cases {
        let (cold, _lease) = request(&policy, argv);
        let (read, write) = pipe();
        std::fs::File::from(write).write_all(b"a line\n").unwrap();
        let sandbox = runtime.block_on(spawner.spawn(cold, Some(read))).unwrap();
        let cold = supervise::supervise(sandbox.supervised, &policy).unwrap();
        drop(sandbox.lifeline);

        let prepared = runtime
            .block_on(spawner.prepare(policy.clone(), host.id_mode))
            .unwrap();
        let (read, write) = pipe();
        std::fs::File::from(write).write_all(b"a line\n").unwrap();
        let program = bunker_sandbox::spawn::Program {
            argv: argv.iter().map(OsString::from).collect(),
            env: host.env.clone(),
            cwd: None,
            caller_cwd: host.cwd.clone(),
            stdin: Some(read),
            extra_fds: Vec::new(),
        };
        let sandbox = prepared.launch(&policy, program).unwrap();
        let warm = supervise::supervise(sandbox.supervised, &policy).unwrap();
        drop(sandbox.lifeline);
        let same = |r: &bunker_sandbox::RunResult| {
            (
                r.status,
                r.exit_code,
                r.signal,
                r.error_code,
                r.stdout.data.clone(),
                r.stderr.data.clone(),
                // The notes name each sandbox's cgroup, numbered.
                serde_json::to_string(&r.enforced)
                    .unwrap()
                    .replace(|c: char| c.is_ascii_digit(), ""),
            )
        };
        assert_eq!(same(&warm), same(&cold), "{argv:?}:\n{warm:?}\n{cold:?}");
    }

    // The timeout counts from the program's start: a sandbox prepared longer ago than it runs a
    // quick program to its end.
    let prepared = runtime
        .block_on(spawner.prepare(policy.clone(), host.id_mode))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let program = bunker_sandbox::spawn::Program {
        argv: vec!["/bin/true".into()],
        env: host.env.clone(),
        cwd: None,
        caller_cwd: None,
        stdin: None,
        extra_fds: Vec::new(),
    };
    let sandbox = prepared.launch(&policy, program).unwrap();
    let result = supervise::supervise(sandbox.supervised, &policy).unwrap();
    assert_eq!(result.status, Status::Ok, "{result:?}");

    // A failure once the program is known (its directory) comes back as the cold one does, and
    // the dead init is reaped.
    let prepared = runtime
        .block_on(spawner.prepare(policy.clone(), host.id_mode))
        .unwrap();
    let program = bunker_sandbox::spawn::Program {
        argv: vec!["/bin/true".into()],
        env: host.env.clone(),
        cwd: Some("/no/such/dir".into()),
        caller_cwd: None,
        stdin: None,
        extra_fds: Vec::new(),
    };
    let error = prepared.launch(&policy, program).unwrap_err();
    assert!(error.to_string().contains("/no/such/dir"), "{error}");
    assert_eq!(children(), vec![spawner.pid()], "an init was left unreaped");

    // Unlaunched: dropping the handle kills and reaps init…
    let prepared = runtime
        .block_on(spawner.prepare(policy.clone(), host.id_mode))
        .unwrap();
    let init = prepared.sandbox().unwrap().supervised.init_pid;
    assert!(children().contains(&init));
    drop(prepared);
    assert_eq!(
        children(),
        vec![spawner.pid()],
        "a dropped prepared init lives on"
    );
    // …and an idle one whose lifeline ends (its holder died) ends by itself.
    let prepared = runtime
        .block_on(spawner.prepare(policy.clone(), host.id_mode))
        .unwrap();
    let sandbox = prepared.into_transfer().unwrap();
    let (transfer, fds) = sandbox;
    let idle = bunker_sandbox::spawn::Sandbox::from_transfer(transfer, fds).unwrap();
    drop(idle.lifeline);
    let gone = bunker_sys::event::poll(
        &[std::os::fd::AsFd::as_fd(&idle.supervised.pidfd)],
        Some(std::time::Duration::from_secs(30)),
    )
    .unwrap();
    assert!(
        gone[0].readable,
        "an idle prepared sandbox outlived its lifeline"
    );
    bunker_sys::event::wait_pidfd(std::os::fd::AsFd::as_fd(&idle.supervised.pidfd), true).unwrap();
}

/// A caller dropped while its request is out (sent, its answer not yet read): the next caller
/// still gets its own sandbox, not the dropped one's, and the dropped one's sandbox is killed
/// and reaped (no child of ours is left but the spawner).
fn a_dropped_caller_gets_nothing_and_leaks_nothing(
    spawner: &Spawner,
    runtime: &tokio::runtime::Runtime,
) {
    let policy = bunker_policy::builtin("default").unwrap();
    // Alive until killed: it waits on a stdin that never ends.
    let (endless, _lease) = request(
        &policy,
        &["/bin/sh", "-c", "read line; echo the dropped one"],
    );
    let (read, write) = pipe();
    runtime.block_on(async {
        let dropped = spawner.spawn(endless, Some(read));
        tokio::pin!(dropped);
        // Polled until its request is out, then dropped: the spawner takes milliseconds to
        // start a sandbox, far more than one poll.
        tokio::select! {
            biased;
            _ = &mut dropped => panic!("a sandbox started within one poll"),
            _ = tokio::task::yield_now() => {}
        }
    });
    let (next, _lease) = request(&policy, &["/bin/echo", "the next one"]);
    let sandbox = runtime.block_on(spawner.spawn(next, None)).unwrap();
    // Were the dropped one's answer handed on, this is its sandbox: it would now end, saying so.
    drop(write);
    let result = supervise::supervise(sandbox.supervised, &policy).unwrap();
    drop(sandbox.lifeline);
    assert_eq!(stdout(&result), "the next one\n", "{result:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while children() != vec![spawner.pid()] {
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped caller's sandbox was left: children {:?}",
            children()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if bunker_sys::process::euid() == 0 {
        // Its cgroup went with it: no group named after us is left in any hierarchy.
        let ours = format!("bunker-{}-", std::process::id());
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            for entry in std::fs::read_dir(hierarchy.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                assert!(
                    !name.starts_with(&ours),
                    "cgroup {:?} was left",
                    entry.path()
                );
            }
        }
    }
}

fn stdout(result: &bunker_sandbox::RunResult) -> String {
    let data = result.stdout.data.as_ref().expect("captured stdout");
    String::from_utf8(data.to_bytes().unwrap()).unwrap()
}

fn pipe() -> (OwnedFd, OwnedFd) {
    bunker_sys::fd::pipe().unwrap()
}

/// As root: this binary again, as nobody.
fn rootless_copy() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .arg(TEST_NAME)
        .env(ROOTLESS_ENV, "1")
        .current_dir("/")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "rootless copy failed:\n{text}");
    assert!(
        text.contains("... ok"),
        "rootless copy ran nothing:\n{text}"
    );
}
