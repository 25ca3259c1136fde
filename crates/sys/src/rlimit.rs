//! Resource limits of the calling process (setrlimit/getrlimit).

use crate::error::{SysError, SysResult};

/// The rlimits bunker sets inside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Largest file the process may create or extend (RLIMIT_FSIZE).
    FileSize,
    /// Highest file descriptor number + 1 (RLIMIT_NOFILE).
    OpenFiles,
    /// Main thread's stack size (RLIMIT_STACK).
    Stack,
    /// Largest core dump (RLIMIT_CORE).
    Core,
    /// CPU seconds per process (RLIMIT_CPU): SIGXCPU at the soft limit, SIGKILL at the hard one.
    CpuSeconds,
    /// Queued signals of the receiver's uid (RLIMIT_SIGPENDING), counted per user namespace.
    PendingSignals,
    /// Highest real-time priority a process may give itself without CAP_SYS_NICE
    /// (RLIMIT_RTPRIO).
    RealtimePriority,
    /// Highest nice value a process may raise itself to, as `20 - limit` (RLIMIT_NICE).
    Nice,
}

impl Resource {
    fn raw(self) -> libc::__rlimit_resource_t {
        match self {
            Resource::FileSize => libc::RLIMIT_FSIZE,
            Resource::OpenFiles => libc::RLIMIT_NOFILE,
            Resource::Stack => libc::RLIMIT_STACK,
            Resource::Core => libc::RLIMIT_CORE,
            Resource::CpuSeconds => libc::RLIMIT_CPU,
            Resource::PendingSignals => libc::RLIMIT_SIGPENDING,
            Resource::RealtimePriority => libc::RLIMIT_RTPRIO,
            Resource::Nice => libc::RLIMIT_NICE,
        }
    }

    /// The C name, for error messages.
    pub fn name(self) -> &'static str {
        match self {
            Resource::FileSize => "RLIMIT_FSIZE",
            Resource::OpenFiles => "RLIMIT_NOFILE",
            Resource::Stack => "RLIMIT_STACK",
            Resource::Core => "RLIMIT_CORE",
            Resource::CpuSeconds => "RLIMIT_CPU",
            Resource::PendingSignals => "RLIMIT_SIGPENDING",
            Resource::RealtimePriority => "RLIMIT_RTPRIO",
            Resource::Nice => "RLIMIT_NICE",
        }
    }
}

/// A soft and a hard limit; `None` is RLIM_INFINITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

fn to_raw(v: Option<u64>) -> libc::rlim_t {
    match v {
        Some(n) if n < libc::RLIM_INFINITY => n,
        _ => libc::RLIM_INFINITY,
    }
}

fn from_raw(v: libc::rlim_t) -> Option<u64> {
    (v != libc::RLIM_INFINITY).then_some(v)
}

fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
}

/// Reads the current limits of `resource`.
pub fn get_rlimit(resource: Resource) -> SysResult<Rlimit> {
    let mut raw = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `raw` is a valid, writable rlimit struct that outlives the call.
    let rc = unsafe { libc::getrlimit(resource.raw(), &mut raw) };
    if rc != 0 {
        return Err(SysError::last(format!("getrlimit({})", resource.name())));
    }
    Ok(Rlimit {
        soft: from_raw(raw.rlim_cur),
        hard: from_raw(raw.rlim_max),
    })
}

/// Sets the limits of `resource` for the calling process (inherited across fork and exec).
pub fn set_rlimit(resource: Resource, limit: Rlimit) -> SysResult<()> {
    let raw = libc::rlimit {
        rlim_cur: to_raw(limit.soft),
        rlim_max: to_raw(limit.hard),
    };
    // SAFETY: `raw` is a valid rlimit struct that outlives the call; setrlimit only reads it.
    let rc = unsafe { libc::setrlimit(resource.raw(), &raw) };
    if rc != 0 {
        return Err(SysError::last(format!(
            "setrlimit({}, soft={}, hard={})",
            resource.name(),
            show(limit.soft),
            show(limit.hard)
        )));
    }
    Ok(())
}

/// Sets both limits of `resource` to `value`, or to the current hard limit when that is lower:
/// an unprivileged process cannot raise its hard limit, and a lower one set by whoever started
/// bunker must stay in force.
pub fn cap_rlimit(resource: Resource, value: u64) -> SysResult<()> {
    let current = get_rlimit(resource)?;
    let value = current.hard.map_or(value, |hard| hard.min(value));
    set_rlimit(
        resource,
        Rlimit {
            soft: Some(value),
            hard: Some(value),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_limit_can_be_read() {
        let l = get_rlimit(Resource::Core).unwrap();
        if let (Some(s), Some(h)) = (l.soft, l.hard) {
            assert!(s <= h);
        }
    }

    #[test]
    fn setting_an_impossible_limit_names_the_call() {
        // soft above hard is EINVAL for every process.
        let err = set_rlimit(
            Resource::Core,
            Rlimit {
                soft: Some(10),
                hard: Some(5),
            },
        )
        .unwrap_err();
        assert_eq!(err.errno, libc::EINVAL);
        assert!(err.call.contains("RLIMIT_CORE"), "{err}");
    }
}
