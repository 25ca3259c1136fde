//! The sandbox's cgroup: created and filled with its limits before the program runs, joined by
//! init, read while the sandbox runs, removed at the end; and the cgroups of killed supervisors.

use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use bunker_cgroup::{
    clean_stale_in, CgroupError, Controller, Layout, MemorySample, MemoryStats, SandboxGroup,
};
use bunker_policy::{Limits, Policy};

use super::controllers::{apply, set_status, wanted, Wanted};
use crate::error::SandboxError;
use crate::result::{Enforced, LayerStatus};

/// The sandbox's cgroup, removed on drop (or by [`destroy`]).
///
/// [`destroy`]: SandboxCgroup::destroy
#[derive(Debug, Default)]
pub struct SandboxCgroup {
    /// `None` when the policy needs no cgroup (no memory, pids, cpu or cpu_time limit), or when
    /// every limit that needed one was best-effort and could not be had.
    group: Option<SandboxGroup>,
    /// The layout to look for cgroups left behind by killed supervisors, until that is done
    /// ([`clean_stale_groups`](Self::clean_stale_groups)).
    stale_to_clean: RefCell<Option<Box<Layout>>>,
}

impl SandboxCgroup {
    /// No cgroup at all.
    pub fn none() -> SandboxCgroup {
        SandboxCgroup {
            group: None,
            stale_to_clean: RefCell::new(None),
        }
    }

    /// The cgroup, to hand to another process (`spawner.rs`); `None` when there is none.
    pub fn into_group(self) -> Option<SandboxGroup> {
        self.group
    }

    /// A cgroup another process made (`spawner.rs`).
    pub fn from_group(group: Option<SandboxGroup>) -> SandboxCgroup {
        SandboxCgroup {
            group,
            stale_to_clean: RefCell::new(None),
        }
    }

    /// Runs in the supervisor (spawn.rs: while init builds its root). Creates the cgroup under
    /// the supervisor's own cgroup and writes the limits; records what is enforced into `enforced`. Fails closed when
    /// a limit cannot be enforced and is not marked best-effort.
    pub fn prepare(
        policy: &Policy,
        enforced: &mut Enforced,
    ) -> Result<SandboxCgroup, SandboxError> {
        let limits = &policy.limits;
        enforced.memory_limit = LayerStatus::Off;
        enforced.pids_limit = LayerStatus::Off;
        enforced.cpu_limit = LayerStatus::Off;
        enforced.cpu_time_limit = LayerStatus::Off;
        let wanted = wanted(limits);
        if wanted.is_empty() {
            return Ok(SandboxCgroup::none());
        }
        let controllers: Vec<Controller> = wanted.iter().map(|w| w.controller()).collect();
        let layout = Layout::detect_for(&controllers);
        let mut group = SandboxGroup::new();
        for want in wanted {
            let outcome = match &layout {
                Ok(layout) => apply(&mut group, layout, want),
                Err(e) => Err(format!("cannot read the cgroup layout: {e}")),
            };
            match outcome {
                Ok((status, note)) => {
                    set_status(enforced, want, status);
                    enforced.notes.extend(note);
                }
                Err(reason) if limits.best_effort.contains(&want.name()) => {
                    let fallback = if matches!(want, Wanted::CpuTime) {
                        // RLIMIT_CPU still bounds each process (not the whole tree).
                        enforced.notes.push(format!(
                            "{} only per process (RLIMIT_CPU), best effort: {reason}",
                            want.label()
                        ));
                        LayerStatus::Partial
                    } else {
                        enforced.notes.push(format!(
                            "{} not enforced (best effort): {reason}",
                            want.label()
                        ));
                        LayerStatus::Off
                    };
                    set_status(enforced, want, fallback);
                }
                Err(reason) => {
                    // `group` is dropped here: what was created so far is removed.
                    return Err(SandboxError::Unsupported {
                        layer: want.label().to_string(),
                        reason: format!(
                            "{reason}; add \"{}\" to limits.best_effort to run without it",
                            want.key()
                        ),
                    });
                }
            }
        }
        // No CPU accounting cgroup unless `cpu_time` needs one to be watched: `cpu_ms` comes
        // from init's rusage, which holds every process of the sandbox, because init kills and
        // reaps them itself (init.rs, `teardown_and_exit`).
        // Stale groups are looked for only where this run made its own: the hierarchies a run
        // with this policy uses (`bunker doctor --clean` looks everywhere).
        let used = group.paths();
        let stale_to_clean = layout.ok().map(|mut layout| {
            layout
                .hierarchies
                .retain(|h| used.iter().any(|p| p.parent() == Some(h.own_dir.as_path())));
            Box::new(layout)
        });
        let group = (!used.is_empty()).then_some(group);
        Ok(SandboxCgroup {
            group,
            stale_to_clean: RefCell::new(stale_to_clean),
        })
    }

    /// Removes what SIGKILLed supervisors left behind (their `bunker-<pid>-<n>` cgroups), once
    /// per sandbox that wanted a cgroup. Called when the program has ended (supervise.rs),
    /// while init exits, rather than at the start, where it competed for the CPU with the
    /// sandbox's setup. Failures (rootless) are not ours to fix here; `bunker doctor --clean`
    /// reports them.
    pub fn clean_stale_groups(&self) {
        if let Some(layout) = self.stale_to_clean.take() {
            let _ = clean_stale_in(&layout, &pid_alive);
        }
    }

