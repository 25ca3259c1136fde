//! The escape suite for the hardening classes of issue 11: executing what no exec grant covers
//! (the dynamic loader, memfds), a spoofed teardown signal, per-user kernel counters reaching
//! the host, setuid/setgid files landing on the host, and host identifiers in /proc. Each
//! attack runs inside `bunker run`, as root and rootless; each test also runs a control that
//! must succeed, and effects on the host are checked from the host.
//!
//! Attack programs print `BLOCKED <what>` or `ESCAPED <what>`; controls print `CONTROL-OK <what>`.

// Helpers outside #[test] functions panic on purpose (a failed step is a failed test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{arg, modes, report, shared_tempdir, stderr, stdout, CommandMaker};

/// A directory under `parent` that the sandbox (root or rootless) may write: mode 0777.
fn writable_dir(parent: &Path, name: &str) -> PathBuf {
    let d = parent.join(name);
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

/// Runs python3 `code` with `rw` as its one write grant and as its first argument.
fn run_in_write_grant(bunker: CommandMaker, rw: &Path, code: &str) -> Output {
    bunker()
        .args([
            "run",
            "--allow-write",
            &arg(rw),
            "--",
            "python3",
            "-c",
            code,
        ])
        .arg(rw)
        .output()
        .unwrap()
}

/// Asserts every line starting with one of `attacks` says BLOCKED, that each attack printed a
/// line, that nothing ESCAPED, and that every control in `controls` printed CONTROL-OK.
fn assert_outcome(mode: &str, out: &Output, attacks: &[&str], controls: &[&str]) {
    let text = stdout(out);
    let context = format!("{mode}:\nstdout:\n{text}\nstderr:\n{}", stderr(out));
    assert!(!text.contains("ESCAPED"), "{context}");
    for a in attacks {
        assert!(
            text.lines()
                .any(|l| l == format!("BLOCKED {a}") || l.starts_with(&format!("BLOCKED {a}:"))),
            "{a} did not report BLOCKED; {context}"
        );
    }
    for c in controls {
        assert!(
            text.lines().any(|l| l == format!("CONTROL-OK {c}")),
            "control {c} failed; {context}"
        );
    }
}

/// The dynamic loader's path (the sandbox sees the host's /lib64 through `default`).
const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

/// Nothing runs that no exec grant covers: not a copy in /tmp, in /dev/shm or in a writable
/// grant, not a binary in a read grant, not a `deny.exec` binary — neither through execve nor
/// through the dynamic loader (which only maps the file) nor as a memfd (execveat, or the
/// loader on /proc/self/fd/N), nor by mapping such a file executable by hand. Controls: a
/// binary of an exec grant runs directly and through the loader, and a system library maps
/// executable.
#[test]
fn nothing_runs_or_maps_executable_outside_exec_grants() {
    let dir = shared_tempdir();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::copy("/usr/bin/true", ro.join("prog")).unwrap();
    std::fs::set_permissions(ro.join("prog"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ex = dir.path().join("ex");
    std::fs::create_dir(&ex).unwrap();
    for name in ["allowed", "denied"] {
        std::fs::copy("/usr/bin/true", ex.join(name)).unwrap();
        std::fs::set_permissions(ex.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let rw = writable_dir(dir.path(), "rw");
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        serde_json::json!({
            "extends": ["default"],
            "allow": {"read": [arg(&ro)], "exec": [arg(&ex)], "write": [arg(&rw)]},
            "deny": {"exec": [arg(&ex.join("denied"))]}
        })
        .to_string(),
    )
    .unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ro, ex, rw) = (arg(&ro), arg(&ex), arg(&rw));
    let code = format!(
        r#"
import ctypes, mmap, os, shutil, subprocess
LOADER = {LOADER:?}
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]

def runs(argv, what, pass_fds=()):
    try:
        r = subprocess.run(argv, capture_output=True, pass_fds=pass_fds, timeout=20)
        return r.returncode == 0, (r.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
    except OSError as e:
        return False, str(e)

def attack(what, argv, pass_fds=()):
    ok, why = runs(argv, what, pass_fds)
    print(("ESCAPED " if ok else "BLOCKED ") + what + ": " + why)

def control(what, argv):
    ok, why = runs(argv, what)
    print(("CONTROL-OK " if ok else "CONTROL-FAILED ") + what + ("" if ok else ": " + why))

def maps_exec(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        p = libc.mmap(None, 4096, mmap.PROT_READ | mmap.PROT_EXEC, mmap.MAP_PRIVATE, fd, 0)
        if p in (None, ctypes.c_void_p(-1).value):
            return False, os.strerror(ctypes.get_errno())
        return True, "mapped executable"
    finally:
        os.close(fd)

control("exec-grant", ["{ex}/allowed"])
control("loader-exec-grant", [LOADER, "{ex}/allowed"])
control("loader-system", [LOADER, "/usr/bin/true"])
ok, why = maps_exec(os.path.realpath(LOADER))
print("CONTROL-OK map-system-library" if ok else "CONTROL-FAILED map-system-library: " + why)

copies = {{"tmp": "/tmp/copy", "shm": "/dev/shm/copy", "write-grant": "{rw}/copy"}}
for where, path in copies.items():
    # The root run's copy in the write grant belongs to the grant's owner (root): replace it.
    if os.path.exists(path):
        os.unlink(path)
    shutil.copy("/usr/bin/true", path)
    os.chmod(path, 0o755)
    attack("exec-" + where, [path])
    attack("loader-" + where, [LOADER, path])
    ok, why = maps_exec(path)
    print(("ESCAPED " if ok else "BLOCKED ") + "map-" + where + ": " + why)
    # execveat on an O_PATH descriptor of the copy.
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open(path, os.O_PATH)
            libc.syscall(322, fd, b"", (ctypes.c_char_p * 2)(b"x", None), (ctypes.c_char_p * 1)(None), 0x1000)
        finally:
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    print(("ESCAPED " if os.waitstatus_to_exitcode(status) == 0 else "BLOCKED ") + "execveat-" + where)

attack("exec-read-grant", ["{ro}/prog"])
attack("loader-read-grant", [LOADER, "{ro}/prog"])
attack("exec-deny-exec", ["{ex}/denied"])
attack("loader-deny-exec", [LOADER, "{ex}/denied"])
ok, why = maps_exec("{ex}/denied")
print(("ESCAPED " if ok else "BLOCKED ") + "map-deny-exec: " + why)

# A memfd holding a copy: execveat on it, and the loader on /proc/self/fd/N.
try:
    fd = os.memfd_create("copy", 0)
except OSError as e:
    print("BLOCKED memfd-execveat: memfd_create:", e)
    print("BLOCKED memfd-loader: memfd_create:", e)
else:
    os.write(fd, open("/usr/bin/true", "rb").read())
    try:
        os.fchmod(fd, 0o755)
    except OSError:
        pass
    pid = os.fork()
    if pid == 0:
        try:
            os.execve(fd, ["copy"], {{}})
        finally:
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    print(("ESCAPED " if os.waitstatus_to_exitcode(status) == 0 else "BLOCKED ") + "memfd-execveat")
    attack("memfd-loader", [LOADER, "/proc/self/fd/%d" % fd], pass_fds=(fd,))
"#
    );
    let attacks = [
        "exec-tmp",
        "loader-tmp",
        "map-tmp",
        "execveat-tmp",
        "exec-shm",
        "loader-shm",
        "map-shm",
        "execveat-shm",
        "exec-write-grant",
        "loader-write-grant",
        "map-write-grant",
        "execveat-write-grant",
        "exec-read-grant",
        "loader-read-grant",
        "exec-deny-exec",
        "loader-deny-exec",
        "map-deny-exec",
        "memfd-execveat",
        "memfd-loader",
    ];
    let controls = [
        "exec-grant",
        "loader-exec-grant",
        "loader-system",
        "map-system-library",
    ];
    for (mode, bunker) in modes() {
        let out = bunker()
            .args(["run", "--policy"])
            .arg(&policy)
            .args(["--", "python3", "-c", &code])
            .output()
            .unwrap();
        assert_outcome(mode, &out, &attacks, &controls);
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
    }
}

/// Signals the program sends to init through every signal API, with forged siginfo where the
/// API takes one (`si_code` SI_QUEUE, SI_USER, SI_KERNEL, SI_TKILL with `si_pid` 0), and a
/// `kill` with the signal queue full (delivered without siginfo: SI_USER from pid 0): none ends
/// the run or changes its status. Control: bunker's own teardown (the timeout) still ends it.
#[test]
fn no_signal_api_lets_the_program_end_the_run() {
    let code = r#"
import ctypes, os, signal, struct, time
libc = ctypes.CDLL(None, use_errno=True)
SIGRTMIN = signal.SIGRTMIN
SI_USER, SI_KERNEL, SI_QUEUE, SI_TKILL = 0, 0x80, -1, -6

def info(sig, code, pid=0, uid=0):
    buf = ctypes.create_string_buffer(128)
    struct.pack_into("iii", buf, 0, sig, 0, code)
    struct.pack_into("ii", buf, 16, pid, uid)
    return buf

pidfd = libc.syscall(434, 1, 0)  # pidfd_open(1)
signals = [s for s in range(SIGRTMIN, signal.SIGRTMAX + 1)] + [
    signal.SIGKILL, signal.SIGSTOP, signal.SIGTSTP, signal.SIGALRM, signal.SIGCHLD,
    signal.SIGPIPE, signal.SIGSEGV, signal.SIGXCPU, signal.SIGVTALRM, signal.SIGPROF,
]
sent = 0
for sig in signals:
    calls = [
        lambda: libc.kill(1, sig),
        lambda: libc.syscall(234, 1, 1, sig),  # tgkill
        lambda: libc.syscall(424, pidfd, sig, None, 0),  # pidfd_send_signal
    ]
    for code in (SI_QUEUE, SI_USER, SI_KERNEL, SI_TKILL, -2, -60):
        calls += [
            lambda code=code: libc.syscall(129, 1, sig, info(sig, code)),  # rt_sigqueueinfo
            lambda code=code: libc.syscall(297, 1, 1, sig, info(sig, code)),  # rt_tgsigqueueinfo
            lambda code=code: libc.syscall(424, pidfd, sig, info(sig, code), 0),
        ]
    for call in calls:
        if call() == 0:
            sent += 1
# With the signal queue full, the kernel delivers a kill() without its siginfo: init then reads
# SI_USER from pid 0, what the supervisor's own signal looks like.
blocked = SIGRTMIN + 5
signal.pthread_sigmask(signal.SIG_BLOCK, [blocked])
mine = info(blocked, SI_QUEUE, os.getpid())
while libc.syscall(129, os.getpid(), blocked, mine) == 0:
    pass
for call in (lambda: libc.kill(1, SIGRTMIN), lambda: libc.syscall(424, pidfd, SIGRTMIN, None, 0)):
    if call() == 0:
        sent += 1
time.sleep(0.5)
print("still here after", sent, "signals", flush=True)
"#;
    for (mode, bunker) in modes() {
        let out = bunker()
            .args(["run", "--report", "json", "--timeout", "30s", "--"])
            .args(["python3", "-c", code])
            .output()
            .unwrap();
        let text = stdout(&out);
        assert!(
            out.status.success() && text.starts_with("still here after"),
            "{mode}: the run ended early: {:?}\nstdout: {text}\nstderr: {}",
            out.status,
            stderr(&out)
        );
        // The forged SI_QUEUE signals at least were delivered: the attack was real.
        let sent: u32 = text.split_whitespace().nth(3).unwrap().parse().unwrap();
        assert!(sent > 0, "{mode}: no signal reached init: {text}");
        let r = report(&out);
        assert_eq!(r["status"], "ok", "{mode}: {r}");
        assert_eq!(r["exit_code"], 0, "{mode}: {r}");

        // Control: the supervisor's teardown still ends a run, even one whose signal queue is
        // full (its signal then reaches init without a siginfo).
        let full_queue = format!(
            "{}import time\ntime.sleep(30)\n",
            QUEUE_SIGNALS.replace("LIMIT", "10000000")
        );
        let out = bunker()
            .args(["run", "--report", "json", "--timeout", "1s", "--"])
            .args(["python3", "-c", &full_queue])
            .output()
            .unwrap();
        assert_eq!(
            report(&out)["status"],
            "timeout",
            "{mode}: {}",
            stderr(&out)
        );
    }
}

/// Host python that makes one inotify instance and prints `ok`, or the error.
const HOST_INOTIFY: &str = "import ctypes, os\n\
                            fd = ctypes.CDLL(None, use_errno=True).inotify_init1(0)\n\
                            print('ok' if fd >= 0 else os.strerror(ctypes.get_errno()))\n";

/// Python that queues real-time signals to itself (blocked) up to `LIMIT`, prints the count.
const QUEUE_SIGNALS: &str = "import ctypes, os, signal, struct, sys, time\n\
                             libc = ctypes.CDLL(None, use_errno=True)\n\
                             sig = signal.SIGRTMIN + 5\n\
                             signal.pthread_sigmask(signal.SIG_BLOCK, [sig])\n\
                             info = ctypes.create_string_buffer(128)\n\
                             struct.pack_into('iiiii', info, 0, sig, 0, -1, 0, os.getpid())\n\
                             n = 0\n\
                             while n < LIMIT and libc.syscall(129, os.getpid(), sig, info) == 0:\n\
                             \x20   n += 1\n";

/// Runs the host python `probe` as `uid`: Ok when it printed `ok`, else what it printed.
fn host_probe_as(uid: u32, probe: &str) -> Result<(), String> {
    let id = uid.to_string();
    let out = Command::new("setpriv")
        .args([
            format!("--reuid={id}"),
            format!("--regid={id}"),
            "--clear-groups".into(),
        ])
        .args(["/usr/bin/python3", "-c", probe])
        .output()
        .unwrap();
    let text = stdout(&out).trim().to_string();
    if text == "ok" {
        Ok(())
    } else {
        Err(format!("{text}{}", stderr(&out)))
    }
}

/// Runs `code` (python that takes as much of a per-user counter as it can, prints `HOLDING <n>`
/// and sleeps) in the sandbox and, while it holds, the host `probe` as `host_uid`. Returns how
/// much the sandbox held and the probe's result.
fn hold_and_probe(
    mode: &str,
    bunker: common::CommandMaker,
    code: &str,
    host_uid: u32,
    probe: &str,
) -> (u64, Result<(), String>) {
    host_probe_as(host_uid, probe).unwrap_or_else(|e| {
        panic!("{mode}: host uid {host_uid} fails the probe before the run: {e}")
    });
    let mut child = bunker()
        .args(["run", "--timeout", "120s", "--", "python3", "-c", code])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let host = host_probe_as(host_uid, probe);
    let _ = child.kill();
    let _ = child.wait();
    let held = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{mode}: the sandbox printed {line:?}"));
    (held, host)
}

/// A sandbox holding as many inotify instances as it can does not starve the host uid its user
/// namespace is charged to (root as root, the caller rootless): the host uid can still make one.
/// The sandbox's own maximum is the documented bound (16). Control: the sandbox can make some.
#[test]
fn inotify_exhaustion_in_the_sandbox_does_not_reach_the_host() {
    let code = "import ctypes, os, sys, time\n\
                libc = ctypes.CDLL(None, use_errno=True)\n\
                fds = []\n\
                while len(fds) < 100000:\n\
                \x20   fd = libc.inotify_init1(0)\n\
                \x20   if fd < 0: break\n\
                \x20   fds.append(fd)\n\
                print('HOLDING', len(fds), os.strerror(ctypes.get_errno()), flush=True)\n\
                time.sleep(60)\n";
    for ((mode, bunker), host_uid) in modes().into_iter().zip([0u32, 65534]) {
        let (held, host) = hold_and_probe(mode, bunker, code, host_uid, HOST_INOTIFY);
        assert!(
            held >= 1,
            "{mode}: control: the sandbox made no inotify instance"
        );
        host.unwrap_or_else(|e| {
            panic!("{mode}: host uid {host_uid} starved while the sandbox held {held}: {e}")
        });
        assert!(
            held <= 16,
            "{mode}: the sandbox held {held} inotify instances (bound 16)"
        );
    }
}

/// A sandbox that fills its signal queue (real-time signals queued to itself, blocked) does not
/// starve the host uid its user namespace is charged to: the host uid can still queue one. The
/// sandbox holds at most its RLIMIT_SIGPENDING (1024). Control: the sandbox can queue some.
#[test]
fn a_full_signal_queue_in_the_sandbox_does_not_reach_the_host() {
    let code = format!(
        "{}print('HOLDING', n, os.strerror(ctypes.get_errno()), flush=True)\ntime.sleep(60)\n",
        QUEUE_SIGNALS.replace("LIMIT", "10000000")
    );
    let probe = format!(
        "{}print('ok' if n == 1 else os.strerror(ctypes.get_errno()))\n",
        QUEUE_SIGNALS.replace("LIMIT", "1")
    );
    for ((mode, bunker), host_uid) in modes().into_iter().zip([0u32, 65534]) {
        let (held, host) = hold_and_probe(mode, bunker, &code, host_uid, &probe);
        assert!(held >= 1, "{mode}: control: the sandbox queued no signal");
        host.unwrap_or_else(|e| {
            panic!("{mode}: host uid {host_uid} starved while the sandbox queued {held}: {e}")
        });
        assert!(
            held <= 1024,
            "{mode}: the sandbox queued {held} signals (bound 1024)"
        );
    }
}

/// Files of `dir` (recursively) with a setuid/setgid bit or a `security.capability` xattr, as
/// the host sees them.
fn privileged_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = e.path().symlink_metadata().unwrap();
            if meta.mode() & 0o6000 != 0 {
                found.push(format!("{} mode {:o}", e.path().display(), meta.mode()));
            }
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    // The host's view of file capabilities (getfattr is not always installed; python is).
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import os, sys\n\
             for root, dirs, files in os.walk(sys.argv[1]):\n\
             \x20   for n in dirs + files:\n\
             \x20       p = os.path.join(root, n)\n\
             \x20       if 'security.capability' in os.listxattr(p, follow_symlinks=False): print(p)\n",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "xattr walk: {}", stderr(&out));
    found.extend(
        stdout(&out)
            .lines()
            .map(|l| format!("{l} has security.capability")),
    );
    found
}

/// The sandbox cannot leave a setuid or setgid file (or a file capability) in a writable grant,
/// by any call that sets a mode: chmod, fchmod, fchmodat, fchmodat2, and the creation modes of
/// open, openat (O_CREAT and O_TMPFILE), openat2, creat, mkdir, mkdirat, mknod, mknodat.
/// Checked from the host after the run. Control: ordinary modes work and land as asked.
#[test]
fn setuid_setgid_and_capability_files_never_land_on_the_host() {
    let code = r#"
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
d = sys.argv[1]
os.umask(0)

def attempt(what, fn):
    try:
        r = fn()
        if isinstance(r, int) and r < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except OSError as e:
        print("BLOCKED", what + ":", e)
    else:
        print("ESCAPED", what)

def control(what, fn, path, mode):
    try:
        fn()
        got = os.stat(path).st_mode & 0o7777
        print("CONTROL-OK " + what if got == mode else "CONTROL-FAILED %s: mode %o" % (what, got))
    except OSError as e:
        print("CONTROL-FAILED", what + ":", e)

def new(name):
    p = os.path.join(d, name)
    open(p, "w").close()
    return p

control("chmod", lambda: os.chmod(new("plain"), 0o755), os.path.join(d, "plain"), 0o755)
control("create", lambda: os.close(os.open(os.path.join(d, "made"), os.O_CREAT | os.O_WRONLY, 0o640)), os.path.join(d, "made"), 0o640)
control("mkdir", lambda: os.mkdir(os.path.join(d, "sub"), 0o750), os.path.join(d, "sub"), 0o750)

for bits in (0o4755, 0o2755):
    t = "%o" % bits
    p = new("f" + t)
    attempt("chmod-" + t, lambda: os.chmod(p, bits))
    fd = os.open(p, os.O_RDONLY)
    attempt("fchmod-" + t, lambda: os.fchmod(fd, bits))
    os.close(fd)
    attempt("fchmodat-" + t, lambda: libc.syscall(268, AT_FDCWD, p.encode(), bits))
    attempt("fchmodat2-" + t, lambda: libc.syscall(452, AT_FDCWD, p.encode(), bits, 0))
    attempt("open-" + t, lambda: libc.syscall(2, os.path.join(d, "o" + t).encode(), os.O_CREAT | os.O_WRONLY, bits))
    attempt("openat-" + t, lambda: libc.syscall(257, AT_FDCWD, os.path.join(d, "oa" + t).encode(), os.O_CREAT | os.O_WRONLY, bits))
    attempt("os.open-" + t, lambda: os.open(os.path.join(d, "po" + t), os.O_CREAT | os.O_WRONLY, bits))
    attempt("creat-" + t, lambda: libc.syscall(85, os.path.join(d, "c" + t).encode(), bits))
    attempt("mkdir-" + t, lambda: libc.syscall(83, os.path.join(d, "d" + t).encode(), bits))
    attempt("mkdirat-" + t, lambda: libc.syscall(258, AT_FDCWD, os.path.join(d, "da" + t).encode(), bits))
    attempt("os.mkdir-" + t, lambda: os.mkdir(os.path.join(d, "pd" + t), bits))
    attempt("mknod-" + t, lambda: libc.syscall(133, os.path.join(d, "n" + t).encode(), 0o100000 | bits, 0))
    attempt("mknodat-" + t, lambda: libc.syscall(259, AT_FDCWD, os.path.join(d, "na" + t).encode(), 0o100000 | bits, 0))
    def tmpfile():
        fd = os.open(d, os.O_TMPFILE | os.O_WRONLY, bits)
        os.link("/proc/self/fd/%d" % fd, os.path.join(d, "t" + t))
    attempt("o_tmpfile-" + t, tmpfile)
    # openat2: struct open_how {flags, mode, resolve}.
    how = struct.pack("QQQ", os.O_CREAT | os.O_WRONLY, bits, 0)
    attempt("openat2-" + t, lambda: libc.syscall(437, AT_FDCWD, os.path.join(d, "o2" + t).encode(), how, len(how)))

# A file capability (cap_setuid+ep, VFS_CAP_REVISION_2).
p = new("capfile")
cap = struct.pack("<IIIII", 0x02000001, 1 << 7, 0, 0, 0)
attempt("security.capability", lambda: os.setxattr(p, "security.capability", cap))
"#;
    for (mode, bunker) in modes() {
        let dir = shared_tempdir();
        let rw = writable_dir(dir.path(), "rw");
        let out = run_in_write_grant(bunker, &rw, code);
        let mut attacks = vec!["security.capability".to_string()];
        for bits in ["4755", "2755"] {
            for call in [
                "chmod",
                "fchmod",
                "fchmodat",
                "fchmodat2",
                "open",
                "openat",
                "os.open",
                "creat",
                "mkdir",
                "mkdirat",
                "os.mkdir",
                "mknod",
                "mknodat",
                "o_tmpfile",
                "openat2",
            ] {
                attacks.push(format!("{call}-{bits}"));
            }
        }
        let attacks: Vec<&str> = attacks.iter().map(String::as_str).collect();
        assert_outcome(mode, &out, &attacks, &["chmod", "create", "mkdir"]);
        let found = privileged_files(&rw);
        assert!(found.is_empty(), "{mode}: on the host: {found:#?}");
        // The controls landed as asked.
        let plain = std::fs::metadata(rw.join("plain")).unwrap().mode() & 0o7777;
        assert_eq!(plain, 0o755, "{mode}");
    }
}

/// The host's boot id, kernel command line, partitions, disk statistics and swap devices are not
/// visible: the sandbox has a boot id of its own (a fresh UUID each run) and empty files.
/// Control: its own /proc entries still read.
#[test]
fn host_identifiers_in_proc_are_hidden() {
    let host_boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let host_cmdline = std::fs::read_to_string("/proc/cmdline").unwrap();
    assert!(
        !host_cmdline.trim().is_empty(),
        "the host has a command line"
    );
    let script = "cat /proc/sys/kernel/random/boot_id; \
                  for f in cmdline partitions diskstats swaps; do echo \"$f=$(wc -c < /proc/$f)\"; done; \
                  grep -q '^Name:' /proc/self/status && echo CONTROL-OK status";
    let mut boot_ids = Vec::new();
    for (mode, bunker) in modes() {
        let out = bunker()
            .args(["run", "--", "/bin/sh", "-c", script])
            .output()
            .unwrap();
        let text = stdout(&out);
        assert!(
            text.contains("CONTROL-OK status"),
            "{mode}: {text}{}",
            stderr(&out)
        );
        let boot_id = text.lines().next().unwrap_or_default().to_string();
        assert_eq!(boot_id.len(), 36, "{mode}: boot id {boot_id:?}");
        assert_ne!(
            boot_id,
            host_boot_id.trim(),
            "{mode}: the host's boot id is visible"
        );
        for f in ["cmdline", "partitions", "diskstats", "swaps"] {
            assert!(
                text.lines().any(|l| l == format!("{f}=0")),
                "{mode}: /proc/{f} is not empty: {text}"
            );
        }
        boot_ids.push(boot_id);
    }
    assert_ne!(
        boot_ids[0], boot_ids[1],
        "each run has a boot id of its own"
    );
}

/// A setuid or setgid file (or one with a file capability) that is already in a writable grant
/// would keep its privilege if the sandbox rewrote it through a shared writable mapping: the
/// kernel clears S_ISUID/S_ISGID and `security.capability` on `write`, `truncate` and
/// `fallocate` (`file_remove_privs`), but not on a page written through `mmap(MAP_SHARED)`. As
/// root the grant is idmapped to its owner, so a root-owned setuid file in a root-owned
/// writable grant (an Electron app's `chrome-sandbox` under /opt, a `make install` tree) would
/// get code the sandbox chose and stay setuid root on the host; rootless, the caller's own
/// setuid file would run the sandbox's code as the caller for any host user. bunker binds each
/// such file read-only over itself at the start, pinned like a `deny.write` mask (it cannot be
/// renamed away). Checked from the host. Controls: an ordinary file in the same grant is
/// rewritten through a shared mapping and with `pwrite`.
#[test]
fn a_setuid_file_in_a_writable_grant_cannot_be_rewritten_keeping_its_bit() {
    let code = r#"
import mmap, os, sys
d = sys.argv[1]
MARK = b"SANDBOX!"
def via_mmap(name):
    fd = os.open(os.path.join(d, name), os.O_RDWR)
    m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    m[-len(MARK):] = MARK
    m.flush()
    m.close()
    os.close(fd)
for name in ("sub/setuid", "setgid", "filecap", "plain"):
    try:
        via_mmap(name)
        print("WROTE", name)
    except OSError as e:
        print("REFUSED", name, e)
for name in ("sub/setuid", "sub"):
    try:
        os.rename(os.path.join(d, name), os.path.join(d, "moved"))
        print("RENAMED", name)
    except OSError as e:
        print("RENAME-REFUSED", name, e)
try:
    fd = os.open(os.path.join(d, "ordinary"), os.O_RDWR)
    os.pwrite(fd, MARK, os.fstat(fd).st_size - len(MARK))
    os.close(fd)
    print("CONTROL-OK pwrite")
except OSError as e:
    print("CONTROL-FAILED pwrite", e)
"#;
    for ((mode, bunker), owner) in modes().into_iter().zip([0u32, 65534]) {
        let dir = shared_tempdir();
        let rw = writable_dir(dir.path(), "rw");
        std::os::unix::fs::chown(&rw, Some(owner), Some(owner)).unwrap();
        std::fs::create_dir(rw.join("sub")).unwrap();
        std::os::unix::fs::chown(rw.join("sub"), Some(owner), Some(owner)).unwrap();
        for (name, bits) in [
            ("sub/setuid", 0o4755),
            ("setgid", 0o2755),
            ("filecap", 0o755),
            ("plain", 0o755),
            ("ordinary", 0o644),
        ] {
            let p = rw.join(name);
            std::fs::copy("/usr/bin/true", &p).unwrap();
            // chown clears the bits: set them after.
            std::os::unix::fs::chown(&p, Some(owner), Some(owner)).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(bits)).unwrap();
        }
        let setcap = Command::new("setcap")
            .args(["cap_net_raw+ep", &arg(&rw.join("filecap"))])
            .status()
            .expect("setcap (libcap2-bin) is needed for this test");
        assert!(setcap.success(), "setcap failed");
        let out = run_in_write_grant(bunker, &rw, code);
        let context = format!("{mode}: {}{}", stdout(&out), stderr(&out));
        // A file renamed away reads as unmarked and without bits: the rename check names it.
        let marked =
            |name: &str| std::fs::read(rw.join(name)).is_ok_and(|b| b.ends_with(b"SANDBOX!"));
        let bits = |name: &str| std::fs::metadata(rw.join(name)).map_or(0, |m| m.mode() & 0o6000);
        // Controls: an ordinary file in the same grant stays writable, also through mmap.
        assert!(stdout(&out).contains("CONTROL-OK pwrite"), "{context}");
        assert!(marked("ordinary"), "control: pwrite; {context}");
        assert!(
            marked("plain"),
            "control: mmap write of a plain file; {context}"
        );
        for (name, privilege) in [("sub/setuid", 0o4000), ("setgid", 0o2000)] {
            assert!(
                !marked(name) && bits(name) == privilege,
                "{mode}: {name} was rewritten or moved by the sandbox (setuid/setgid bits now \
                 {:o}, owner {owner}); {context}",
                bits(name)
            );
        }
        assert!(
            !marked("filecap"),
            "{mode}: filecap was rewritten; {context}"
        );
        let caps = Command::new("getcap")
            .arg(rw.join("filecap"))
            .output()
            .unwrap();
        assert!(
            stdout(&caps).contains("cap_net_raw"),
            "{mode}: filecap lost its capability: {}",
            stdout(&caps)
        );
        for name in ["sub/setuid", "sub"] {
            assert!(
                stdout(&out).contains(&format!("RENAME-REFUSED {name}")),
                "{mode}: the read-only {name} was renamed away; {context}"
            );
        }
        assert!(!rw.join("moved").exists(), "{context}");
    }
}

/// The start-up walk that finds setuid/setgid files in writable grants cannot look inside a
/// directory there that may be searched but not listed (mode 0711, another owner), yet the
/// program can reach a setuid file in it by name: the whole directory is bound read-only, and
/// the run says so. Control: an ordinary file beside it stays writable.
#[test]
fn a_directory_the_setuid_walk_cannot_list_is_made_read_only() {
    let code = r#"
import mmap, os, sys
d = sys.argv[1]
for name in ("hidden/suid", "ordinary"):
    try:
        fd = os.open(os.path.join(d, name), os.O_RDWR)
        m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        m[-8:] = b"SANDBOX!"
        m.close()
        os.close(fd)
        print("WROTE", name)
    except OSError as e:
        print("REFUSED", name, e)
"#;
    for ((mode, bunker), owner) in modes().into_iter().zip([0u32, 65534]) {
        let dir = shared_tempdir();
        let rw = writable_dir(dir.path(), "rw");
        std::os::unix::fs::chown(&rw, Some(owner), Some(owner)).unwrap();
        let hidden = rw.join("hidden");
        std::fs::create_dir(&hidden).unwrap();
        for (name, bits) in [("hidden/suid", 0o4755), ("ordinary", 0o644)] {
            let p = rw.join(name);
            std::fs::copy("/usr/bin/true", &p).unwrap();
            std::os::unix::fs::chown(&p, Some(owner), Some(owner)).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(bits)).unwrap();
        }
        std::os::unix::fs::chown(&hidden, Some(1234), Some(1234)).unwrap();
        std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o711)).unwrap();
        let out = run_in_write_grant(bunker, &rw, code);
        let context = format!("{mode}: {}{}", stdout(&out), stderr(&out));
        assert!(out.status.success(), "{context}");
        assert!(
            stdout(&out).contains("WROTE ordinary"),
            "control: {context}"
        );
        assert!(stdout(&out).contains("REFUSED hidden/suid"), "{context}");
        let suid = std::fs::read(rw.join("hidden/suid")).unwrap();
        assert!(!suid.ends_with(b"SANDBOX!"), "{context}");
    }
}

