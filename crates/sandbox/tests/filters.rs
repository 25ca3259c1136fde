//! The landlock and seccomp layers on their own, without namespaces: each test re-runs this test
//! binary as a child (`BUNKER_FILTER_CHILD` set), which applies the layers to its own thread and
//! then starts real programs (inheriting them) and tries real attacks. The parent only checks that
//! the child passed, so nothing here restricts the test runner itself.

// Test helpers outside #[test] functions panic on purpose: a failed step fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bunker_policy::path::PathPattern;
use bunker_policy::{Enforcement, Policy, SeccompProfile};
use bunker_sandbox::landlock::{self, SandboxPaths};
use bunker_sandbox::seccomp;
use bunker_sandbox::LayerStatus;

const ATTACKS: &str = include_str!("syscall_attacks.py");
const CHILD_ENV: &str = "BUNKER_FILTER_CHILD";
const PYTHON: &str = "/usr/bin/python3";

/// Runs the calling test again in a child process, with `dir` passed through; in the child,
/// returns true (the caller then does the restricted part).
fn in_child(test: &str, dir: &Path) -> bool {
    in_child_with(test, dir, &[])
}

fn in_child_with(test: &str, dir: &Path, env: &[(&str, String)]) -> bool {
    if std::env::var_os(CHILD_ENV).is_some() {
        return true;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(text.contains("1 passed"), "child ran no test:\n{text}");
    false
}

fn child_dir() -> PathBuf {
    PathBuf::from(std::env::var_os(CHILD_ENV).unwrap())
}

fn policy() -> Policy {
    Policy {
        allow: Default::default(),
        deny: Default::default(),
        limits: Default::default(),
        http: Default::default(),
        kernel: Default::default(),
        js: Default::default(),
        set_env: BTreeMap::new(),
        sources: Vec::new(),
    }
}

/// What a program needs from the host: the system directories readable and executable.
fn system_policy(work: &Path) -> (Policy, SandboxPaths) {
    let mut p = policy();
    for d in ["/usr", "/bin", "/lib", "/lib64", "/etc", "/sbin"] {
        p.allow.exec.push(d.into());
    }
    p.allow.write.push(work.join("rw"));
    p.allow.read.push(work.join("ro"));
    p.allow.exec.push(work.join("ro"));
    let paths = SandboxPaths {
        writable: vec![
            "/dev/null".into(),
            "/dev/zero".into(),
            "/dev/ptmx".into(),
            "/dev/pts".into(),
        ],
        readable: vec!["/".into(), "/proc".into(), "/dev".into()],
        connect_ports: vec![],
    };
    (p, paths)
}

fn workdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("bunker-filters-")
        .tempdir()
        .unwrap();
    std::fs::create_dir(d.path().join("rw")).unwrap();
    std::fs::create_dir(d.path().join("ro")).unwrap();
    d
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn apply_both(p: &Policy, paths: &SandboxPaths) {
    let outcome = landlock::apply(p, paths).unwrap();
    assert_eq!(outcome.status, LayerStatus::On, "{outcome:?}");
    assert_eq!(seccomp::install(p).unwrap(), LayerStatus::On);
}

#[test]
fn seccomp_blocks_the_syscall_attacks() {
    let dir = workdir();
    if !in_child("seccomp_blocks_the_syscall_attacks", dir.path()) {
        return;
    }
    let mut p = policy();
    p.kernel.landlock = Enforcement::Off;
    assert_eq!(seccomp::install(&p).unwrap(), LayerStatus::On);
    let (ok, stdout, stderr) =
        run(Command::new(PYTHON).args(["-c", ATTACKS, "/nonexistent-bunker-target"]));
    assert!(ok, "attack script failed: {stderr}");
    let results: BTreeMap<String, String> = serde_json::from_str(stdout.trim()).unwrap();
    let mut wrong = Vec::new();
    for (name, got) in &results {
        let want = match name.as_str() {
            "tty" => continue,
            n if n.starts_with("control_") => "ok",
            "clone3" => "ENOSYS",
            "i386_int80_getpid" => "SIGSYS",
            _ => "EPERM",
        };
        if got != want {
            wrong.push(format!("{name}: {got} (want {want})"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\n{results:#?}");
    assert_eq!(results.get("tty").map(String::as_str), Some("pty"));
}

#[test]
fn seccomp_off_installs_nothing() {
    let mut p = policy();
    p.kernel.seccomp = SeccompProfile::Off;
    // Off returns before touching the process, so this is safe in the test runner itself.
    assert_eq!(seccomp::install(&p).unwrap(), LayerStatus::Off);
}

#[test]
fn landlock_confines_reads_writes_and_exec() {
    let dir = workdir();
    let work = dir.path();
    std::fs::write(work.join("ro/data.txt"), "readable").unwrap();
    std::fs::write(work.join("secret.txt"), "secret").unwrap();
    std::fs::write(work.join("ro/hidden.txt"), "hidden").unwrap();
    std::fs::copy("/usr/bin/true", work.join("ro/allowed-true")).unwrap();
    std::fs::copy("/usr/bin/true", work.join("ro/denied-true")).unwrap();
    if !in_child("landlock_confines_reads_writes_and_exec", work) {
        assert!(
            !work.join("escaped.txt").exists(),
            "a write outside allow.write landed"
        );
        assert_eq!(
            std::fs::read_to_string(work.join("rw/written.txt")).unwrap(),
            "x\n"
        );
        return;
    }
    let work = child_dir();
    let (mut p, paths) = system_policy(&work);
    p.deny
        .exec
        .push(PathPattern::Path(work.join("ro/denied-true")));
    // A denial beneath a read-only grant: landlock alone holds it here (no mount masks in this
    // test). Beneath a writable grant only the mount mask can, and the grant must stay whole
    // (new files in rw/ stay writable despite the deny.write below).
    p.deny
        .read
        .push(PathPattern::Path(work.join("ro/hidden.txt")));
    p.deny
        .write
        .push(PathPattern::Path(work.join("rw/locked.txt")));
    p.kernel.seccomp = SeccompProfile::Default;
    apply_both(&p, &paths);

    let sh = |script: &str| {
        run(Command::new("/bin/sh")
            .args(["-c", script])
            .current_dir("/"))
    };
    let w = work.display();
    // Allowed counterparts.
    assert_eq!(sh(&format!("cat {w}/ro/data.txt")).1, "readable");
    assert!(sh(&format!("echo x > {w}/rw/written.txt")).0);
    assert!(sh(&format!("{w}/ro/allowed-true")).0);
    assert!(
        sh(&format!("cat {w}/ro/denied-true > /dev/null")).0,
        "deny.exec must leave reading"
    );
    // Denied.
    let (ok, _, err) = sh(&format!("cat {w}/secret.txt"));
    assert!(
        !ok && err.contains("Permission denied"),
        "read outside allow.read: {err}"
    );
    let (ok, _, err) = sh(&format!("echo x > {w}/escaped.txt"));
    assert!(
        !ok && err.contains("Permission denied"),
        "write outside allow.write: {err}"
    );
    let (ok, _, err) = sh(&format!("echo x > {w}/ro/data.txt"));
    assert!(
        !ok && err.contains("Permission denied"),
        "write to a read-only grant: {err}"
    );
    let (ok, _, err) = sh(&format!("cat {w}/ro/hidden.txt"));
    assert!(
        !ok && err.contains("Permission denied"),
        "deny.read beneath allow.read: {err}"
    );
    let (ok, _, err) = sh(&format!("{w}/ro/denied-true"));
    assert!(!ok && err.contains("Permission denied"), "deny.exec: {err}");
    // Copying a denied binary somewhere writable does not make it executable.
    let (ok, _, err) = sh(&format!("cp {w}/ro/denied-true {w}/rw/copy && {w}/rw/copy"));
    assert!(
        !ok && err.contains("Permission denied"),
        "exec from a writable dir: {err}"
    );
    // Truncating a read-only file (ABI 3).
    let (ok, _, err) = run(Command::new(PYTHON).args([
        "-c",
        &format!("import os; os.truncate('{w}/ro/data.txt', 0)"),
    ]));
    assert!(!ok && err.contains("Permission denied"), "truncate: {err}");
}

#[test]
fn landlock_limits_tcp_and_scopes_signals_and_abstract_sockets() {
    if std::env::var_os(CHILD_ENV).is_none() {
        let dir = workdir();
        let allowed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let name = format!("bunker-filters-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let _abstract = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        let spec = format!(
            "{} {} {}",
            allowed.local_addr().unwrap().port(),
            other.local_addr().unwrap().port(),
            name
        );
        in_child_with(
            "landlock_limits_tcp_and_scopes_signals_and_abstract_sockets",
            dir.path(),
            &[("BUNKER_FILTER_PORTS", spec)],
        );
        return;
    }
    let spec = std::env::var("BUNKER_FILTER_PORTS").unwrap();
    let parts: Vec<&str> = spec.split(' ').collect();
    let (allowed_port, other_port, name) = (parts[0], parts[1], parts[2]);
    let (p, mut paths) = system_policy(&child_dir());
    paths.connect_ports = vec![allowed_port.parse().unwrap()];
    apply_both(&p, &paths);

    let script = format!(
        r#"
import os, socket, json
out = {{}}
def attempt(name, f):
    try:
        f(); out[name] = "ok"
    except OSError as e:
        out[name] = e.strerror
attempt("connect_allowed", lambda: socket.create_connection(("127.0.0.1", {allowed_port})))
attempt("connect_other", lambda: socket.create_connection(("127.0.0.1", {other_port})))
attempt("bind", lambda: socket.socket().bind(("127.0.0.1", 0)))
attempt("abstract", lambda: socket.socket(socket.AF_UNIX).connect("\0{name}"))
attempt("signal_parent", lambda: os.kill({ppid}, 0))
attempt("control_signal_self", lambda: os.kill(os.getpid(), 0))
print(json.dumps(out))
"#,
        ppid = std::os::unix::process::parent_id()
    );
    let (ok, stdout, stderr) = run(Command::new(PYTHON).args(["-c", &script]));
    assert!(ok, "{stderr}");
    let r: BTreeMap<String, String> = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(r["connect_allowed"], "ok", "{r:?}");
    assert_eq!(r["control_signal_self"], "ok", "{r:?}");
    assert_eq!(r["connect_other"], "Permission denied", "{r:?}");
    assert_eq!(r["bind"], "Permission denied", "{r:?}");
    assert_eq!(r["abstract"], "Operation not permitted", "{r:?}");
    assert_eq!(r["signal_parent"], "Operation not permitted", "{r:?}");
}

/// Every runtime the issue names starts and works under both layers.
#[test]
fn runtimes_run_under_both_layers() {
    let dir = workdir();
    if !in_child("runtimes_run_under_both_layers", dir.path()) {
        return;
    }
    let work = child_dir();
    let (mut p, paths) = system_policy(&work);
    // bun is a symlink into its npm package (/opt/bunx/... here): executing checks the target.
    let bun = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("bun"))
        .find(|p| p.is_file())
        .expect("bun on PATH (scripts/install-test-deps.sh)");
    let bun_real = std::fs::canonicalize(&bun).unwrap();
    p.allow.exec.push(bun_real.parent().unwrap().to_path_buf());
    apply_both(&p, &paths);
    let rw = work.join("rw");
    let home = rw.display().to_string();
    let check = |prog: &str, args: &[&str], want: &str| {
        let (ok, stdout, stderr) = run(Command::new(prog)
            .args(args)
            .current_dir(&rw)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &home)
            .env("TMPDIR", &home));
        assert!(
            ok && stdout.contains(want),
            "{prog} {args:?}: ok={ok}\n{stdout}\n{stderr}"
        );
    };
    check(
        PYTHON,
        &["-c", "import json,sqlite3,ssl; print('py', 6*7)"],
        "py 42",
    );
    check("node", &["-e", "console.log('node', 6*7)"], "node 42");
    check(
        bun.to_str().unwrap(),
        &["-e", "console.log('bun', 6*7)"],
        "bun 42",
    );
    check("/bin/sh", &["-c", "printf 'b\\na\\n' | sort | tr '\\n' ' '; ls /usr | head -1; cat /etc/hostname >/dev/null"], "a b");
    check("curl", &["--version"], "curl");
    std::fs::write(rw.join("f.txt"), "via file url").unwrap();
    check(
        "curl",
        &["-s", &format!("file://{}/f.txt", rw.display())],
        "via file url",
    );
    check(
        "/bin/sh",
        &["-c", "git init -q repo && cd repo && echo hi > a && git add a && git -c user.name=t -c user.email=t@t commit -qm first && git log --oneline"],
        "first",
    );
}
