//! Grants behave the way the grant says, as root and rootless: a path the caller can reach can
//! be granted (even under a 0700 directory), the sandbox reads and writes inside a write grant
//! what the directory's owner may, what it creates belongs on the host to that owner, the
//! program sees the granted files as its own (git works without configuration), and the
//! system trees the profiles grant keep root's private files closed (`/etc/shadow`).
//!
//! Every project is made by the test (as root) and, for the rootless runs, handed to uid 65534
//! (the caller there). Ownership and modes are checked from the host after each run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{
    arg, bunker, bunker_as_nobody, is_root, mkdir, modes, shared_tempdir, skip, stderr, stdout,
};

/// The caller's uid in each mode (root runs as 0, rootless as 65534).
fn caller_uid(mode: &str) -> u32 {
    if mode == "root" {
        0
    } else {
        65534
    }
}

/// The tests switch users and chown files: they need root (CI runs them as root).
fn needs_root() -> bool {
    if !is_root() {
        skip("these tests switch users and chown files: they need root");
    }
    is_root()
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Hands `path` and everything under it to `uid:gid`.
fn chown_tree(path: &Path, uid: u32, gid: u32) {
    chown(path, Some(uid), Some(gid)).unwrap();
    if std::fs::symlink_metadata(path).unwrap().is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

/// Every file under `path` (directories included), for host-side checks.
fn walk(path: &Path) -> Vec<PathBuf> {
    let mut out = vec![path.to_path_buf()];
    if std::fs::symlink_metadata(path).unwrap().is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            out.extend(walk(&e.unwrap().path()));
        }
    }
    out
}

/// Host-side check of what the sandbox created: owned by `uid:gid`, no setuid or setgid bit,
/// no file capability (`security.capability`, read with the host's python3: std has no xattr
/// call).
fn assert_created_safely(paths: &[PathBuf], uid: u32, gid: u32, what: &str) {
    for p in paths {
        let m = std::fs::symlink_metadata(p).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid), "{what}: owner of {p:?}");
        assert_eq!(m.mode() & 0o6000, 0, "{what}: setuid/setgid bit on {p:?}");
    }
    let list: Vec<String> = paths.iter().map(|p| arg(p)).collect();
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, sys\n\
             for p in sys.argv[1:]:\n\
             \x20   if 'security.capability' in os.listxattr(p, follow_symlinks=False):\n\
             \x20       print(p)",
        ])
        .args(&list)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: xattr check: {}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "", "{what}: files with capabilities");
}

/// A project as a user would have it: a 0700 directory with a 0600 secret, a 0755 `out`
/// directory, owned by `uid:gid`.
fn project(parent: &Path, uid: u32, gid: u32) -> PathBuf {
    let proj = mkdir(parent, "proj", 0o700);
    write(&proj.join("notes.txt"), "owner-only\n", 0o600);
    mkdir(&proj, "out", 0o755);
    chown_tree(&proj, uid, gid);
    proj
}

fn run(cmd: common::CommandMaker, grants: &[(&str, &Path)], program: &[&str]) -> Output {
    let mut c = cmd();
    c.arg("run");
    for (flag, p) in grants {
        c.args([*flag, &arg(p)]);
    }
    c.arg("--").args(program).output().unwrap()
}

#[test]
fn a_file_under_a_0700_directory_can_be_granted_and_read() {
    if !needs_root() {
        return;
    }
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let uid = caller_uid(mode);
        // The project lives under a 0700 directory of its owner, like /root/proj.
        let home = mkdir(tmp.path(), "home", 0o700);
        let proj = project(&home, uid, uid);
        chown(&home, Some(uid), Some(uid)).unwrap();
        let secret = proj.join("notes.txt");
        // The 0600 file under the 0700 directory, granted by itself and through its directory.
        for granted in [&proj, &secret] {
            let out = run(cmd, &[("--allow-read", granted)], &["cat", &arg(&secret)]);
            assert!(
                out.status.success(),
                "{mode}: grant {granted:?}: {}",
                stderr(&out)
            );
            assert_eq!(stdout(&out), "owner-only\n", "{mode}");
        }
        // A read grant stays read-only, and what it does not grant stays out.
        let other = mkdir(tmp.path(), "other", 0o755);
        write(&other.join("x"), "x\n", 0o644);
        let out = run(
            cmd,
            &[("--allow-read", &proj)],
            &[
                "sh",
                "-c",
                &format!(
                    "echo no > {}/new 2>/dev/null && echo WROTE; cat {}/x 2>/dev/null && echo LEAKED; \
                     echo done",
                    arg(&proj),
                    arg(&other)
                ),
            ],
        );
        assert_eq!(stdout(&out), "done\n", "{mode}: {}", stderr(&out));
        assert!(!proj.join("new").exists(), "{mode}");
    }
}

