//! Nothing is left behind: no cgroup, no process, no mount, no temporary file — after ordinary
//! runs, timeouts and OOM kills, after the supervisor is stopped with SIGTERM, and (with the next
//! run's or `bunker doctor --clean`'s help) after it is SIGKILLed.
//!
//! The host is shared with other tests running at the same time, so nothing here counts "all
//! cgroups" or "all processes": cgroups are matched by the pids of the supervisors these tests
//! started (`bunker-<pid>-<n>`), processes by a marker unique to the test.
// Helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bunker_cgroup::{parse_group_name, Layout};
use common::*;

/// The directories this test process's cgroups live in (bunker's sandbox cgroups are created
/// in them, since the supervisor inherits them).
fn own_cgroup_dirs() -> Vec<PathBuf> {
    let layout = Layout::detect().unwrap();
    let mut dirs: Vec<PathBuf> = layout
        .hierarchies
        .iter()
        .map(|h| h.own_dir.clone())
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Sandbox cgroups created by any of `supervisors`.
fn cgroups_of(supervisors: &BTreeSet<u32>) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in own_cgroup_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some((pid, _)) = parse_group_name(&name) {
                if supervisors.contains(&(pid as u32)) {
                    found.push(e.path());
                }
            }
        }
    }
    found
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `sleep` argument unique to this test process (and the processes it names).
fn unique_sleep(salt: u32) -> String {
    format!("{}.{}{}", 3000 + salt, std::process::id(), salt)
}

fn mounts() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        // Drop the mount id and parent id: they are the only parts that change by themselves.
        .map(|l| l.splitn(3, ' ').nth(2).unwrap_or_default().to_string())
        .collect()
}

