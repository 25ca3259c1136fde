//! Limits: the sandbox's cgroup (memory, pids, CPU) and its rlimits.
//!
//! The cgroup is created by the supervisor under its own cgroup in each hierarchy a limit needs
//! (`bunker-<supervisor pid>-<n>`), and init moves itself into it before it may fork the program
//! (spawn.rs prepares this while init builds its root; see [`SandboxCgroup::prepare_join`]). Every requested limit is enforced by the kernel or the run is refused
//! (fail closed), unless the policy lists it in `limits.best_effort`: then the result says
//! `off` (or `partial`) with a note. The rlimits are applied inside the sandbox by init, before
//! it forks the program.

use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use bunker_cgroup::{
    clean_stale_in, CgroupError, Controller, Layout, MemorySample, MemoryStats, SandboxGroup,
};
use bunker_policy::{LimitName, Limits, Policy};
use bunker_sys::rlimit::{self, Resource, Rlimit};

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

/// One limit that needs a cgroup controller.
#[derive(Debug, Clone, Copy)]
enum Wanted {
    Memory(u64),
    Pids(u64),
    Cpu(f64),
    CpuTime,
}

impl Wanted {
    fn name(self) -> LimitName {
        match self {
            Wanted::Memory(_) => LimitName::Memory,
            Wanted::Pids(_) => LimitName::Pids,
            Wanted::Cpu(_) => LimitName::Cpu,
            Wanted::CpuTime => LimitName::CpuTime,
        }
    }

    /// How the limit is named to the user: the policy key.
    fn label(self) -> &'static str {
        match self {
            Wanted::Memory(_) => "memory limit (limits.memory)",
            Wanted::Pids(_) => "pids limit (limits.pids)",
            Wanted::Cpu(_) => "cpu limit (limits.cpu)",
            Wanted::CpuTime => "cpu_time limit (limits.cpu_time)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Wanted::Memory(_) => "memory",
            Wanted::Pids(_) => "pids",
            Wanted::Cpu(_) => "cpu",
            Wanted::CpuTime => "cpu_time",
        }
    }

    fn controller(self) -> Controller {
        match self {
            Wanted::Memory(_) => Controller::Memory,
            Wanted::Pids(_) => Controller::Pids,
            Wanted::Cpu(_) => Controller::Cpu,
            Wanted::CpuTime => Controller::CpuAcct,
        }
    }
}

