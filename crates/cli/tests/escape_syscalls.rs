//! Escapes through the syscall interface, tried from inside `bunker run` as root and rootless:
//! each must be refused by the seccomp profile (or landlock, for exec), and each has an allowed
//! counterpart that works, so a broken sandbox cannot pass by refusing everything.

// Test helpers outside #[test] functions panic on purpose: a failed step fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{modes, report, shared_tempdir, stderr, stdout};

const ATTACKS: &str = include_str!("../../sandbox/tests/syscall_attacks.py");
const PYTHON: &str = "/usr/bin/python3";

/// Runs the attack script under the default profile, and again with `kernel.tty` so that TIOCSTI
/// is tried on a real pseudo-terminal made inside (the default sandbox has no /dev/ptmx).
fn syscall_attacks(mode: &str, bunker: fn() -> Command) {
    let dir = shared_tempdir();
    let tty_policy = dir.path().join("tty.json");
    std::fs::write(
        &tty_policy,
        r#"{"extends": ["default"], "kernel": {"tty": true}}"#,
    )
    .unwrap();
    std::fs::set_permissions(&tty_policy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let plain = bunker()
        .args(["run", "--report", "json", "--", PYTHON, "-c", ATTACKS, "/"])
        .output()
        .unwrap();
    check_attacks(&format!("{mode}, default"), &plain, false);
    let with_tty = bunker()
        .args(["run", "--report", "json", "--policy"])
        .arg(&tty_policy)
        .args(["--", PYTHON, "-c", ATTACKS, "/"])
        .output()
        .unwrap();
    check_attacks(&format!("{mode}, tty"), &with_tty, true);
}

fn check_attacks(mode: &str, out: &std::process::Output, need_pty: bool) {
    let out = out.clone();
    let r = report(&out);
    assert_eq!(r["status"], "ok", "{mode}: {}", stderr(&out));
    assert_eq!(r["enforced"]["seccomp"], "on", "{mode}: {r}");
    let results: BTreeMap<String, String> = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("{mode}: bad attack output ({e}):\n{}", stdout(&out)));
    let pty = results.get("tty").map(String::as_str) == Some("pty");
    assert!(
        pty || !need_pty,
        "{mode}: no pty could be made inside: {results:?}"
    );
    let mut wrong = Vec::new();
    for (name, got) in &results {
        let want = match name.as_str() {
            "tty" => continue,
            // On a pipe (no pty in the sandbox) a terminal ioctl reaches the kernel: ENOTTY.
            "control_tiocgwinsz" if !pty => "ENOTTY",
            n if n.starts_with("control_") => "ok",
            "clone3" => "ENOSYS",
            "i386_int80_getpid" => "SIGSYS",
            _ => "EPERM",
        };
        if got != want {
            wrong.push(format!("{name}: {got} (want {want})"));
        }
    }
    assert!(wrong.is_empty(), "{mode}: {wrong:#?}\nall: {results:#?}");
    for must in [
        "mount_tmpfs",
        "remount_root_rw",
        "unshare_user_mount",
        "io_uring_setup",
        "ptrace_attach_child",
        "keyctl",
        "bpf",
        "perf_event_open",
        "tiocsti",
        "x32_getpid",
        "i386_int80_getpid",
        "personality_read_implies_exec",
        "socket_netlink",
        "socket_packet",
    ] {
        assert!(
            results.contains_key(must),
            "{mode}: attack {must} did not run"
        );
    }
}

#[test]
fn syscall_attacks_are_refused_as_root() {
    let (mode, bunker) = modes()[0];
    syscall_attacks(mode, bunker);
}

#[test]
fn syscall_attacks_are_refused_rootless() {
    let (mode, bunker) = modes()[1];
    syscall_attacks(mode, bunker);
}

/// The shell-level versions: `unshare` and `mount` as programs, which report their own errors.
#[test]
fn unshare_and_mount_commands_fail() {
    for (mode, bunker) in modes() {
        let out = bunker()
            .args(["run", "--report", "json", "--", "/bin/sh", "-c"])
            .arg(
                "unshare -Ur true 2>&1 && echo UNSHARE-OK; \
                 mount -t tmpfs none /tmp 2>&1 && echo MOUNT-OK; \
                 mount -o remount,rw / 2>&1 && echo REMOUNT-OK; \
                 touch /bunker-root-write 2>&1 && echo ROOT-WRITE-OK; \
                 echo control > /tmp/c && cat /tmp/c",
            )
            .output()
            .unwrap();
        let text = stdout(&out);
        assert!(
            text.contains("control"),
            "{mode}: control failed: {text}{}",
            stderr(&out)
        );
        for bad in ["UNSHARE-OK", "MOUNT-OK", "REMOUNT-OK", "ROOT-WRITE-OK"] {
            assert!(!text.contains(bad), "{mode}: {bad}\n{text}");
        }
    }
}

