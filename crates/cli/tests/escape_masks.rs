//! The escape suite for deny masks: a deny rule must hold against renaming the mask or its
//! parents, hard links, removing and recreating the path, names created after the walk, and a
//! tree larger than any budget. Each attack runs inside `bunker run`, as root and rootless; the
//! effect is checked from the host afterwards (the planted git hook does not exist and does not
//! run, the secret is still where the policy names it); each test has a control that must work.
//!
//! Attack programs print `BLOCKED <why>` or `ESCAPED <what>`; controls print `CONTROL-OK`.

// Helpers outside #[test] functions panic on purpose (a failed step is a failed test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{arg, assert_control, modes, report, shared_tempdir, stderr, stdout, CommandMaker};

/// Creates `parent/name` (and missing parents) with `mode`, for both modes' programs to use.
fn mkdir(parent: &Path, name: &str, mode: u32) -> PathBuf {
    let d = parent.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
    d
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Writes `policy` into `dir/name.json` (readable by the rootless run) and returns `--policy`.
fn policy(dir: &Path, name: &str, policy: serde_json::Value) -> Vec<String> {
    let p = dir.join(format!("{name}.json"));
    write(&p, &policy.to_string(), 0o644);
    vec!["--policy".to_string(), p.to_str().unwrap().to_string()]
}

fn run(cmd: CommandMaker, flags: &[String], argv: &[&str]) -> Output {
    cmd()
        .arg("run")
        .args(flags)
        .arg("--")
        .args(argv)
        .output()
        .unwrap()
}

/// Runs python `code` in the sandbox.
fn py(cmd: CommandMaker, flags: &[String], code: &str) -> Output {
    run(cmd, flags, &["python3", "-c", code])
}

/// Python preamble: `step(name, fn)` runs one attack step and reports it.
const STEPS: &str = "import os, socket\n\
def step(name, f):\n\
\x20   try:\n\
\x20       r = f()\n\
\x20       print('ESCAPED', name, r if r is not None else '')\n\
\x20   except OSError as e:\n\
\x20       print('BLOCKED', name, e.errno)\n\
def read(p):\n\
\x20   data = open(p).read()\n\
\x20   if 'SECRET' not in data: raise OSError(0, 'masked')\n\
\x20   return data\n";

/// Asserts every step ran (the script exited 0) and none escaped.
fn assert_blocked(mode: &str, what: &str, out: &Output) {
    let text = stdout(out);
    assert!(
        out.status.success() && text.contains("BLOCKED") && !text.contains("ESCAPED"),
        "{mode}: {what} was not blocked:\nstdout: {text}\nstderr: {}",
        stderr(out)
    );
}

/// Asserts the run was refused before the program ran, naming `names` in its message.
fn assert_refused(mode: &str, what: &str, out: &Output, names: &[&str]) {
    let err = stderr(out);
    assert!(
        !out.status.success() && !stdout(out).contains("RAN"),
        "{mode}: {what} was not refused:\nstdout: {}\nstderr: {err}",
        stdout(out)
    );
    for name in names {
        assert!(
            err.contains(name),
            "{mode}: the refusal of {what} does not name {name}:\n{err}"
        );
    }
}

fn git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .unwrap()
}

