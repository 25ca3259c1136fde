//! Bounds on the per-user kernel counters of the sandbox's user namespace
//! (`/proc/sys/user/max_*`, and queued signals).
//!
//! The kernel charges an inotify instance, a fanotify group or a namespace to the uid that made
//! it in its user namespace *and*, one level up, to the uid that created that user namespace:
//! host root when bunker runs as root, the caller when rootless. Each level has its own maximum,
//! and a new user namespace starts with all of them at `INT_MAX`, so only the host's own
//! per-user limit (128 inotify instances by default) bounded a sandbox — and a sandbox reaching
//! it left that host user none (`inotify_init: Too many open files`). Init writes these maxima
//! in its own user namespace, where it still has `CAP_SYS_RESOURCE`, through a directory fd
//! opened before /proc/sys was made read-only (and closed before the program starts); the
//! program cannot raise them (no capabilities, read-only /proc/sys). Queued signals are counted
//! the same way, but bounded by the receiver's RLIMIT_SIGPENDING ([`cap_pending_signals`]).
//! Without a user namespace (root with `kernel.namespaces` lacking `user`) the sysctl files are
//! the host's, and nothing is written there.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use bunker_sys::rlimit::{self, Resource};
use bunker_sys::{fd, SysError};

/// Every `/proc/sys/user` counter of Linux 6.18, with the sandbox's maximum and why.
pub const USER_COUNTERS: [(&str, u64, &str); 12] = [
    (
        "max_inotify_instances",
        16,
        "file watchers (one per watching process is usual); the host's default is 128 per user",
    ),
    (
        "max_inotify_watches",
        16_384,
        "watched paths; the host's default scales with its RAM (~190 000 per user on 8 GiB)",
    ),
    ("max_fanotify_groups", 0, "seccomp refuses fanotify_init"),
    ("max_fanotify_marks", 0, "seccomp refuses fanotify_mark"),
    ("max_user_namespaces", 0, "seccomp refuses new namespaces"),
    (
        "max_mnt_namespaces",
        0,
        "seccomp refuses new namespaces (the sandbox's own exist already)",
    ),
    (
        "max_pid_namespaces",
        0,
        "seccomp refuses new namespaces (the sandbox's own exist already)",
    ),
    (
        "max_net_namespaces",
        0,
        "seccomp refuses new namespaces (the sandbox's own exist already)",
    ),
    (
        "max_ipc_namespaces",
        0,
        "seccomp refuses new namespaces (the sandbox's own exist already)",
    ),
    (
        "max_uts_namespaces",
        0,
        "seccomp refuses new namespaces (the sandbox's own exist already)",
    ),
    (
        "max_cgroup_namespaces",
        0,
        "seccomp refuses new namespaces (the sandbox's own exist already)",
    ),
    ("max_time_namespaces", 0, "seccomp refuses new namespaces"),
];

/// Writes [`USER_COUNTERS`] into `sys_user`, the sandbox procfs's `sys/user` directory opened
/// while it was writable ([`crate::mounts::RootOutcome::user_counters`]). Called once init has
/// made every namespace it needs: a maximum applies to new objects only, so the sandbox's own
/// namespaces (and the anonymous mount namespaces that `open_tree` clones count as, one per
/// bind while the root is built) are not refused. A counter the kernel does not have (built
/// without fanotify) is skipped.
pub fn bound(sys_user: &OwnedFd) -> Result<(), SysError> {
    for (name, max, _) in USER_COUNTERS {
        let file = match fd::openat2(
            Some(sys_user.as_raw_fd()),
            Path::new(name),
            libc::O_WRONLY | libc::O_CLOEXEC,
            0,
            fd::RESOLVE_BENEATH | fd::RESOLVE_NO_SYMLINKS,
        ) {
            Ok(f) => f,
            Err(e) if e.errno == libc::ENOENT => continue,
            Err(e) => return Err(e),
        };
        fd::write_all(file.as_raw_fd(), max.to_string().as_bytes()).map_err(|e| {
            SysError::from_errno(format!("write {max} to /proc/sys/user/{name}"), e.errno)
        })?;
    }
    Ok(())
}

/// Most signals the sandbox may have queued at once (RLIMIT_SIGPENDING). The kernel counts
/// queued signals per uid at every level of the user-namespace chain too, and checks a real-time
/// signal against the *receiver's* RLIMIT_SIGPENDING and its own level's count: with the host's
/// default (about 96 000 here, the same as the host uid's own), a sandbox queueing real-time
/// signals to itself left host root none (`sigqueue`: EAGAIN). Every process of the sandbox
/// inherits this from init, and none can raise it (no CAP_SYS_RESOURCE).
pub const PENDING_SIGNALS: u64 = 1024;

/// Lowers RLIMIT_SIGPENDING to [`PENDING_SIGNALS`] (never raises it).
pub fn cap_pending_signals() -> Result<(), SysError> {
    rlimit::cap_rlimit(Resource::PendingSignals, PENDING_SIGNALS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_of_the_running_kernel_is_bounded() {
        let names: Vec<&str> = USER_COUNTERS.iter().map(|(n, _, _)| *n).collect();
        for entry in std::fs::read_dir("/proc/sys/user").unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(names.contains(&name.as_str()), "{name} is not bounded");
        }
    }
}