#[test]
fn files_created_in_a_write_grant_belong_to_the_directorys_owner() {
    if !needs_root() {
        return;
    }
    // (mode, the directory's owner): as root, root and another user; rootless, the caller.
    let cases: [(&str, common::CommandMaker, u32, u32); 3] = [
        ("root", bunker, 0, 0),
        ("root, owner 1000", bunker, 1000, 1001),
        ("rootless", bunker_as_nobody, 65534, 65534),
    ];
    for (what, cmd, uid, gid) in cases {
        let tmp = shared_tempdir();
        let proj = project(tmp.path(), uid, gid);
        let out_dir = proj.join("out");
        let script = format!(
            "cd {out} && echo made > file && mkdir -p sub/deeper && echo deep > sub/deeper/f \
             && cat ../notes.txt && echo more >> ../notes.txt && id -u && stat -c %u:%g . file \
             && grep ' {proj} ' /proc/self/mountinfo",
            out = arg(&out_dir),
            proj = arg(&proj)
        );
        let out = run(cmd, &[("--allow-write", &proj)], &["sh", "-c", &script]);
        assert!(out.status.success(), "{what}: {}", stderr(&out));
        let text = stdout(&out);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("owner-only"), "{what}: {text}");
        // The program is uid 0 inside, and the granted files are its own.
        assert_eq!(lines.next(), Some("0"), "{what}: {text}");
        assert_eq!(lines.next(), Some("0:0"), "{what}: {text}");
        assert_eq!(lines.next(), Some("0:0"), "{what}: {text}");
        // Every mount of a grant keeps nosuid and nodev, idmapped or not.
        let mount = lines.next().unwrap_or_default();
        for flag in ["nosuid", "nodev"] {
            assert!(
                mount.split(' ').nth(5).unwrap_or("").contains(flag),
                "{what}: {mount}"
            );
        }
        if what != "rootless" {
            assert!(mount.contains("idmapped"), "{what}: {mount}");
        }
        // From the host: what the sandbox made belongs to the directory's owner.
        let made: Vec<PathBuf> = walk(&out_dir).into_iter().skip(1).collect();
        assert_eq!(made.len(), 4, "{what}: {made:?}");
        assert_created_safely(&made, uid, gid, what);
        assert_eq!(
            std::fs::read_to_string(out_dir.join("sub/deeper/f")).unwrap(),
            "deep\n"
        );
        assert_eq!(
            std::fs::read_to_string(proj.join("notes.txt")).unwrap(),
            "owner-only\nmore\n",
            "{what}"
        );
        let notes = std::fs::metadata(proj.join("notes.txt")).unwrap();
        assert_eq!((notes.uid(), notes.mode() & 0o7777), (uid, 0o600), "{what}");
    }
}

/// A repository made on the host by its owner, with one commit.
fn repository(parent: &Path, uid: u32) -> PathBuf {
    let repo = mkdir(parent, "repo", 0o755);
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=host", "-c", "user.email=host@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    };
    git(&["init", "-q", "-b", "main"]);
    write(&repo.join("README"), "hello\n", 0o644);
    git(&["add", "README"]);
    git(&["commit", "-q", "-m", "first"]);
    chown_tree(&repo, uid, uid);
    repo
}

