//! The limits that need a cgroup controller, and how each is written into the sandbox's cgroup.

use bunker_cgroup::{CgroupError, Controller, Layout, SandboxGroup};
use bunker_policy::{LimitName, Limits};

use crate::result::{Enforced, LayerStatus};

/// One limit that needs a cgroup controller.
#[derive(Debug, Clone, Copy)]
pub(super) enum Wanted {
    Memory(u64),
    Pids(u64),
    Cpu(f64),
    CpuTime,
}

impl Wanted {
    pub(super) fn name(self) -> LimitName {
        match self {
            Wanted::Memory(_) => LimitName::Memory,
            Wanted::Pids(_) => LimitName::Pids,
            Wanted::Cpu(_) => LimitName::Cpu,
            Wanted::CpuTime => LimitName::CpuTime,
        }
    }

    /// How the limit is named to the user: the policy key.
    pub(super) fn label(self) -> &'static str {
        match self {
            Wanted::Memory(_) => "memory limit (limits.memory)",
            Wanted::Pids(_) => "pids limit (limits.pids)",
            Wanted::Cpu(_) => "cpu limit (limits.cpu)",
            Wanted::CpuTime => "cpu_time limit (limits.cpu_time)",
        }
    }

    pub(super) fn key(self) -> &'static str {
        match self {
            Wanted::Memory(_) => "memory",
            Wanted::Pids(_) => "pids",
            Wanted::Cpu(_) => "cpu",
            Wanted::CpuTime => "cpu_time",
        }
    }

    pub(super) fn controller(self) -> Controller {
        match self {
            Wanted::Memory(_) => Controller::Memory,
            Wanted::Pids(_) => Controller::Pids,
            Wanted::Cpu(_) => Controller::Cpu,
            Wanted::CpuTime => Controller::CpuAcct,
        }
    }
}

pub(super) fn wanted(limits: &Limits) -> Vec<Wanted> {
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

pub(super) fn set_status(enforced: &mut Enforced, want: Wanted, status: LayerStatus) {
    match want {
        Wanted::Memory(_) => enforced.memory_limit = status,
        Wanted::Pids(_) => enforced.pids_limit = status,
        Wanted::Cpu(_) => enforced.cpu_limit = status,
        Wanted::CpuTime => enforced.cpu_time_limit = status,
    }
}

/// Creates the controller's directory and writes the limit. Returns the status and an optional
/// note, or why it cannot be enforced.
pub(super) fn apply(
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