fn wanted(limits: &Limits) -> Vec<Wanted> {
    let mut w = Vec::new();
    if let Some(m) = limits.memory {
        w.push(Wanted::Memory(m));
    }
    if let Some(p) = limits.pids {
        w.push(Wanted::Pids(p));
    }
    if let Some(c) = limits.cpu {
        w.push(Wanted::Cpu(c));
    }
    if limits.cpu_time.is_some() {
        w.push(Wanted::CpuTime);
    }
    w
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

fn set_status(enforced: &mut Enforced, want: Wanted, status: LayerStatus) {
    match want {
        Wanted::Memory(_) => enforced.memory_limit = status,
        Wanted::Pids(_) => enforced.pids_limit = status,
        Wanted::Cpu(_) => enforced.cpu_limit = status,
        Wanted::CpuTime => enforced.cpu_time_limit = status,
    }
}

/// Creates the controller's directory and writes the limit. Returns the status and an optional
/// note, or why it cannot be enforced.
fn apply(
    group: &mut SandboxGroup,
    layout: &Layout,
    want: Wanted,
) -> Result<(LayerStatus, Option<String>), String> {
    let explain = |e: CgroupError| {
        if e.is_permission_denied() {
            format!("{e} (no permission: rootless without cgroup delegation?)")
        } else {
            e.to_string()
        }
    };
    group.enable(layout, want.controller()).map_err(explain)?;
    match want {
        Wanted::Memory(bytes) => {
            let outcome = group.set_memory_limit(bytes).map_err(explain)?;
            if !outcome.swap_limited && host_has_swap() {
                return Ok((
                    LayerStatus::Partial,
                    Some(
                        "memory limit: swap is not limited (no swap accounting on this host)"
                            .to_string(),
                    ),
                ));
            }
            Ok((LayerStatus::On, None))
        }
        Wanted::Pids(max) => {
            group.set_pids_limit(max).map_err(explain)?;
            Ok((LayerStatus::On, None))
        }
        Wanted::Cpu(cores) => {
            group.set_cpu_limit(cores).map_err(explain)?;
            Ok((LayerStatus::On, None))
        }
        // Accounting only: the supervisor polls it and kills at the limit.
        Wanted::CpuTime => Ok((LayerStatus::On, None)),
    }
}

/// Whether any swap device is active (then a memory limit without swap accounting leaks into
/// swap).
fn host_has_swap() -> bool {
    std::fs::read_to_string("/proc/swaps").is_ok_and(|s| s.lines().count() > 1)
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

/// Runs inside the sandbox before exec: file size, open files, stack, core dumps off, no
/// real-time scheduling and no raised priority (RLIMIT_RTPRIO and RLIMIT_NICE 0: a caller's
/// `rtprio 95` from limits.conf would let a SCHED_FIFO loop take a CPU from the host, outside
/// the CFS quota that `limits.cpu` is), and
/// RLIMIT_CPU as a per-process backstop for `cpu_time` (the supervisor's cgroup accounting is
/// the real limit, for the whole tree; this one only fires if that fails, a little later).
/// Limits only ever go down: a lower hard limit inherited from the caller stays.
pub fn apply_rlimits(limits: &Limits) -> Result<(), SandboxError> {
    let set = |resource: Resource, value: u64| {
        rlimit::cap_rlimit(resource, value).map_err(|source| SandboxError::Setup {
            step: format!("set {} to {value}", resource.name()),
            source,
        })
    };
    set(Resource::Core, 0)?;
    set(Resource::RealtimePriority, 0)?;
    set(Resource::Nice, 0)?;
    if let Some(n) = limits.file_size {
        set(Resource::FileSize, n)?;
    }
    if let Some(n) = limits.open_files {
        set(Resource::OpenFiles, n)?;
    }
    if let Some(n) = limits.stack {
        set(Resource::Stack, n)?;
    }
    if let Some(t) = limits.cpu_time {
        let (soft, hard) = cpu_rlimit_seconds(t);
        let current =
            rlimit::get_rlimit(Resource::CpuSeconds).map_err(|source| SandboxError::Setup {
                step: "read RLIMIT_CPU".to_string(),
                source,
            })?;
        let cap = |v: u64| Some(current.hard.map_or(v, |h| h.min(v)));
        rlimit::set_rlimit(
            Resource::CpuSeconds,
            Rlimit {
                soft: cap(soft),
                hard: cap(hard),
            },
        )
        .map_err(|source| SandboxError::Setup {
            step: format!("set RLIMIT_CPU to {soft}s (hard {hard}s)"),
            source,
        })?;
    }
    Ok(())
}

/// RLIMIT_CPU for a `cpu_time` limit: whole seconds, one above the limit (SIGXCPU), and the
/// hard limit (SIGKILL) one more above.
fn cpu_rlimit_seconds(limit: Duration) -> (u64, u64) {
    let soft = limit.as_secs_f64().ceil() as u64 + 1;
    (soft, soft + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rlimit_is_a_backstop_above_the_limit() {
        assert_eq!(cpu_rlimit_seconds(Duration::from_millis(1)), (2, 3));
        assert_eq!(cpu_rlimit_seconds(Duration::from_secs(1)), (2, 3));
        assert_eq!(cpu_rlimit_seconds(Duration::from_millis(1500)), (3, 4));
    }

    #[test]
    fn no_limits_no_cgroup() {
        let policy = bunker_policy::load_str("{}", std::path::Path::new("/"), "test").unwrap();
        let mut enforced = Enforced::default();
        let cg = SandboxCgroup::prepare(&policy, &mut enforced).unwrap();
        assert!(cg.paths().is_empty());
        assert_eq!(enforced.memory_limit, LayerStatus::Off);
        assert!(enforced.notes.is_empty());
    }

    #[test]
    fn wanted_limits_map_to_controllers() {
        let limits = Limits {
            memory: Some(1),
            cpu_time: Some(Duration::from_secs(1)),
            ..Limits::default()
        };
        let w = wanted(&limits);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].controller(), Controller::Memory);
        assert_eq!(w[1].controller(), Controller::CpuAcct);
        assert!(w[1].label().contains("cpu_time"));
    }
}