#[test]
fn git_works_on_a_granted_repository_without_configuration() {
    if !needs_root() {
        return;
    }
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let uid = caller_uid(mode);
        let repo = repository(tmp.path(), uid);
        // No safe.directory: the only configuration is the commit's identity, which a fresh
        // HOME does not have.
        let script = "git status --short --branch && git log --format=%s && echo new > NEW && \
             git add NEW && git -c user.name=sandbox -c user.email=s@example.com commit -q -m second \
             && git log --format=%s";
        let out = cmd()
            .args(["run", "--allow-write", &arg(&repo), "--cwd", &arg(&repo)])
            .args(["--", "sh", "-c", script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        assert_eq!(
            stdout(&out),
            "## main\nfirst\nsecond\nfirst\n",
            "{mode}: {}",
            stderr(&out)
        );
        // From the host: the commit is there, and git's new files belong to the owner.
        let log = Command::new("git")
            .args(["-c", &format!("safe.directory={}", arg(&repo))])
            .arg("-C")
            .arg(&repo)
            .args(["log", "--format=%s"])
            .output()
            .unwrap();
        assert_eq!(stdout(&log), "second\nfirst\n", "{mode}");
        let all = walk(&repo);
        assert_created_safely(&all, uid, uid, mode);
    }
}

#[test]
fn system_trees_keep_root_only_files_closed() {
    if !needs_root() {
        return;
    }
    let tmp = shared_tempdir();
    let proj = project(tmp.path(), 0, 0);
    let secret = arg(&proj.join("notes.txt"));
    let code = format!(
        "for p in ['/etc/shadow', '{secret}', '/etc/passwd']:\n\
         \x20   try: open(p).read(); print(p, 'read')\n\
         \x20   except OSError as e: print(p, type(e).__name__)"
    );
    for (mode, cmd) in modes() {
        // The built-in default policy, the python profile, and /etc granted outright: the
        // system trees are never mapped to their owner, so /etc/shadow stays root's.
        for extra in [
            &[][..],
            &["--profile", "runtime:python"],
            &["--allow-read", "/etc"],
        ] {
            let out = cmd()
                .arg("run")
                .args(extra)
                .args(["--allow-read", &arg(&proj)])
                .args(["--", "python3", "-c", &code])
                .output()
                .unwrap();
            assert!(out.status.success(), "{mode} {extra:?}: {}", stderr(&out));
            let text = stdout(&out);
            let shadow = text.lines().next().unwrap_or_default();
            assert!(
                shadow == "/etc/shadow PermissionError"
                    || shadow == "/etc/shadow FileNotFoundError",
                "{mode} {extra:?}: {text}"
            );
            // Control: the granted project's own 0600 file, as root (rootless, it is root's
            // and the caller may not read it: the grant gives no more than the caller has).
            let expect = if mode == "root" {
                "read"
            } else {
                "PermissionError"
            };
            assert!(
                text.contains(&format!("{secret} {expect}")),
                "{mode} {extra:?}: {text}"
            );
            if extra.contains(&"/etc") {
                assert!(text.contains("/etc/passwd read"), "{mode}: {text}");
            }
        }
    }
}

#[test]
fn a_write_grant_the_sandbox_cannot_write_is_named_on_stderr() {
    if !needs_root() {
        return;
    }
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        // As root: even its owner may not write it. Rootless: root's 0755 directory.
        let locked = mkdir(
            tmp.path(),
            "locked",
            if mode == "root" { 0o555 } else { 0o755 },
        );
        let open = mkdir(tmp.path(), "open", 0o755);
        chown(&open, Some(caller_uid(mode)), Some(caller_uid(mode))).unwrap();
        let out = run(
            cmd,
            &[("--allow-write", &locked), ("--allow-write", &open)],
            &["true"],
        );
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        let err = stderr(&out);
        let hint = format!(
            "bunker: hint: allow.write {} is not writable by the sandbox",
            arg(&locked)
        );
        assert!(err.contains(&hint), "{mode}: {err}");
        // Control: the writable grant gets no hint.
        assert!(
            !err.contains(&format!("allow.write {} ", arg(&open))),
            "{mode}: {err}"
        );
    }
}

/// Unmounts the host mount a test made, whatever the test's outcome.
struct HostMount(PathBuf);

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mount points at or under `dir` in the host's mount table.
fn host_mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect()
}

