//! Removal of cgroups left behind by a supervisor that was killed (SIGKILL gives it no chance to
//! clean up). Each sandbox cgroup is named after its supervisor's pid, so a `bunker-<pid>-<n>`
//! whose pid is no longer alive is stale. Run before creating a new sandbox cgroup and by
//! `bunker doctor --clean`.

use std::path::{Path, PathBuf};

use crate::error::CgroupError;
use crate::group::{read_procs, remove_group_dir};
use crate::layout::{Controller, Layout};

/// What a cleanup found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanReport {
    /// Stale cgroup directories removed.
    pub removed: Vec<PathBuf>,
    /// Processes that were still inside them (killed before removal).
    pub killed: usize,
    /// Sandbox cgroups of live supervisors, left alone.
    pub live: Vec<PathBuf>,
    /// Stale directories that could not be removed, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

/// The supervisor pid and counter of a sandbox cgroup name (`bunker-<pid>-<n>`).
pub fn parse_group_name(name: &str) -> Option<(i32, u64)> {
    let rest = name.strip_prefix("bunker-")?;
    let (pid, n) = rest.split_once('-')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(pid) || !all_digits(n) {
        return None;
    }
    Some((pid.parse().ok()?, n.parse().ok()?))
}

/// Cleans the stale sandbox cgroups below this process's own cgroups.
pub fn clean_stale() -> Result<CleanReport, CgroupError> {
    Ok(clean_stale_in(&Layout::detect()?, &pid_alive))
}

/// Cleans stale sandbox cgroups below the own cgroups of `layout`, deciding liveness with
/// `is_alive` (tests pass a fake). Only hierarchies bunker creates cgroups in are looked at, and
/// only entries named exactly like bunker's.
pub fn clean_stale_in(layout: &Layout, is_alive: &dyn Fn(i32) -> bool) -> CleanReport {
    let mut report = CleanReport::default();
    let mut seen: Vec<&Path> = Vec::new();
    let controllers = [
        Controller::Memory,
        Controller::Pids,
        Controller::Cpu,
        Controller::CpuAcct,
    ];
    for hierarchy in &layout.hierarchies {
        if !controllers.iter().any(|c| hierarchy.provides(*c))
            || seen.contains(&hierarchy.own_dir.as_path())
        {
            continue;
        }
        seen.push(&hierarchy.own_dir);
        let Ok(entries) = std::fs::read_dir(&hierarchy.own_dir) else {
            continue;
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
            report.killed += read_procs(&path).map(|p| p.len()).unwrap_or(0);
            match remove_group_dir(&path) {
                Ok(()) => report.removed.push(path),
                Err(e) => report.failed.push((path, e.to_string())),
            }
        }
    }
    report
}

/// Whether the supervisor with this pid is still running (in our pid namespace). A zombie is
/// not: it has exited and will never remove its cgroups, and an orphaned one may stay unreaped
/// for as long as its new parent (pid 1 of a container or VM) neglects it.
pub(crate) fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))
    else {
        return false;
    };
    // The state follows the parenthesized command name, which may itself hold ") ".
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn names_parse_strictly() {
        assert_eq!(parse_group_name("bunker-123-4"), Some((123, 4)));
        assert_eq!(parse_group_name("bunker-123"), None);
        assert_eq!(parse_group_name("bunker-12a-4"), None);
        assert_eq!(parse_group_name("bunker--4"), None);
        assert_eq!(parse_group_name("bunker-1-2-3"), None);
        assert_eq!(parse_group_name("other-1-2"), None);
    }

    #[test]
    fn only_dead_supervisors_groups_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("memory/job")).unwrap();
        fs::create_dir_all(r.join("pids")).unwrap();
        for d in [
            "memory/job/bunker-100-0",
            "memory/job/bunker-200-3",
            "pids/bunker-100-0",
            "pids/bunker-200-3",
            "pids/bunker-100-x",
            "pids/something-else",
        ] {
            fs::create_dir(r.join(d)).unwrap();
        }
        // Not ours (outside our own cgroup): must survive.
        fs::create_dir_all(r.join("memory/other/bunker-100-0")).unwrap();
        let mounts = format!(
            "35 31 0:32 / {r}/memory rw - cgroup cgroup rw,memory\n\
             39 31 0:36 / {r}/pids rw - cgroup cgroup rw,pids\n",
            r = r.display()
        );
        let layout = Layout::parse("8:pids:/\n4:memory:/job\n", &mounts);
        let report = clean_stale_in(&layout, &|pid| pid == 200);
        let mut removed = report.removed.clone();
        removed.sort();
        assert_eq!(
            removed,
            vec![
                r.join("memory/job/bunker-100-0"),
                r.join("pids/bunker-100-0")
            ]
        );
        assert_eq!(report.live.len(), 2);
        assert!(report.failed.is_empty());
        assert!(r.join("memory/job/bunker-200-3").is_dir());
        assert!(r.join("pids/bunker-100-x").is_dir());
        assert!(r.join("pids/something-else").is_dir());
        assert!(r.join("memory/other/bunker-100-0").is_dir());
    }

    #[test]
    fn this_process_counts_as_alive() {
        assert!(pid_alive(std::process::id() as i32));
        assert!(!pid_alive(0));
    }
}