fn entries(dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn two_hundred_runs_alternating_ok_timeout_and_oom_leave_nothing_behind() {
    let marker = unique_sleep(1);
    let tmpdir = tempfile::Builder::new()
        .prefix("bunker-cleanup-")
        .tempdir()
        .unwrap();
    let mounts_before = mounts();
    let shm_before = entries("/dev/shm");
    let mut supervisors = BTreeSet::new();
    let mut seen = [0usize; 3];
    for i in 0..200 {
        let mut cmd = bunker();
        cmd.env("TMPDIR", tmpdir.path()).args([
            "run", "--report", "json", "--memory", "40MB", "--pids", "64",
        ]);
        let expected = match i % 3 {
            0 => {
                cmd.args(["--", "sh", "-c", &format!("echo {marker}")]);
                "ok"
            }
            1 => {
                // A session leader and an orphan, both sleeping past the timeout.
                let script =
                    format!("setsid sleep {marker} & (sleep {marker} &); exec sleep {marker}");
                cmd.args(["--timeout", "150ms", "--", "sh", "-c", &script]);
                "timeout"
            }
            _ => {
                let script = format!("import sys; x = b'a' * (200 << 20); print('{marker}')");
                cmd.args(["--", "python3", "-c", &script]);
                "memory_limit"
            }
        };
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        supervisors.insert(child.id());
        let out = child.wait_with_output().unwrap();
        let r = report(&out);
        assert_eq!(r["status"], expected, "run {i}: {r}\n{}", stderr(&out));
        seen[i % 3] += 1;
    }
    assert_eq!(seen, [67, 67, 66]);

    let left = cgroups_of(&supervisors);
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
    // The sandboxes' processes die with their pid namespace; orphans may need a moment to be
    // reaped by the host's init, not to die.
    wait_until(
        "the sandboxes' processes to be gone",
        Duration::from_secs(5),
        || alive_with(&marker).is_empty(),
    );
    let new_mounts: Vec<String> = mounts().difference(&mounts_before).cloned().collect();
    assert!(new_mounts.is_empty(), "mounts left behind: {new_mounts:?}");
    let tmp_left = entries(&tmpdir.path().to_string_lossy());
    assert!(
        tmp_left.is_empty(),
        "temporary files left behind: {tmp_left:?}"
    );
    let shm_new: Vec<String> = entries("/dev/shm")
        .difference(&shm_before)
        .filter(|n| n.contains("bunker"))
        .cloned()
        .collect();
    assert!(shm_new.is_empty(), "shared memory left behind: {shm_new:?}");
}

/// Starts a supervisor whose sandbox (with cgroup limits) runs two `sleep`s on `marker`, and
/// waits until both run. The marker is put together inside the sandbox (`$1$2`), so the
/// supervisor's own command line (and its clone, init) does not contain it.
fn start_sleeping(marker: &str) -> Child {
    let (a, b) = marker.split_at(marker.find('.').unwrap() + 1);
    let child = bunker()
        .args([
            "run", "--report", "json", "--memory", "64MB", "--pids", "32", "--",
        ])
        .args([
            "sh",
            "-c",
            "sleep \"$1$2\" & exec sleep \"$1$2\"",
            "sh",
            a,
            b,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the sandbox to start", Duration::from_secs(20), || {
        alive_with(marker).len() >= 2
    });
    child
}

#[test]
fn supervisor_sigkill_leaves_no_sandbox_process_and_the_next_run_removes_its_cgroup() {
    let marker = unique_sleep(2);
    let mut child = start_sleeping(&marker);
    let supervisor = BTreeSet::from([child.id()]);
    let dirs = cgroups_of(&supervisor);
    assert!(
        dirs.len() >= 2,
        "memory and pids cgroups expected: {dirs:?}"
    );

    child.kill().unwrap(); // SIGKILL: no chance to clean up.
    child.wait().unwrap();
    // init has PDEATHSIG = SIGKILL; the pid namespace dies with it.
    wait_until(
        "the sandbox to die with its supervisor",
        Duration::from_secs(5),
        || alive_with(&marker).is_empty(),
    );
    // The next run with a cgroup limit cleans up what the dead supervisor left (any bunker run
    // with a cgroup does, so a concurrent test may have been first).
    let out = bunker()
        .args(["run", "--report", "json", "--pids", "16", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(report(&out)["status"], "ok", "{}", stderr(&out));
    let left = cgroups_of(&supervisor);
    assert!(left.is_empty(), "stale cgroups not removed: {left:?}");
}

#[test]
fn doctor_clean_removes_a_killed_supervisors_cgroup() {
    // Any bunker run with a cgroup also cleans stale ones, and other tests run at the same
    // time: one of them may beat doctor to it. Try a few times; doctor must win at least once.
    for attempt in 0..5 {
        let marker = unique_sleep(10 + attempt);
        let mut child = start_sleeping(&marker);
        let supervisor = BTreeSet::from([child.id()]);
        assert!(!cgroups_of(&supervisor).is_empty());
        child.kill().unwrap();
        child.wait().unwrap();
        wait_until(
            "the sandbox to die with its supervisor",
            Duration::from_secs(5),
            || alive_with(&marker).is_empty(),
        );
        let out = bunker()
            .args(["doctor", "--clean", "--json"])
            .output()
            .unwrap();
        let left = cgroups_of(&supervisor);
        let text = stdout(&out);
        assert!(left.is_empty(), "doctor --clean left {left:?}\n{text}");
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        let cleaned = report["cleaned"].as_array().unwrap();
        let ours = format!("bunker-{}-", child.id());
        if cleaned
            .iter()
            .any(|c| c.as_str().unwrap_or("").contains(&ours))
        {
            return;
        }
    }
    panic!("doctor --clean never removed the stale cgroup itself in 5 attempts");
}

#[test]
fn supervisor_sigterm_kills_the_sandbox_removes_its_cgroup_and_reports() {
    let marker = unique_sleep(4);
    let child = start_sleeping(&marker);
    let supervisor = BTreeSet::from([child.id()]);
    assert!(!cgroups_of(&supervisor).is_empty());
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    // The sandbox is gone by the time the supervisor exits, and so is its cgroup.
    assert!(
        alive_with(&marker).is_empty(),
        "left alive: {:?}",
        alive_with(&marker)
    );
    assert!(cgroups_of(&supervisor).is_empty());
    assert_eq!(out.status.code(), Some(128 + 15), "{}", stderr(&out));
    let r = report(&out);
    assert_eq!(r["status"], "signal");
    assert_eq!(r["signal"], 15);
    assert!(r["error"].as_str().unwrap().contains("SIGTERM"), "{r}");
}

#[test]
fn supervisor_sigint_is_handled_like_sigterm() {
    let marker = unique_sleep(5);
    let child = start_sleeping(&marker);
    let supervisor = BTreeSet::from([child.id()]);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(alive_with(&marker).is_empty());
    assert!(cgroups_of(&supervisor).is_empty());
    assert_eq!(out.status.code(), Some(128 + 2), "{}", stderr(&out));
}