/// The attack: with `deny.write` on `.git/hooks` of a writable project, the program
/// moves `.git` away, recreates `.git/hooks` and plants a pre-commit hook that the host's git
/// would run. The parents of the mask are mount points now: the rename is EBUSY.
#[test]
fn a_git_hook_cannot_be_planted_by_renaming_the_masks_parent() {
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let proj = mkdir(tmp.path(), "proj", 0o777);
        assert!(git(&proj, &["init", "-q"]).status.success());
        let hooks = proj.join(".git/hooks");
        for entry in std::fs::read_dir(&hooks).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        Command::new("chmod")
            .args(["-R", "a+rwX"])
            .arg(&proj)
            .status()
            .unwrap();
        let p = tmp.path().to_str().unwrap().to_string();
        let flags = policy(
            tmp.path(),
            "hooks",
            serde_json::json!({
                "extends": ["default"],
                "allow": {"write": [proj]},
                "deny": {"write": [hooks]},
            }),
        );
        let marker = tmp.path().join("hook-ran");
        let hook = format!("#!/bin/sh\ntouch {}\n", marker.display());
        let attack = format!(
            "{STEPS}os.chdir({proj:?})\n\
             step('direct write', lambda: open('.git/hooks/pre-commit', 'w').write({hook:?}))\n\
             step('rename .git', lambda: os.rename('.git', 'moved-git'))\n\
             step('rename hooks', lambda: os.rename('.git/hooks', '.git/old-hooks'))\n\
             step('rmdir hooks', lambda: os.rmdir('.git/hooks'))\n\
             import ctypes\n\
             libc = ctypes.CDLL(None, use_errno=True)\n\
             def exchange(a, b):\n\
             \x20   os.makedirs(a, exist_ok=True)\n\
             \x20   if libc.renameat2(-100, a.encode(), -100, b.encode(), 2) != 0:\n\
             \x20       e = ctypes.get_errno(); raise OSError(e, os.strerror(e))\n\
             step('exchange .git with a fresh dir', lambda: exchange('fake-git', '.git'))\n\
             def plant():\n\
             \x20   os.makedirs('.git/hooks', exist_ok=True)\n\
             \x20   open('.git/hooks/pre-commit', 'w').write({hook:?})\n\
             \x20   os.chmod('.git/hooks/pre-commit', 0o755)\n\
             step('plant the hook', plant)\n",
            proj = format!("{p}/proj"),
        );
        assert_blocked(mode, "planting a git hook", &py(cmd, &flags, &attack));
        // From the host: no hook, nothing moved, and git's commit runs no planted code.
        assert!(!hooks.join("pre-commit").exists(), "{mode}: hook planted");
        assert!(!proj.join("moved-git").exists(), "{mode}: .git was moved");
        assert!(git(&proj, &["commit", "-q", "--allow-empty", "-m", "x"])
            .status
            .success());
        assert!(!marker.exists(), "{mode}: the planted hook ran on the host");

        let control = format!(
            "import os\nos.chdir({proj:?})\n\
             open('.git/description', 'w').write('ok')\n\
             os.mkdir('src'); open('src/a.txt', 'w').write('a')\n\
             os.rename('src', 'src2'); os.rename('src2/a.txt', 'src2/b.txt')\n\
             print('CONTROL-OK')\n",
            proj = format!("{p}/proj"),
        );
        assert_control(
            mode,
            "writing the rest of the project",
            &py(cmd, &flags, &control),
        );
        assert!(proj.join("src2/b.txt").exists(), "{mode}");
    }
}