/// A `--report-file` inside a writable grant (`--allow-write . --report-file report.json`)
/// cannot be forged by the program: not by putting another file at its path (bunker then says
/// so and exits 123), not by filling it with lines of its own (the report is all the file
/// holds), and a symlink an earlier run planted there is not followed (bunker, perhaps root,
/// would truncate and write whatever it points to). Checked from the host. Control: a run that
/// leaves the file alone gets its report there.
#[test]
fn a_report_file_in_a_writable_grant_cannot_be_forged_or_redirected() {
    for (mode, bunker) in modes() {
        let dir = shared_tempdir();
        let rw = writable_dir(dir.path(), "rw");
        let report_at = |name: &str| arg(&rw.join(name));
        let run = |name: &str, script: &str| {
            bunker()
                .args(["run", "--allow-write", &arg(&rw), "--report-file"])
                .arg(report_at(name))
                .args(["--", "/bin/sh", "-c", script])
                .current_dir(&rw)
                .output()
                .unwrap()
        };
        let read_report = |name: &str| std::fs::read_to_string(rw.join(name)).unwrap();

        // Control.
        let out = run("control.json", "exit 4");
        let text = read_report("control.json");
        let r: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(r["exit_code"], 4, "{mode}: control: {text}{}", stderr(&out));

        let forged = r#"{"status":"ok","exit_code":0,"forged":true}"#;
        // Another file at the path.
        let out = run(
            "replaced.json",
            &format!("rm replaced.json; echo '{forged}' > replaced.json; exit 5"),
        );
        assert_eq!(out.status.code(), Some(123), "{mode}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("replaced"),
            "{mode}: {}",
            stderr(&out)
        );

        // Lines of its own in the file.
        let out = run(
            "filled.json",
            &format!("for i in $(seq 2000); do echo '{forged}'; done > filled.json; exit 6"),
        );
        let text = read_report("filled.json");
        assert_eq!(text.lines().count(), 1, "{mode}: {}", stderr(&out));
        assert!(!text.contains("forged"), "{mode}: {text}");

        // A symlink planted by a run, followed by the next run's report.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "the host's file\n").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o666)).unwrap();
        let plant = format!("ln -s {} planted.json", arg(&victim));
        let out = bunker()
            .args([
                "run",
                "--allow-write",
                &arg(&rw),
                "--",
                "/bin/sh",
                "-c",
                &plant,
            ])
            .current_dir(&rw)
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: plant: {}", stderr(&out));
        let out = bunker()
            .args([
                "run",
                "--report-file",
                &report_at("planted.json"),
                "--",
                "true",
            ])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{mode}: the symlink was followed");
        assert!(stderr(&out).contains("symlink"), "{mode}: {}", stderr(&out));
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "the host's file\n",
            "{mode}: the report went through the planted symlink"
        );
    }
}

