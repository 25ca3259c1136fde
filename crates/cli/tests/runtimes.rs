//! Every runtime the sandbox promises to host runs under the default seccomp profile and landlock
//! rules, as root and rootless, and produces the expected output: Bun, Python 3, Node, sh with
//! coreutils, curl and git.

// Test helpers outside #[test] functions panic on purpose: a failed step fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{bun, modes, report, shared_tempdir, stderr, stdout};

/// Runs `args` in the sandbox (extra bunker flags first, then `--`, then the command) and checks
/// the run succeeded with every filter layer on and printed `want`.
fn expect(mode: &str, bunker: fn() -> Command, flags: &[&str], cmd: &[&str], want: &str) {
    let out = bunker()
        .args(["run", "--report", "json"])
        .args(flags)
        .arg("--")
        .args(cmd)
        .output()
        .unwrap();
    let r = report(&out);
    let text = stdout(&out);
    assert_eq!(
        r["status"],
        "ok",
        "{mode}: {cmd:?} failed\nstdout: {text}\nstderr: {}",
        stderr(&out)
    );
    assert!(
        text.contains(want),
        "{mode}: {cmd:?} printed {text:?}, want {want:?}"
    );
    assert_eq!(r["enforced"]["seccomp"], "on", "{mode}: {r}");
    assert_eq!(r["enforced"]["landlock"], "on", "{mode}: {r}");
}

#[test]
fn bun_runs() {
    let bun = bun();
    for (mode, bunker) in modes() {
        expect(
            mode,
            bunker,
            &["--profile", "runtime:bun"],
            &[&bun, "-e", "const fs = require('fs'); fs.writeFileSync('/tmp/b', 'w'); console.log('bun', 6 * 7, fs.readFileSync('/tmp/b', 'utf8'))"],
            "bun 42 w",
        );
    }
}

#[test]
fn python_runs() {
    for (mode, bunker) in modes() {
        expect(
            mode,
            bunker,
            &[],
            &[
                "/usr/bin/python3",
                "-c",
                "import json, sqlite3, subprocess, threading, tempfile\n\
                 db = sqlite3.connect(':memory:'); db.execute('create table t(x)')\n\
                 t = threading.Thread(target=lambda: None); t.start(); t.join()\n\
                 out = subprocess.run(['echo', 'child'], capture_output=True, text=True).stdout\n\
                 with tempfile.NamedTemporaryFile() as f: f.write(b'x')\n\
                 print('python', 6 * 7, out.strip())",
            ],
            "python 42 child",
        );
    }
}

#[test]
fn node_runs() {
    for (mode, bunker) in modes() {
        expect(
            mode,
            bunker,
            &[],
            &[
                "/usr/bin/node",
                "-e",
                "const { execFileSync } = require('child_process'); \
                 require('fs').writeFileSync('/tmp/n', 'w'); \
                 console.log('node', 6 * 7, execFileSync('echo', ['child']).toString().trim())",
            ],
            "node 42 child",
        );
    }
}

#[test]
fn sh_and_coreutils_run() {
    for (mode, bunker) in modes() {
        expect(
            mode,
            bunker,
            &[],
            &[
                "/bin/sh",
                "-c",
                "printf 'pear\\napple\\n' > /tmp/f && sort /tmp/f | tr '\\n' ' ' && \
                 cat /tmp/f | wc -l && ls / > /dev/null && echo done",
            ],
            "apple pear 2\ndone",
        );
    }
}

#[test]
fn curl_runs_and_reads_a_file_url() {
    let dir = shared_tempdir();
    let file = dir.path().join("data.txt");
    std::fs::write(&file, "through file://").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let d = dir.path().display().to_string();
    let url = format!("file://{}", file.display());
    for (mode, bunker) in modes() {
        expect(mode, bunker, &[], &["curl", "--version"], "curl");
        expect(
            mode,
            bunker,
            &["--allow-read", &d],
            &["curl", "-sS", &url],
            "through file://",
        );
    }
}

#[test]
fn git_init_and_commit_in_tmp() {
    for (mode, bunker) in modes() {
        expect(
            mode,
            bunker,
            &[],
            &[
                "/bin/sh",
                "-c",
                "cd /tmp && git init -q repo && cd repo && echo hi > a && git add a && \
                 git -c user.name=t -c user.email=t@example.com commit -qm first && \
                 git log --format=%s",
            ],
            "first",
        );
    }
}
