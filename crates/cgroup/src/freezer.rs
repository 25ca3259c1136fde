//! The cgroup freezer, which pauses every process of a sandbox at once (`bunker serve`'s
//! `pause` / `resume`).
//!
//! On cgroup v2 the sandbox's own group has `cgroup.freeze`. On a v1 (or hybrid) host the
//! freezer is a hierarchy of its own, where bunker creates no group at start: a pause creates
//! `bunker-<our pid>-<n>` below our own freezer cgroup and moves the sandbox's processes into it
//! (children forked later inherit it). v1 semantics to mind: a frozen task does not act on
//! SIGKILL until it is thawed, so whoever kills a paused sandbox thaws it too; a freeze is
//! `FREEZING` until every task has stopped, so [`Freezer::is_frozen`] is polled.

use std::path::{Path, PathBuf};

use crate::error::CgroupError;
use crate::group::{read_kernel_file, read_procs, remove_group_dir, write_file};
use crate::layout::{Layout, Version};
use crate::stale::{parse_group_name, CleanReport};

/// One sandbox's freezer.
#[derive(Debug)]
pub struct Freezer {
    version: Version,
    dir: PathBuf,
}

/// The v1 freezer hierarchy's own cgroup directory of this process, if one is mounted.
fn v1_freezer_dir(layout: &Layout) -> Option<&Path> {
    layout
        .hierarchies
        .iter()
        .find(|h| h.version == Version::V1 && h.controllers.iter().any(|c| c == "freezer"))
        .map(|h| h.own_dir.as_path())
}

impl Freezer {
    /// The freezer of a sandbox whose cgroup v2 group (if it has one) is `v2_group`: that
    /// group's `cgroup.freeze` when it has one; otherwise a new group named `name` in the v1
    /// freezer hierarchy, below this process's own (processes join it through
    /// [`Freezer::adopt`]).
    pub fn for_sandbox(
        layout: &Layout,
        v2_group: Option<&Path>,
        name: &str,
    ) -> Result<Freezer, CgroupError> {
        if let Some(dir) = v2_group.filter(|d| d.join("cgroup.freeze").exists()) {
            return Ok(Freezer {
                version: Version::V2,
                dir: dir.to_path_buf(),
            });
        }
        let own = v1_freezer_dir(layout).ok_or_else(|| CgroupError::NotMounted {
            controller: "freezer".to_string(),
        })?;
        let dir = own.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::io("mkdir", dir, e)),
        }
        Ok(Freezer {
            version: Version::V1,
            dir,
        })
    }

    /// The group's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Moves processes into a v1 freezer group (a no-op on v2, where the sandbox's processes
    /// are in the group already). A process that has exited meanwhile is skipped.
    pub fn adopt(&self, pids: &[i32]) -> Result<(), CgroupError> {
        if self.version == Version::V2 {
            return Ok(());
        }
        let procs = self.dir.join("cgroup.procs");
        for pid in pids {
            match std::fs::write(&procs, pid.to_string()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => return Err(CgroupError::io(format!("write {pid} to"), procs, e)),
            }
        }
        Ok(())
    }

    /// Pids in the group now.
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        read_procs(&self.dir)
    }

    /// Asks the kernel to freeze (`true`) or thaw (`false`) the group. Thawing is immediate; a
    /// freeze is complete once [`Freezer::is_frozen`] says so.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        match self.version {
            Version::V1 => write_file(
                &self.dir.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            Version::V2 => write_file(
                &self.dir.join("cgroup.freeze"),
                if frozen { "1" } else { "0" },
            ),
        }
    }

    /// Whether every process of the group is frozen.
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match self.version {
            Version::V1 => {
                let path = self.dir.join("freezer.state");
                let state =
                    read_kernel_file(&path).map_err(|e| CgroupError::io("read", path, e))?;
                Ok(state.trim() == "FROZEN")
            }
            Version::V2 => {
                let path = self.dir.join("cgroup.events");
                let events =
                    read_kernel_file(&path).map_err(|e| CgroupError::io("read", path, e))?;
                Ok(events.lines().any(|l| l.trim() == "frozen 1"))
            }
        }
    }

    /// Thaws the group and, on v1, removes it (killing what is still inside: call this once the
    /// sandbox is gone). The v2 group is the sandbox's own and is removed with it.
    pub fn remove(self) -> Result<(), CgroupError> {
        match self.version {
            Version::V2 => Ok(()),
            Version::V1 => {
                let _ = self.set_frozen(false);
                remove_group_dir(&self.dir)
            }
        }
    }
}

/// Removes the v1 freezer groups a killed daemon left below our own freezer cgroup, thawing
/// them first so what is inside can be killed.
pub fn clean_stale_freezers(layout: &Layout) -> CleanReport {
    clean_stale_freezers_in(layout, &crate::stale::pid_alive)
}

/// [`clean_stale_freezers`] deciding liveness with `is_alive` (tests pass a fake): a group
/// `bunker-<pid>-<n>` is stale when `pid` is not alive.
pub fn clean_stale_freezers_in(layout: &Layout, is_alive: &dyn Fn(i32) -> bool) -> CleanReport {
    let mut report = CleanReport::default();
    let Some(own) = v1_freezer_dir(layout) else {
        return report;
    };
    let Ok(entries) = std::fs::read_dir(own) else {
        return report;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, _)) = name.to_str().and_then(parse_group_name) else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        if is_alive(pid) {
            report.live.push(path);
            continue;
        }
        let _ = write_file(&path.join("freezer.state"), "THAWED");
        report.killed += read_procs(&path).map(|p| p.len()).unwrap_or(0);
        match remove_group_dir(&path) {
            Ok(()) => report.removed.push(path),
            Err(e) => report.failed.push((path, e.to_string())),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_v1_freezer_group_is_made_below_our_own_and_stale_ones_are_removed() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let r = root.path();
        fs::create_dir_all(r.join("freezer/job/bunker-100-0")).unwrap_or_default();
        fs::create_dir_all(r.join("freezer/job/bunker-200-0")).unwrap_or_default();
        let mounts = format!(
            "35 31 0:32 / {r}/freezer rw - cgroup cgroup rw,freezer\n",
            r = r.display()
        );
        let layout = Layout::parse("6:freezer:/job\n", &mounts);
        let freezer = Freezer::for_sandbox(&layout, None, "bunker-200-1");
        let freezer = freezer.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(freezer.dir(), r.join("freezer/job/bunker-200-1"));
        let report = clean_stale_freezers_in(&layout, &|pid| pid == 200);
        assert_eq!(report.removed, vec![r.join("freezer/job/bunker-100-0")]);
        assert!(r.join("freezer/job/bunker-200-0").is_dir());
    }
}