#[test]
fn masks_mounted_inside_a_grant_never_reach_a_shared_host_mount() {
    if !needs_root() {
        return;
    }
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let uid = caller_uid(mode);
        let proj = project(tmp.path(), uid, uid);
        let hidden = mkdir(&proj, "hidden", 0o755);
        chown(&hidden, Some(uid), Some(uid)).unwrap();
        // A shared host mount (as systemd makes /): a copy that joined its peer group would
        // carry the sandbox's mounts back to the host.
        for args in [&["--bind"][..], &["--make-shared"]] {
            let how = Command::new("mount")
                .args(args)
                .args(if args == ["--bind"] {
                    vec![&proj, &proj]
                } else {
                    vec![&proj]
                })
                .status()
                .unwrap();
            assert!(how.success(), "mount {args:?}");
        }
        let _guard = HostMount(proj.clone());
        let policy = tmp.path().join("policy.json");
        std::fs::write(
            &policy,
            format!(
                r#"{{"extends": ["default"], "allow": {{"write": ["{p}"]}},
                    "deny": {{"read": ["{p}/hidden"]}}}}"#,
                p = arg(&proj)
            ),
        )
        .unwrap();
        let ready = proj.join("out/ready");
        let done = proj.join("out/done");
        // The program says it is ready (its masks are mounted) and waits for the host's look.
        let script = format!(
            "grep -c ' {p}/hidden ' /proc/self/mountinfo && : > {r} && \
             i=0; while [ ! -e {d} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done",
            p = arg(&proj),
            r = arg(&ready),
            d = arg(&done)
        );
        let child = cmd()
            .args(["run", "--policy", &arg(&policy), "--", "sh", "-c", &script])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut seen = None;
        for _ in 0..600 {
            if ready.exists() {
                seen = Some(host_mounts_under(&proj));
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        std::fs::write(&done, "").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        // Control: the mask is mounted inside.
        assert_eq!(stdout(&out), "1\n", "{mode}");
        let seen = seen.unwrap_or_else(|| panic!("{mode}: the program never got ready"));
        assert_eq!(
            seen,
            vec![arg(&proj)],
            "{mode}: host mounts under the grant"
        );
    }
}

#[test]
fn a_nested_grant_of_another_owner_is_mapped_to_its_own_owner() {
    if !needs_root() {
        return;
    }
    let tmp = shared_tempdir();
    let proj = project(tmp.path(), 0, 0);
    let alice = mkdir(&proj, "alice", 0o700);
    chown(&alice, Some(1000), Some(1000)).unwrap();
    let script = format!(
        "echo p > {p}/out/by-root-grant && echo a > {a}/by-alice-grant && echo ok",
        p = arg(&proj),
        a = arg(&alice)
    );
    let out = run(
        bunker,
        &[("--allow-write", &proj), ("--allow-write", &alice)],
        &["sh", "-c", &script],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ok\n");
    assert_created_safely(&[proj.join("out/by-root-grant")], 0, 0, "outer grant");
    assert_created_safely(&[alice.join("by-alice-grant")], 1000, 1000, "inner grant");
}

#[test]
fn a_filesystem_without_idmapped_mounts_leaves_the_grant_unmapped_and_says_so() {
    if !needs_root() {
        return;
    }
    let tmp = shared_tempdir();
    // ramfs does not support idmapped mounts (tmpfs and ext4 do).
    let ram = mkdir(tmp.path(), "ram", 0o755);
    let mounted = Command::new("mount")
        .args(["-t", "ramfs", "ramfs"])
        .arg(&ram)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount ramfs");
    let _guard = HostMount(ram.clone());
    std::fs::set_permissions(&ram, std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = ram.join("x");
    let out = bunker()
        .args(["run", "--report", "json", "--allow-write", &arg(&ram)])
        .args([
            "--",
            "sh",
            "-c",
            &format!("echo x > {} || echo refused", arg(&file)),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The sandbox is host uid 65534 there, as before: root's 0755 directory is not writable.
    assert_eq!(stdout(&out), "refused\n");
    assert!(!file.exists());
    let notes = common::report(&out)["enforced"]["notes"].to_string();
    assert!(
        notes.contains(&format!(
            "allow.write {}: not mapped to its owner 0:0",
            arg(&ram)
        )),
        "{notes}"
    );
    assert!(
        stderr(&out).contains(&format!(
            "bunker: hint: allow.write {} is not writable by the sandbox",
            arg(&ram)
        )),
        "{}",
        stderr(&out)
    );
}
