//! The fork server end to end: the spawner is forked first (this binary has no libtest
//! harness, whose threads would make the fork refused), then real programs run in real
//! sandboxes it builds, and this process — init's parent through `CLONE_PARENT` — supervises
//! them with the blocking driver. As root, the same checks then run again rootless, in a copy
//! of this binary started as nobody.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::process::Command;

use bunker_api::ErrorCode;
use bunker_policy::Policy;
use bunker_sandbox::host::HostContext;
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
    round_trip(&spawner);
    let spawner_pid = spawner.pid();
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

fn round_trip(spawner: &Spawner) {
    let policy = bunker_policy::builtin("default").unwrap();

    // A real program; its init is our child (CLONE_PARENT), not the spawner's.
    let (hello, _lease) = request(&policy, &["/bin/echo", "hello from the spawner"]);
    let sandbox = spawner.spawn(hello, None).unwrap();
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
    let sandbox = spawner.spawn(upper, Some(read)).unwrap();
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
                let sandbox = spawner.spawn(echo, None).unwrap();
                let result = supervise::supervise(sandbox.supervised, policy).unwrap();
                assert_eq!(stdout(&result), format!("{word}\n"));
            });
        }
    });

    // A step that fails inside init, after the clone: the error comes back, and the dead init,
    // which only we can reap, is reaped.
    let (mut bad_cwd, _lease) = request(&policy, &["/bin/true"]);
    bad_cwd.cwd = Some("/no/such/dir".into());
    let error = spawner.spawn(bad_cwd, None).unwrap_err();
    assert_eq!(error.code, ErrorCode::SetupFailed, "{error:?}");
    assert!(error.message.contains("/no/such/dir"), "{error:?}");
    assert_eq!(children(), vec![spawner.pid()], "an init was left unreaped");

    // A request larger than one message: refused, saying so; the spawner goes on serving.
    let huge = "x".repeat(bunker_sandbox::spawner::MAX_SPAWN_MESSAGE);
    let (huge, _lease) = request(&policy, &["/bin/echo", &huge]);
    let error = spawner.spawn(huge, None).unwrap_err();
    assert_eq!(error.code, ErrorCode::RequestInvalid);
    assert!(
        error.message.contains("more than the spawner takes"),
        "{error:?}"
    );
    let (still, _lease) = request(&policy, &["/bin/echo", "still here"]);
    let sandbox = spawner.spawn(still, None).unwrap();
    let result = supervise::supervise(sandbox.supervised, &policy).unwrap();
    assert_eq!(stdout(&result), "still here\n");
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
