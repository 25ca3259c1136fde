//! Against this host's real cgroupfs (root only; skipped where the hierarchy is missing or not
//! writable). Everything is created under the test process's own cgroups and removed.
// Helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use bunker_cgroup::{Controller, Layout, SandboxGroup};

#[path = "../../test-support/skip.rs"]
mod skip;

fn usable(layout: &Layout, c: Controller) -> bool {
    let Some(h) = layout.hierarchy_for(c) else {
        skip::skip(&format!("no {c:?} hierarchy"));
        return false;
    };
    let probe = h
        .own_dir
        .join(format!("bunker-probe-{}", std::process::id()));
    let ok = std::fs::create_dir(&probe).is_ok();
    let _ = std::fs::remove_dir(&probe);
    if !ok {
        skip::skip(&format!("{} not writable", h.own_dir.display()));
    }
    ok
}

#[test]
fn memory_limit_oom_kills_and_is_counted() {
    let layout = Layout::detect().unwrap();
    if !usable(&layout, Controller::Memory) {
        return;
    }
    let mut g = SandboxGroup::new();
    let dir = g.enable(&layout, Controller::Memory).unwrap().to_path_buf();
    g.set_memory_limit(32 << 20).unwrap();
    // The child waits on stdin until it has been moved into the group.
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys; sys.stdin.read(1); x = b'a' * (200 << 20); print(len(x))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    g.add_process(child.id() as i32).unwrap();
    // `python3` may be a version manager's shim that runs helpers of its own: the child is
    // among the group's processes, maybe not alone.
    assert!(g.procs().unwrap().contains(&(child.id() as i32)));
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    let stats = g.memory_stats().unwrap().unwrap();
    assert!(stats.oom_kills >= 1, "{stats:?}");
    let peak = stats.peak_bytes.unwrap();
    assert!(peak > 16 << 20 && peak <= 32 << 20, "peak {peak}");
    g.destroy().unwrap();
    assert!(!dir.exists());
}

#[test]
fn pids_limit_stops_forks_and_is_counted() {
    let layout = Layout::detect().unwrap();
    if !usable(&layout, Controller::Pids) {
        return;
    }
    let mut g = SandboxGroup::new();
    g.enable(&layout, Controller::Pids).unwrap();
    g.set_pids_limit(4).unwrap();
    let mut child = Command::new("sh")
        .args([
            "-c",
            "read x; for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait",
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    g.add_process(child.id() as i32).unwrap();
    drop(child.stdin.take());
    // Let the forks happen, then tear down while the sleeps are alive: destroy must kill them.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(g.pids_limit_hits().unwrap().unwrap() >= 1);
    let inside = g.procs().unwrap();
    assert!(!inside.is_empty() && inside.len() <= 4, "{inside:?}");
    g.destroy().unwrap();
    // dash gives up at the first failed fork, so the shell itself may be gone already; the
    // sleeps it started must be killed by destroy.
    let _ = child.wait().unwrap();
    for pid in inside {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
        assert!(
            matches!(state, None | Some('Z') | Some('X')),
            "pid {pid} alive: {stat}"
        );
    }
}

#[test]
fn cpu_accounting_counts_a_busy_child() {
    let layout = Layout::detect().unwrap();
    if !usable(&layout, Controller::CpuAcct) || !usable(&layout, Controller::Cpu) {
        return;
    }
    let mut g = SandboxGroup::new();
    g.enable(&layout, Controller::CpuAcct).unwrap();
    g.enable(&layout, Controller::Cpu).unwrap();
    g.set_cpu_limit(0.5).unwrap();
    let mut child = Command::new("sh")
        .args([
            "-c",
            "read x; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    g.add_process(child.id() as i32).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert!(g.cpu_usage().unwrap().unwrap() > std::time::Duration::from_millis(10));
}

#[test]
fn the_statmount_layout_matches_mountinfo_on_this_host() {
    let all = [
        Controller::Memory,
        Controller::Pids,
        Controller::Cpu,
        Controller::CpuAcct,
    ];
    for wanted in [&all[..], &all[..1], &all[1..2], &all[2..]] {
        let mut full = Layout::detect().unwrap();
        full.keep_providers_of(wanted);
        let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let fast = Layout::at_conventional_mounts(&proc_cgroup, wanted, |p| {
            bunker_sys::mount::mount_facts(p).ok().flatten()
        });
        // Hosts that mount their hierarchies elsewhere get `None` (and `detect` is used).
        if let Some(fast) = fast {
            assert_eq!(fast, full, "{wanted:?}");
        }
        assert_eq!(Layout::detect_for(wanted).unwrap(), full, "{wanted:?}");
    }
}