/// Setuid binaries do not raise privileges: a setuid-root `grep` granted for execution reads
/// its own capabilities (none, though the program is uid 0 inside the user namespace), a setuid
/// binary of another host user keeps the caller's euid, and one cannot be made inside /tmp
/// (seccomp refuses the setuid bit; nor could it run: nosuid and noexec mounts, no_new_privs,
/// locked securebits, no execute right on /tmp).
#[test]
fn setuid_binaries_do_not_raise_privileges() {
    use std::os::unix::fs::chown;
    let dir = shared_tempdir();
    let d = dir.path().display().to_string();
    let root_grep = dir.path().join("suid-grep");
    std::fs::copy("/usr/bin/grep", &root_grep).unwrap();
    std::fs::set_permissions(&root_grep, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let other_id = dir.path().join("suid-other-id");
    std::fs::copy("/usr/bin/id", &other_id).unwrap();
    chown(&other_id, Some(1234), Some(1234)).unwrap();
    std::fs::set_permissions(&other_id, std::fs::Permissions::from_mode(0o6755)).unwrap();
    let script = format!(
        "echo plain_uid=$(id -u); \
         echo plain_cap=$(grep CapEff /proc/self/status | cut -f2); \
         echo root_suid_cap=$({d}/suid-grep CapEff /proc/self/status | cut -f2); \
         echo other_suid_uid=$({d}/suid-other-id -u); \
         cp /usr/bin/id /tmp/id && chmod u+s /tmp/id && ls -l /tmp/id | cut -c1-10; \
         echo made=$(/tmp/id -u 2>&1)"
    );
    for (mode, bunker) in modes() {
        let out = bunker()
            .args([
                "run",
                "--report",
                "json",
                "--allow-exec",
                &d,
                "--",
                "/bin/sh",
                "-c",
                &script,
            ])
            .output()
            .unwrap();
        let text = stdout(&out);
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{mode}: no {key} in {text}{}", stderr(&out)))
                .to_string()
        };
        let uid = value("plain_uid");
        assert!(
            uid.parse::<u32>().is_ok(),
            "{mode}: control `id -u` failed: {text}"
        );
        assert_eq!(value("plain_cap"), "0000000000000000", "{mode}: {text}");
        assert_eq!(
            value("root_suid_cap"),
            "0000000000000000",
            "{mode}: setuid-root gained caps"
        );
        assert_eq!(
            value("other_suid_uid"),
            uid,
            "{mode}: setuid binary changed the euid"
        );
        // seccomp refuses setting the bit at all (escape_hardening.rs checks every call).
        assert!(
            !text.contains("-rwsr") && stderr(&out).contains("Operation not permitted"),
            "{mode}: chmod u+s took inside: {text}{}",
            stderr(&out)
        );
        let made = value("made");
        assert!(
            made == uid || made.contains("Permission denied"),
            "{mode}: setuid binary made inside: {made}"
        );
    }
}

/// `deny.exec` on a binary that `allow.read` and `allow.exec` cover: readable, not executable —
/// not directly, not through a symlink, not as a copy in /tmp.
#[test]
fn deny_exec_holds_for_a_readable_binary() {
    let dir = shared_tempdir();
    for name in ["allowed", "denied"] {
        let p = dir.path().join(name);
        std::fs::copy("/usr/bin/true", &p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let d = dir.path().display().to_string();
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        serde_json::json!({
            "extends": ["default"],
            "allow": {"read": [&d], "exec": [&d]},
            "deny": {"exec": [format!("{d}/denied")]}
        })
        .to_string(),
    )
    .unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let script = format!(
        "{d}/allowed && echo ALLOWED-RAN; \
         cmp {d}/denied /usr/bin/true && echo DENIED-READABLE; \
         {d}/denied 2>&1 && echo DENIED-RAN; \
         ln -s {d}/denied /tmp/link && /tmp/link 2>&1 && echo LINK-RAN; \
         cp {d}/denied /tmp/copy && /tmp/copy 2>&1 && echo COPY-RAN; true"
    );
    for (mode, bunker) in modes() {
        let out = bunker()
            .args(["run", "--report", "json", "--policy"])
            .arg(&policy)
            .args(["--", "/bin/sh", "-c", &script])
            .output()
            .unwrap();
        let text = stdout(&out);
        assert!(
            text.contains("ALLOWED-RAN"),
            "{mode}: control failed: {text}{}",
            stderr(&out)
        );
        assert!(text.contains("DENIED-READABLE"), "{mode}: {text}");
        for bad in ["DENIED-RAN", "LINK-RAN", "COPY-RAN"] {
            assert!(!text.contains(bad), "{mode}: {bad}\n{text}");
        }
        assert!(text.contains("Permission denied"), "{mode}: {text}");
        assert_eq!(report(&out)["enforced"]["landlock"], "on", "{mode}");
    }
}

/// The report says which landlock ABI was used, and a policy that turns seccomp off says so.
#[test]
fn report_names_the_filter_layers() {
    let dir = shared_tempdir();
    let policy = dir.path().join("off.json");
    std::fs::write(
        &policy,
        r#"{"extends": ["default"], "kernel": {"seccomp": "off", "landlock": "best-effort"}}"#,
    )
    .unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (mode, bunker) in modes() {
        let out = bunker()
            .args(["run", "--report", "json", "--", "/bin/true"])
            .output()
            .unwrap();
        let r = report(&out);
        assert_eq!(r["enforced"]["seccomp"], "on", "{mode}: {r}");
        assert_eq!(r["enforced"]["landlock"], "on", "{mode}: {r}");
        assert!(
            r["enforced"]["landlock_abi"].as_u64().unwrap() >= 6,
            "{mode}: {r}"
        );

        // Control for the attacks: with seccomp off, the same keyctl call is no longer EPERM
        // from the filter (the kernel answers instead).
        let out = bunker()
            .args(["run", "--report", "json", "--policy"])
            .arg(&policy)
            .args(["--", PYTHON, "-c"])
            .arg(
                "import ctypes; l = ctypes.CDLL(None, use_errno=True); \
                 r = l.syscall(250, 0, -3, 0); print('keyctl', r, ctypes.get_errno())",
            )
            .output()
            .unwrap();
        let r = report(&out);
        assert_eq!(r["enforced"]["seccomp"], "off", "{mode}: {r}");
        let text = stdout(&out);
        assert!(text.starts_with("keyctl"), "{mode}: {text}{}", stderr(&out));
        assert!(
            !text.trim().ends_with(" 1"),
            "{mode}: EPERM without a filter: {text}"
        );
    }
}