/// Real-time scheduling and raised priority stay closed whatever the caller's RLIMIT_RTPRIO and
/// RLIMIT_NICE (limits.conf gives the audio group `rtprio 95`): a SCHED_FIFO loop would take a
/// CPU from the host, outside the CFS quota that `limits.cpu` is. Where the host lets the test
/// raise them (CAP_SYS_RESOURCE), bunker is started with `rtprio 50`, `nice 40`; else with the
/// caller's own. Controls: SCHED_BATCH and a lower priority (nice 5) work.
#[test]
fn real_time_scheduling_and_raised_priority_are_refused() {
    let code = r#"
import os
for line in open("/proc/self/limits"):
    if line.startswith(("Max nice", "Max realtime priority")):
        print("LIMIT", " ".join(line.split()[-2:]))
def attempt(what, fn):
    try:
        fn()
        print("ESCAPED", what)
    except OSError as e:
        print("BLOCKED", what + ":", e)
attempt("sched_fifo", lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10)))
attempt("sched_rr", lambda: os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10)))
attempt("nice-raise", lambda: os.setpriority(os.PRIO_PROCESS, 0, -5))
os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
print("CONTROL-OK batch")
os.setpriority(os.PRIO_PROCESS, 0, 5)
print("CONTROL-OK nice-lower")
"#;
    let raised = Command::new("prlimit")
        .args(["--rtprio=50", "--nice=40", "true"])
        .status()
        .is_ok_and(|s| s.success());
    for (mode, bunker) in modes() {
        let base = bunker();
        let mut cmd = if raised {
            let mut c = Command::new("prlimit");
            c.args(["--rtprio=50", "--nice=40", "--"])
                .arg(base.get_program())
                .args(base.get_args());
            c
        } else {
            base
        };
        let out = cmd
            .args(["run", "--", "python3", "-c", code])
            .output()
            .unwrap();
        assert_outcome(
            mode,
            &out,
            &["sched_fifo", "sched_rr", "nice-raise"],
            &["batch", "nice-lower"],
        );
        let text = stdout(&out);
        let limits: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("LIMIT "))
            .collect();
        assert_eq!(limits, ["0 0", "0 0"], "{mode}: {text}");
    }
}
