//! The rlimits init sets on itself before it forks the program.

use std::time::Duration;

use bunker_policy::Limits;
use bunker_sys::rlimit::{self, Resource, Rlimit};

use crate::error::SandboxError;

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
}