/// deny.read masks inside a writable grant: while a mask moves with a renamed parent, the host's
/// file moves too, and the next run's deny path names nothing. The mask, its parents and a hard
/// link to it are all refused; a second run still cannot read it.
#[test]
fn a_denied_file_in_a_writable_grant_keeps_its_name() {
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let proj = mkdir(tmp.path(), "proj", 0o777);
        let sub = mkdir(&proj, "config/prod", 0o777);
        std::fs::set_permissions(proj.join("config"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        let secret = sub.join("db.txt");
        write(&secret, "SECRET-DB", 0o666);
        let top = proj.join("token.txt");
        write(&top, "SECRET-TOKEN", 0o666);
        write(&proj.join("mine.txt"), "mine", 0o666);
        let flags = policy(
            tmp.path(),
            "read",
            serde_json::json!({
                "extends": ["default"],
                "allow": {"write": [proj]},
                "deny": {"read": [secret, top]},
            }),
        );
        let pr = proj.to_str().unwrap();
        let attack = format!(
            "{STEPS}os.chdir({pr:?})\n\
             step('read', lambda: read('config/prod/db.txt'))\n\
             step('rename the parent', lambda: os.rename('config/prod', 'config/moved'))\n\
             step('rename the grandparent', lambda: os.rename('config', 'moved'))\n\
             step('rename the file', lambda: os.rename('token.txt', 'moved.txt'))\n\
             step('hard link', lambda: os.link('token.txt', 'link.txt'))\n\
             step('unlink', lambda: os.unlink('token.txt'))\n\
             step('replace', lambda: os.replace('mine.txt', 'token.txt'))\n\
             step('rmdir the parent', lambda: os.rmdir('config/prod'))\n"
        );
        assert_blocked(mode, "moving a denied file", &py(cmd, &flags, &attack));
        // From the host: everything is where the policy names it, unchanged.
        assert_eq!(
            std::fs::read_to_string(&secret).unwrap(),
            "SECRET-DB",
            "{mode}"
        );
        assert_eq!(
            std::fs::read_to_string(&top).unwrap(),
            "SECRET-TOKEN",
            "{mode}"
        );
        for gone in ["config/moved", "moved", "moved.txt", "link.txt"] {
            assert!(
                !proj.join(gone).exists(),
                "{mode}: {gone} exists on the host"
            );
        }
        // A second run under the same policy still finds the masks in place.
        let again = format!(
            "{STEPS}import glob\n\
             for p in glob.glob({pr:?} + '/**', recursive=True):\n\
             \x20   if os.path.isfile(p): step('read ' + p, lambda: read(p))\n"
        );
        assert_blocked(mode, "the second run", &py(cmd, &flags, &again));

        let control = format!(
            "import os\nos.chdir({pr:?})\n\
             os.rename('mine.txt', 'config/prod/mine.txt')\n\
             open('config/prod/new.txt', 'w').write('n')\n\
             os.rename('config/prod/new.txt', 'config/prod/new2.txt')\n\
             print('CONTROL-OK')\n"
        );
        // Moving a file into a pinned directory crosses a mount: Python's os.rename gets EXDEV,
        // which `mv` handles by copying. The control uses `mv` for that one.
        let control = control.replace(
            "os.rename('mine.txt', 'config/prod/mine.txt')",
            "import subprocess; subprocess.run(['mv', 'mine.txt', 'config/prod/mine.txt'], check=True)",
        );
        assert_control(mode, "moving other files", &py(cmd, &flags, &control));
        assert!(
            sub.join("mine.txt").exists() && sub.join("new2.txt").exists(),
            "{mode}"
        );
    }
}

/// Deny-glob matches and unix sockets in a writable grant are masks too: neither they nor their
/// parents can be moved. A deny.read glob does not stop the program from reading a matching
/// file it created itself (it holds only what the program wrote).
#[test]
fn glob_and_socket_masks_in_a_writable_grant_keep_their_names() {
    use std::os::unix::net::UnixListener;
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let proj = mkdir(tmp.path(), "proj", 0o777);
        let keys = mkdir(&proj, "certs/live", 0o777);
        std::fs::set_permissions(proj.join("certs"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        let key = keys.join("server.key");
        write(&key, "SECRET-KEY", 0o666);
        let run_dir = mkdir(&proj, "run", 0o777);
        let sock = run_dir.join("agent.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        listener.set_nonblocking(true).unwrap();
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
        let flags = policy(
            tmp.path(),
            "glob",
            serde_json::json!({
                "extends": ["default"],
                "allow": {"write": [proj]},
                "deny": {"read": ["*.key"]},
            }),
        );
        let pr = proj.to_str().unwrap();
        let attack = format!(
            "{STEPS}os.chdir({pr:?})\n\
             def connect(p):\n\
             \x20   s = socket.socket(socket.AF_UNIX); s.connect(p)\n\
             step('read the key', lambda: read('certs/live/server.key'))\n\
             step('rename the key', lambda: os.rename('certs/live/server.key', 'certs/live/k'))\n\
             step('rename its parent', lambda: os.rename('certs/live', 'certs/old'))\n\
             step('rename its grandparent', lambda: os.rename('certs', 'c2'))\n\
             step('link the key', lambda: os.link('certs/live/server.key', 'k2'))\n\
             step('connect', lambda: connect('run/agent.sock'))\n\
             step('rename the socket dir', lambda: os.rename('run', 'run2'))\n\
             step('rename the socket', lambda: os.rename('run/agent.sock', 'run/s'))\n"
        );
        assert_blocked(
            mode,
            "moving glob and socket masks",
            &py(cmd, &flags, &attack),
        );
        assert_eq!(
            std::fs::read_to_string(&key).unwrap(),
            "SECRET-KEY",
            "{mode}"
        );
        assert!(sock.exists(), "{mode}: the socket was moved");
        for gone in ["certs/live/k", "certs/old", "c2", "k2", "run2", "run/s"] {
            assert!(
                !proj.join(gone).exists(),
                "{mode}: {gone} exists on the host"
            );
        }
        assert!(
            listener.accept().is_err(),
            "{mode}: the host socket got a connection"
        );

        let control = format!(
            "import os\nos.chdir({pr:?})\n\
             open('mine.key', 'w').write('own')\n\
             assert open('mine.key').read() == 'own'\n\
             os.mkdir('other'); os.rename('other', 'other2')\n\
             print('CONTROL-OK')\n"
        );
        assert_control(mode, "the program's own files", &py(cmd, &flags, &control));
        drop(listener);
    }
}

/// A deny.write rule the program could dodge by creating the path is refused before the
/// program runs: a path absent at start inside a writable grant, and a deny.write glob over a
/// writable grant (names created after the walk). `deny.best_effort` lets it run anyway.
#[test]
fn write_denials_the_program_could_create_are_refused() {
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let proj = mkdir(tmp.path(), "proj", 0o777);
        mkdir(&proj, ".git", 0o777);
        let hooks = proj.join(".git/hooks");
        let pr = proj.to_str().unwrap();
        let plant = format!(
            "echo RAN; mkdir -p {pr}/.git/hooks {pr}/sub/.git/hooks; \
             echo x > {pr}/.git/hooks/pre-commit; echo x > {pr}/sub/.git/hooks/pre-commit"
        );
        let argv = ["/bin/sh", "-c", plant.as_str()];
        let absent = policy(
            tmp.path(),
            "absent",
            serde_json::json!({
                "extends": ["default"],
                "allow": {"write": [proj]},
                "deny": {"write": [hooks]},
            }),
        );
        let out = run(cmd, &absent, &argv);
        assert_refused(
            mode,
            "an absent deny.write path",
            &out,
            &[&hooks.display().to_string()],
        );
        let glob = policy(
            tmp.path(),
            "glob",
            serde_json::json!({
                "extends": ["default"],
                "allow": {"write": [proj]},
                "deny": {"write": ["**/.git/hooks"]},
            }),
        );
        let out = run(cmd, &glob, &argv);
        assert_refused(mode, "a deny.write glob", &out, &["**/.git/hooks", pr]);
        assert!(
            !proj.join(".git/hooks").exists(),
            "{mode}: planted on the host"
        );
        assert!(!proj.join("sub").exists(), "{mode}: planted on the host");

        // Control: marked best-effort, the same run goes ahead, and says so.
        let best_effort = policy(
            tmp.path(),
            "best-effort",
            serde_json::json!({
                "extends": ["default"],
                "allow": {"write": [proj]},
                "deny": {"write": ["**/.git/hooks"], "best_effort": ["**/.git/hooks"]},
            }),
        );
        let out = run(
            cmd,
            &best_effort,
            &[
                "/bin/sh",
                "-c",
                &format!("touch {pr}/made && echo CONTROL-OK"),
            ],
        );
        assert_control(mode, "a best-effort deny.write glob", &out);
        assert!(proj.join("made").exists(), "{mode}");
        std::fs::remove_file(proj.join("made")).unwrap();
    }
}

/// Builds `root/pkg{0..99}/sub{0..9}/deep/f{0..79}` (80,000 files, the tree) and the
/// secret at `pkg99/sub9/deep/secret.key`.
fn large_tree(root: &Path) -> PathBuf {
    for p in 0..100 {
        for s in 0..10 {
            let deep = root.join(format!("pkg{p}/sub{s}/deep"));
            std::fs::create_dir_all(&deep).unwrap();
            for f in 0..80 {
                std::fs::write(deep.join(format!("f{f}")), "").unwrap();
            }
        }
    }
    let secret = root.join("pkg99/sub9/deep/secret.key");
    std::fs::write(&secret, "SECRET-KEY").unwrap();
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(root)
        .status()
        .unwrap();
    secret
}

/// The tree: the old walk stopped after 50,000 entries and the secret was read with
/// exit 0. The walk is complete now.
#[test]
fn a_deny_glob_holds_in_a_tree_of_80000_files() {
    let tmp = shared_tempdir();
    let tree = mkdir(tmp.path(), "tree", 0o755);
    let secret = large_tree(&tree);
    let public = tree.join("pkg99/sub9/deep/f79");
    std::fs::write(&public, "public").unwrap();
    let flags = policy(
        tmp.path(),
        "large",
        serde_json::json!({
            "extends": ["default"],
            "allow": {"read": [tree]},
            "deny": {"read": ["**/*.key"]},
        }),
    );
    for (mode, cmd) in modes() {
        // The mask is an empty file: cat prints nothing.
        let out = run(cmd, &flags, &["cat", secret.to_str().unwrap()]);
        assert!(
            !stdout(&out).contains("SECRET"),
            "{mode}: the key was read:\nstdout: {}\nstderr: {}",
            stdout(&out),
            stderr(&out)
        );
        let mut control = flags.clone();
        control.extend(["--report".into(), "json".into()]);
        let out = run(cmd, &control, &["cat", public.to_str().unwrap()]);
        assert!(
            out.status.success() && stdout(&out) == "public",
            "{mode}: {}",
            stderr(&out)
        );
        assert_eq!(report(&out)["enforced"]["filesystem"], "on", "{mode}");
    }
}

/// A directory that may be searched but not listed (mode 0711, owned by root) hides what the
/// walk cannot see; the program, rootless, can still open a name it guesses. Such a walk is
/// incomplete, so the run is refused naming the glob and the tree — unless the glob is
/// best-effort, which runs with a note and `filesystem: partial`. (As root too: init's root is
/// not the host's root.)
#[test]
fn a_deny_glob_that_cannot_be_checked_everywhere_refuses_the_run() {
    let tmp = shared_tempdir();
    let tree = mkdir(tmp.path(), "tree", 0o755);
    let hidden = mkdir(&tree, "hidden", 0o755);
    let secret = hidden.join("secret.key");
    write(&secret, "SECRET-KEY", 0o644);
    std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o711)).unwrap();
    // Owned by a third user: as root the grant is mapped to the tree's owner (root), who could
    // list a 0711 directory of its own; nobody the sandbox acts as may list this one.
    std::os::unix::fs::chown(&hidden, Some(12345), Some(12345)).unwrap();
    let strict = policy(
        tmp.path(),
        "strict",
        serde_json::json!({
            "extends": ["default"],
            "allow": {"read": [tree]},
            "deny": {"read": ["**/*.key"]},
        }),
    );
    let relaxed = policy(
        tmp.path(),
        "relaxed",
        serde_json::json!({
            "extends": ["default"],
            "allow": {"read": [tree]},
            "deny": {"read": ["**/*.key"], "best_effort": ["**/*.key"]},
        }),
    );
    let cat = format!("echo RAN; cat {}", secret.display());
    for (mode, cmd) in modes() {
        let out = run(cmd, &strict, &["/bin/sh", "-c", &cat]);
        assert_refused(
            mode,
            "an unlistable directory",
            &out,
            &["**/*.key", &tree.display().to_string(), "deny.best_effort"],
        );
        let mut flags = relaxed.clone();
        flags.extend(["--report".into(), "json".into()]);
        let out = run(cmd, &flags, &["/bin/sh", "-c", "echo CONTROL-OK"]);
        assert_control(mode, "the best-effort glob", &out);
        let r = report(&out);
        assert_eq!(r["enforced"]["filesystem"], "partial", "{mode}");
        assert!(
            r["enforced"]["notes"].to_string().contains("best-effort"),
            "{mode}: {r}"
        );
    }
}