    /// Writes `limits.memory` and `limits.pids` again, for a warm sandbox handed to a request
    /// whose limits are lower than its pool's (`Prepared::launch`, before the program runs):
    /// the same files a cold start writes (`set_memory_limit`, `set_pids_limit`). A limit the
    /// cgroup does not hold (none, or best effort and not had) is left, as a cold start would.
    /// Only for lowering: on v1 the memory limit is written before memsw, which must not be
    /// below it.
    pub fn lower_limits(&self, limits: &Limits) -> Result<(), SandboxError> {
        let Some(g) = &self.group else {
            return Ok(());
        };
        let failed = |what: &str, value: u64| {
            let step = format!("lower the {what} limit of a warm sandbox to {value}");
            move |source| SandboxError::Cgroup {
                step,
                source: Box::new(source),
            }
        };
        if let Some(bytes) = limits.memory.filter(|_| self.has(Controller::Memory)) {
            g.set_memory_limit(bytes).map_err(failed("memory", bytes))?;
        }
        if let Some(max) = limits.pids.filter(|_| self.has(Controller::Pids)) {
            g.set_pids_limit(max).map_err(failed("pids", max))?;
        }
        Ok(())
    }

    /// Moves `pid` (the sandbox's init, still waiting before setup) into the cgroup.
    pub fn add_process(&self, pid: i32) -> Result<(), SandboxError> {
        match &self.group {
            Some(g) => g.add_process(pid).map_err(|source| SandboxError::Cgroup {
                step: format!("move sandbox init (pid {pid}) into its cgroup"),
                source: Box::new(source),
            }),
            None => Ok(()),
        }
    }

    /// Prepares init's move into the cgroup (spawn.rs, while init builds its root): init's pid
    /// is written into the v2 hierarchy if there is one, and the returned `tasks` files of the
    /// v1 hierarchies go to init, which writes "0" to each to move itself ([`join_self`]) —
    /// far cheaper on v1 than writing its pid to `cgroup.procs` from here (no RCU grace
    /// period). Init is single-threaded, so moving its thread moves the process.
    ///
    /// [`join_self`]: bunker_cgroup::join_self
    pub fn prepare_join(&self, pid: i32) -> Result<Vec<OwnedFd>, SandboxError> {
        let Some(g) = &self.group else {
            return Ok(Vec::new());
        };
        let fail = |source: CgroupError| SandboxError::Cgroup {
            step: format!("move sandbox init (pid {pid}) into its cgroup"),
            source: Box::new(source),
        };
        g.add_process_v2(pid).map_err(fail)?;
        Ok(g.open_self_join()
            .map_err(fail)?
            .into_iter()
            .map(OwnedFd::from)
            .collect())
    }

    /// The cgroup directories of this sandbox (one per hierarchy used).
    pub fn paths(&self) -> Vec<PathBuf> {
        self.group
            .as_ref()
            .map(SandboxGroup::paths)
            .unwrap_or_default()
    }

    /// Whether the sandbox's cgroup has `controller` (without reading anything).
    pub fn has(&self, controller: Controller) -> bool {
        self.group
            .as_ref()
            .is_some_and(|g| g.path_for(controller).is_some())
    }

    /// CPU time the sandbox used so far, when CPU accounting is on.
    pub fn cpu_usage(&self) -> Option<Duration> {
        self.group.as_ref()?.cpu_usage().ok().flatten()
    }

    /// OOM kills and peak memory, when the memory controller is on.
    pub fn memory_stats(&self) -> Option<MemoryStats> {
        self.group.as_ref()?.memory_stats().ok().flatten()
    }

    /// Charged memory, when the memory controller is on.
    pub fn memory_usage(&self) -> Option<u64> {
        self.group.as_ref()?.memory_usage().ok().flatten()
    }

    /// Usage with refault and major-fault counters, when the memory controller is on.
    pub fn memory_sample(&self) -> Option<MemorySample> {
        self.group.as_ref()?.memory_sample().ok().flatten()
    }

    /// Forks refused by the pids limit, when the pids controller is on.
    pub fn pids_limit_hits(&self) -> Option<u64> {
        self.group.as_ref()?.pids_limit_hits().ok().flatten()
    }

    /// Kills whatever is left in the cgroup and removes it (drop does the same, silently).
    pub fn destroy(&mut self) -> Result<(), SandboxError> {
        match self.group.take() {
            Some(mut g) => g.destroy().map_err(|source| SandboxError::Cgroup {
                step: format!("remove {}", g.name()),
                source: Box::new(source),
            }),
            None => Ok(()),
        }
    }
}

fn pid_alive(pid: i32) -> bool {
    pid > 0 && std::path::Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the cgroups left by supervisors that died without cleaning up (SIGKILL), killing
/// anything still inside. Returns the directories removed. Backs `bunker doctor --clean`.
pub fn clean_stale() -> Result<Vec<String>, SandboxError> {
    let report = bunker_cgroup::clean_stale().map_err(|source| SandboxError::Cgroup {
        step: "find stale sandbox cgroups".into(),
        source: Box::new(source),
    })?;
    if let Some((path, reason)) = report.failed.first() {
        return Err(SandboxError::Init {
            step: format!(
                "cgroup: removed {} stale cgroup(s), but cannot remove {} ({} in all)",
                report.removed.len(),
                path.display(),
                report.failed.len()
            ),
            detail: reason.clone(),
        });
    }
    Ok(report
        .removed
        .iter()
        .map(|p| p.display().to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limits_no_cgroup() {
        let policy = bunker_policy::load_str("{}", std::path::Path::new("/"), "test").unwrap();
        let mut enforced = Enforced::default();
        let cg = SandboxCgroup::prepare(&policy, &mut enforced).unwrap();
        assert!(cg.paths().is_empty());
        assert_eq!(enforced.memory_limit, LayerStatus::Off);
        assert!(enforced.notes.is_empty());
    }
}
