//! Shared helpers for the integration tests: they run the real `bunker` binary.
// Not every test file uses every helper; helpers panic on setup failures like tests do.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../../../test-support/skip.rs"]
mod skip_rule;
#[allow(unused_imports)] // not every test file skips
pub use skip_rule::skip;

pub mod serve;
pub mod warm;

/// Path of the `bunker` binary cargo built for these tests.
pub fn real_bunker_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bunker"))
}

/// The `bunker` the tests run: the binary cargo built, or in the warm-suite mode
/// (`BUNKER_TEST_WARM=1`, `warm.rs`) a wrapper that runs it through a daemon's warm path.
pub fn bunker_bin() -> PathBuf {
    bunker_for(true, true)
}

fn bunker_for(own: bool, nobody: bool) -> PathBuf {
    if warm::enabled() && !warm::excluded() {
        warm::wrapper(own, nobody)
    } else {
        real_bunker_bin()
    }
}

/// `bunker` as the current user (root in CI).
pub fn bunker() -> Command {
    Command::new(bunker_for(true, false))
}

/// `bunker` as the ordinary user 65534 (nobody), through `setpriv`: the rootless mode.
pub fn bunker_as_nobody() -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bunker_for(false, true));
    cmd
}

/// Makes a `bunker` command for one mode.
pub type CommandMaker = fn() -> Command;

/// Both modes, for tests that must hold as root and rootless.
pub fn modes() -> Vec<(&'static str, CommandMaker)> {
    vec![
        ("root", bunker as fn() -> Command),
        ("rootless", bunker_as_nobody),
    ]
}

/// Whether the tests run as root (they can then also test the rootless mode).
pub fn is_root() -> bool {
    // Reading our own status avoids unsafe code in tests.
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The JSON report that `--report json` prints as the last line of stderr. bunker starts it
/// on a line of its own, so it is the last line that starts with `{"status"` (a wrapper such as
/// GNU time may add lines after it): an object the program printed earlier, or one glued to
/// an unfinished line, is never taken for it.
pub fn report(out: &Output) -> serde_json::Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"status\""))
        .unwrap_or_else(|| panic!("no JSON report line in stderr:\n{stderr}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad report {line}: {e}"))
}

/// Text of stdout.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Text of stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A temporary directory that the unprivileged user can also read (mode 0755).
pub fn shared_tempdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("bunker-test-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// Path of bun, if installed (CI installs it; see .ci/run).
pub fn bun() -> String {
    which("bun").unwrap_or_else(|| {
        panic!("bun is not installed: run .ci/run or `npm i -g @oven/bun-linux-x64`")
    })
}

/// Looks a program up on PATH.
pub fn which(name: &str) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}

/// Pids of live (non-zombie) processes on the host whose command line contains `marker`.
pub fn alive_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(marker) {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
        if !matches!(state, Some('Z') | Some('X') | None) {
            found.push(pid);
        }
    }
    found
}

/// A path as a policy or argv string.
pub fn arg(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Creates `parent/name` with `mode` and returns it.
pub fn mkdir(parent: &Path, name: &str, mode: u32) -> PathBuf {
    let d = parent.join(name);
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
    d
}

/// Asserts the control of an attack test ran: it printed CONTROL-OK and exited 0.
pub fn assert_control(mode: &str, what: &str, out: &Output) {
    let text = stdout(out);
    assert!(
        text.contains("CONTROL-OK") && out.status.success(),
        "{mode}: control for {what} failed:\nstdout: {text}\nstderr: {}",
        stderr(out)
    );
}