/// `deny.best_effort` names deny entries of the same document; anything else is a policy error
/// saying where.
#[test]
fn a_best_effort_mark_must_name_a_deny_entry() {
    let tmp = shared_tempdir();
    for (doc, place) in [
        (
            serde_json::json!({"deny": {"read": ["*.key"], "best_effort": ["*.pem"]}}),
            "deny.best_effort[0]",
        ),
        (
            serde_json::json!({"allow": {"best_effort": ["*.pem"]}}),
            "allow.best_effort: unknown key",
        ),
    ] {
        let flags = policy(tmp.path(), "bad", doc);
        for (mode, cmd) in modes() {
            let out = run(cmd, &flags, &["/bin/true"]);
            assert!(
                !out.status.success() && stderr(&out).contains(place),
                "{mode}: {}",
                stderr(&out)
            );
        }
    }
}

/// A deny glob means one thing: every path the policy's decision denies (what `bunker check`
/// loads and prints) reads as masked in the sandbox, and every path it allows reads as
/// written, root and rootless. The globs cover each form: a bare name, `*` in a bare name,
/// `**` inside a component, a directory, a glob relative to the policy file, `{a,b}`, a class,
/// and `dir/**` (which includes `dir`).
#[test]
fn deny_globs_mask_exactly_what_the_policy_decision_denies() {
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let app = mkdir(tmp.path(), "app", 0o755);
        let files = [
            ".env",
            ".envrc",
            "config/server.key",
            "config/server.keys",
            "config/ca.crt",
            "private/notes.txt",
            "privates/notes.txt",
            "build/a.pem",
            "build/sub/a.pem",
            "src/a.js",
            "src/b.js",
            "src/c.js",
            "deep/a/b.txt",
            "deeper/b.txt",
        ];
        for f in files {
            let p = app.join(f);
            for dir in p.parent().unwrap().ancestors().take_while(|d| *d != app) {
                std::fs::create_dir_all(dir).unwrap();
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            write(&p, &format!("SECRET {f}"), 0o644);
        }
        let flags = policy(
            tmp.path(),
            "globs",
            serde_json::json!({
                "extends": ["default"],
                "allow": {"read": [app]},
                "deny": {"read": [
                    ".env", "*.key", "**.crt", "private", "app/build/*.pem",
                    "app/src/{a,b}.js", "/does-not-exist/[!x]", format!("{}/deep/**", arg(&app)),
                ]},
            }),
        );
        let file = PathBuf::from(&flags[1]);
        let check = cmd().arg("check").arg(&file).output().unwrap();
        assert!(check.status.success(), "{mode}: {}", stderr(&check));
        // check prints the globs as the policy holds them: anchored, normalized.
        let printed: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
        assert_eq!(
            printed["deny"]["read"][4],
            format!("{}/build/*.pem", arg(&app)),
            "{mode}"
        );
        let decided = bunker_policy::load(&bunker_policy::LoadSpec {
            source: bunker_policy::PolicySource::File(file.clone()),
            overlay: Default::default(),
            overlay_base: PathBuf::from("/"),
        })
        .unwrap();

        let paths: Vec<String> = files.iter().map(|f| arg(&app.join(f))).collect();
        let probe = format!(
            "import json\n\
             for p in json.loads({:?}):\n\
             \x20   try:\n\
             \x20       seen = 'READ' if open(p).read().startswith('SECRET') else 'MASKED'\n\
             \x20   except OSError:\n\
             \x20       seen = 'MASKED'\n\
             \x20   print(seen, p)\n",
            serde_json::to_string(&paths).unwrap()
        );
        let out = py(cmd, &flags, &probe);
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        let text = stdout(&out);
        let mut denied = 0;
        for p in &paths {
            let decision = decided.path_decision(Path::new(p), bunker_policy::Access::Read);
            let want = if decision.allowed { "READ" } else { "MASKED" };
            assert!(
                text.lines().any(|l| l == format!("{want} {p}")),
                "{mode}: {p} should be {want} ({}):\n{text}",
                decision.rule
            );
            denied += usize::from(!decision.allowed);
        }
        // Both outcomes occur (the control): the decision is not all-deny or all-allow.
        assert_eq!(denied, 8, "{mode}:\n{text}");
    }
}
