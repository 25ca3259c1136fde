//! Processes: clone into new namespaces, credentials, capabilities, prctl, signals, exec, wait.

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::error::{SysError, SysResult};

/// Result of [`clone_fork`].
#[derive(Debug)]
pub enum Forked {
    /// In the parent: the child's pid (in the parent's pid namespace) and its pidfd.
    Parent { pid: i32, pidfd: OwnedFd },
    /// In the child.
    Child,
}

/// Fails unless the calling process has exactly one thread. A fork-like clone copies only the
/// calling thread, so a lock another thread held (in malloc, say) would stay locked forever in
/// the child; checking here is what lets [`clone_fork`] be a safe function.
pub fn ensure_single_threaded(call: &str) -> SysResult<()> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(|e| {
            SysError::from_errno(
                format!("{call}: counting threads in /proc/self/task"),
                e.raw_os_error().unwrap_or(libc::EIO),
            )
        })?
        .count();
    if threads != 1 {
        return Err(SysError::from_errno(
            format!("{call}: refused in a process with {threads} threads (fork needs one)"),
            libc::EDEADLK,
        ));
    }
    Ok(())
}

/// The raw `clone` syscall with fork semantics (own copy of memory, no new stack), `flags` plus
/// `CLONE_PIDFD | SIGCHLD`. Refused unless the process is single-threaded.
///
/// The child is created on the caller's CPU, and both take the caller's affinity back right
/// after the clone (as [`spawn`]'s child does): a new child is otherwise placed on the idlest
/// CPU, and an idle vCPU takes 0.1–0.6 ms to wake up on this project's VMs. On the caller's CPU
/// the child runs as soon as the caller yields it. Best effort: without it the child only
/// starts later.
pub fn clone_fork(flags: libc::c_int) -> SysResult<Forked> {
    ensure_single_threaded("clone")?;
    let affinity = pin_to_current_cpu().ok();
    let forked = clone_fork_here(flags);
    if let Some(mask) = &affinity {
        let _ = set_cpu_affinity(mask);
    }
    forked
}

/// [`clone_fork`]'s clone itself.
fn clone_fork_here(flags: libc::c_int) -> SysResult<Forked> {
    let mut pidfd: libc::c_int = -1;
    // x86_64/aarch64 argument order: flags, new stack, parent_tid (the pidfd with CLONE_PIDFD),
    // child_tid, tls. A null stack means "continue on a copy of the current one", like fork.
    // SAFETY: fork-like clone; `pidfd` is a valid out pointer; the process was just checked to be
    // single-threaded, so the child inherits no lock held by another thread.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::CLONE_PIDFD | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            &mut pidfd as *mut libc::c_int,
            std::ptr::null_mut::<libc::c_void>(),
            0 as libc::c_ulong,
        )
    };
    if r < 0 {
        return Err(SysError::last(format!("clone({})", clone_flags_str(flags))));
    }
    if r == 0 {
        return Ok(Forked::Child);
    }
    // SAFETY: with CLONE_PIDFD the kernel stored a new fd that only we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Forked::Parent {
        pid: r as i32,
        pidfd,
    })
}

/// Names of the namespace flags in `flags`, for error messages.
pub fn clone_flags_str(flags: libc::c_int) -> String {
    let names = [
        (libc::CLONE_NEWUSER, "CLONE_NEWUSER"),
        (libc::CLONE_NEWPID, "CLONE_NEWPID"),
        (libc::CLONE_NEWNS, "CLONE_NEWNS"),
        (libc::CLONE_NEWNET, "CLONE_NEWNET"),
        (libc::CLONE_NEWIPC, "CLONE_NEWIPC"),
        (libc::CLONE_NEWUTS, "CLONE_NEWUTS"),
        (libc::CLONE_NEWCGROUP, "CLONE_NEWCGROUP"),
        (libc::CLONE_PARENT, "CLONE_PARENT"),
    ]
    .map(|(bit, name)| (bit as u32 as u64, name));
    crate::error::flag_names(flags as u32 as u64, &names)
}

/// `unshare(flags)`.
pub fn unshare(flags: libc::c_int) -> SysResult<()> {
    // SAFETY: unshare takes only an integer.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(SysError::last(format!(
            "unshare({})",
            clone_flags_str(flags)
        )));
    }
    Ok(())
}

/// `setns(fd, nstype)`: joins the namespace that `fd` refers to (a namespace file, or a pidfd
/// for that process's namespace of type `nstype`).
pub fn setns(fd: RawFd, nstype: libc::c_int) -> SysResult<()> {
    // SAFETY: integer arguments only; the kernel checks the fd.
    if unsafe { libc::setns(fd, nstype) } != 0 {
        return Err(SysError::last(format!(
            "setns(fd {fd}, {})",
            clone_flags_str(nstype)
        )));
    }
    Ok(())
}

/// `setresuid(id, id, id)`, for the calling thread only: the kernel's own semantics. (glibc's
/// wrapper applies it to every thread of the process, by signalling each and waiting until it
/// has: a thread inside a long syscall — init's namespace thread — would hold the caller up.)
/// Callers change ids while they are, or before they start, the process's only thread that
/// matters: the others end without running anything the ids affect.
pub fn setresuid(id: u32) -> SysResult<()> {
    // SAFETY: integer arguments only.
    if unsafe { libc::syscall(libc::SYS_setresuid, id, id, id) } != 0 {
        return Err(SysError::last(format!("setresuid({id}, {id}, {id})")));
    }
    Ok(())
}

/// `setresgid(id, id, id)`, for the calling thread only (see [`setresuid`]).
pub fn setresgid(id: u32) -> SysResult<()> {
    // SAFETY: integer arguments only.
    if unsafe { libc::syscall(libc::SYS_setresgid, id, id, id) } != 0 {
        return Err(SysError::last(format!("setresgid({id}, {id}, {id})")));
    }
    Ok(())
}

/// `setgroups(0, NULL)`: no supplementary groups, for the calling thread only (see
/// [`setresuid`]).
pub fn clear_groups() -> SysResult<()> {
    // SAFETY: a zero-length list with a null pointer is valid.
    if unsafe { libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) } != 0 {
        return Err(SysError::last("setgroups([])"));
    }
    Ok(())
}

/// Real uid and gid of the calling process.
pub fn ids() -> (u32, u32) {
    // SAFETY: getuid/getgid cannot fail.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// Effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

fn prctl(option: libc::c_int, a: libc::c_ulong, b: libc::c_ulong, what: &str) -> SysResult<()> {
    // SAFETY: every option used here takes integer arguments only.
    if unsafe { libc::prctl(option, a, b, 0 as libc::c_ulong, 0 as libc::c_ulong) } != 0 {
        return Err(SysError::last(what.to_string()));
    }
    Ok(())
}

/// `PR_SET_PDEATHSIG`: `sig` is sent to us when the thread that created us exits.
pub fn set_parent_death_signal(sig: libc::c_int) -> SysResult<()> {
    prctl(
        libc::PR_SET_PDEATHSIG,
        sig as libc::c_ulong,
        0,
        &format!("prctl(PR_SET_PDEATHSIG, {sig})"),
    )
}

/// `PR_SET_DUMPABLE`: a non-dumpable process's /proc files and memory are closed to ptrace-style
/// access from its own uid.
pub fn set_dumpable(on: bool) -> SysResult<()> {
    prctl(
        libc::PR_SET_DUMPABLE,
        on as libc::c_ulong,
        0,
        &format!("prctl(PR_SET_DUMPABLE, {})", on as u8),
    )
}

/// `PR_SET_NO_NEW_PRIVS`: execve can never grant privileges again (setuid bits, file caps).
pub fn set_no_new_privs() -> SysResult<()> {
    prctl(
        libc::PR_SET_NO_NEW_PRIVS,
        1,
        0,
        "prctl(PR_SET_NO_NEW_PRIVS, 1)",
    )
}

/// `PR_GET_NO_NEW_PRIVS`.
pub fn no_new_privs() -> SysResult<bool> {
    // SAFETY: integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
    if r < 0 {
        return Err(SysError::last("prctl(PR_GET_NO_NEW_PRIVS)"));
    }
    Ok(r == 1)
}

/// Capability numbers never reach this (the kernel's sets are 64 bits wide).
const CAP_LIMIT: u32 = 64;

/// Drops every capability from every set: bounding (one by one, up to the first number this
/// kernel does not know: EINVAL — so no read of /proc/sys/kernel/cap_last_cap, which costs
/// ~0.1 ms in a fresh namespace here), ambient, inheritable, effective and permitted.
pub fn drop_all_capabilities() -> SysResult<()> {
    for cap in 0..CAP_LIMIT {
        // SAFETY: integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r != 0 {
            let e = SysError::last(format!("prctl(PR_CAPBSET_DROP, {cap})"));
            // EINVAL: past the last capability this kernel has.
            if e.errno == libc::EINVAL && cap > 0 {
                break;
            }
            return Err(e);
        }
    }
    prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
        "prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)",
    )?;
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and a two-element data array are the layout capset v3 expects.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if r != 0 {
        return Err(SysError::last("capset(all sets = 0)"));
    }
    Ok(())
}

/// Effective capability mask of the calling process (from /proc/self/status), for checks.
pub fn effective_caps() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
}

/// Locks the securebits so that uid 0 never regains capabilities through exec or setuid:
/// NOROOT, NO_SETUID_FIXUP, KEEP_CAPS off, NO_CAP_AMBIENT_RAISE, each with its lock.
/// Needs CAP_SETPCAP, so it must run before the capabilities are dropped.
pub fn lock_securebits() -> SysResult<()> {
    let bits = libc::SECBIT_NOROOT
        | libc::SECBIT_NOROOT_LOCKED
        | libc::SECBIT_NO_SETUID_FIXUP
        | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
        | libc::SECBIT_KEEP_CAPS_LOCKED
        | libc::SECBIT_NO_CAP_AMBIENT_RAISE
        | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    prctl(
        libc::PR_SET_SECUREBITS,
        bits as libc::c_ulong,
        0,
        &format!("prctl(PR_SET_SECUREBITS, {bits:#x})"),
    )
}

/// `sethostname(name)`.
pub fn sethostname(name: &str) -> SysResult<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
        return Err(SysError::last(format!("sethostname({name:?})")));
    }
    Ok(())
}

/// `setsid()`: a new session and process group led by the caller, with no controlling terminal.
/// Returns the new session's id.
pub fn setsid() -> SysResult<i32> {
    // SAFETY: setsid takes no arguments and has no memory effects.
    let sid = unsafe { libc::setsid() };
    if sid < 0 {
        return Err(SysError::last("setsid()"));
    }
    Ok(sid)
}

/// `chdir(path)`.
pub fn chdir(path: &std::path::Path) -> SysResult<()> {
    let c = crate::fd::cstr("chdir", path)?;
    // SAFETY: `c` is NUL-terminated.
    if unsafe { libc::chdir(c.as_ptr()) } != 0 {
        return Err(SysError::last(format!("chdir({})", path.display())));
    }
    Ok(())
}

/// `fchdir(fd)`.
pub fn fchdir(fd: RawFd) -> SysResult<()> {
    // SAFETY: integer argument only; the kernel checks the fd.
    if unsafe { libc::fchdir(fd) } != 0 {
        return Err(SysError::last(format!("fchdir(fd {fd})")));
    }
    Ok(())
}

/// `execve(path, argv, envp)`; returns only on failure.
pub fn execve(path: &CString, argv: &[CString], envp: &[CString]) -> SysError {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: all strings are NUL-terminated and both arrays are NULL-terminated; they outlive
    // the call.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    SysError::last(format!("execve({})", path.to_string_lossy()))
}

/// The standard descriptors of a program started by [`spawn`].
#[derive(Debug, Clone, Copy)]
pub struct StdioFds {
    /// Becomes fd 0; `None` leaves the caller's fd 0.
    pub stdin: Option<RawFd>,
    /// Becomes fd 1.
    pub stdout: RawFd,
    /// Becomes fd 2.
    pub stderr: RawFd,
    /// The child leads a session of its own whose controlling terminal is its fd 0 (`setsid`,
    /// then `TIOCSCTTY`), as a login shell's is: keys like ^C signal its foreground group.
    pub terminal_session: bool,
}

/// What the spawned child needs, in the parent's memory (the child shares it until its exec).
struct ChildArgs {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    stdio: StdioFds,
    /// Descriptors that become the child's fds 3, 4, ... (at most [`MAX_EXTRA_FDS`]).
    extra: [RawFd; MAX_EXTRA_FDS],
    extra_len: usize,
    /// The caller's CPU affinity, for the child to take back (see [`spawn`]).
    affinity: Option<CpuMask>,
    /// The errno of the step that failed in the child; 0 when its exec succeeded.
    error: std::sync::atomic::AtomicI32,
}

/// The kernel's `struct sigaction` for `rt_sigaction` (x86_64), at SIG_DFL.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// The child of [`spawn`], on its own stack in the parent's memory until its exec: raw
/// syscalls only (no allocation, no lock); a failing step leaves its errno for the parent.
extern "C" fn spawn_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` that `spawn` keeps alive (and unmoved) while it is
    // suspended until this child execs or exits.
    let args = unsafe { &*(arg as *const ChildArgs) };
    let fail = || -> ! {
        // SAFETY: errno of this (shared) thread, just set by the failed call.
        let errno = unsafe { *libc::__errno_location() };
        args.error
            .store(errno.max(1), std::sync::atomic::Ordering::SeqCst);
        // SAFETY: ends the child without running anything of the parent's.
        unsafe { libc::_exit(127) }
    };
    // Every catchable signal back at its default: an ignored signal would stay ignored across
    // the exec, and a handler of the caller's must not run here.
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: a valid kernel sigaction; the old action is not asked for.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &default,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8,
                )
            };
        }
    }
    if let Some(mask) = &args.affinity {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: `mask.0` is a cpu_set_t of the size passed.
        if unsafe { libc::sched_setaffinity(0, size, &mask.0) } != 0 {
            // The caller's set is no longer allowed (its cpuset changed meanwhile): every CPU
            // the kernel allows rather than the one the child was created on.
            // SAFETY: an all-ones cpu_set_t of the size passed; the kernel keeps the allowed.
            unsafe {
                let all: libc::cpu_set_t = std::mem::transmute([!0u8; 128]);
                libc::sched_setaffinity(0, size, &all);
            }
        }
    }
    let dups = [
        (args.stdio.stdin, 0),
        (Some(args.stdio.stdout), 1),
        (Some(args.stdio.stderr), 2),
    ];
    for (from, to) in dups {
        let Some(from) = from else { continue };
        // SAFETY: integer arguments only. dup2 onto itself would keep close-on-exec set.
        let r = unsafe {
            if from == to {
                libc::fcntl(to, libc::F_SETFD, 0)
            } else {
                libc::dup2(from, to)
            }
        };
        if r < 0 {
            fail();
        }
    }
    if args.stdio.terminal_session {
        // SAFETY: setsid takes nothing; TIOCSCTTY takes an integer argument.
        if unsafe { libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 } {
            fail();
        }
    }
    // The extra descriptors become 3, 4, ...: each first moved above that range, so placing
    // one can never overwrite another not yet placed; the moved copies go with close_range.
    let n = args.extra_len.min(MAX_EXTRA_FDS);
    let mut moved = [0 as RawFd; MAX_EXTRA_FDS];
    for i in 0..n {
        // SAFETY: integer arguments only.
        let r = unsafe { libc::fcntl(args.extra[i], libc::F_DUPFD, 3 + n as libc::c_int) };
        if r < 0 {
            fail();
        }
        moved[i] = r;
    }
    for (i, &from) in moved.iter().enumerate().take(n) {
        // SAFETY: integer arguments only; dup2 leaves close-on-exec clear on the new fd.
        if unsafe { libc::dup2(from, 3 + i as libc::c_int) } < 0 {
            fail();
        }
    }
    // SAFETY: integer arguments only.
    if unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 + n as libc::c_uint,
            libc::c_uint::MAX,
            0,
        )
    } != 0
    {
        fail();
    }
    set_raw_sigmask(0);
    // SAFETY: NUL-terminated path; NULL-terminated arrays of NUL-terminated strings, all alive
    // in the suspended parent.
    unsafe { libc::execve(args.path, args.argv, args.envp) };
    fail()
}

/// Sets the calling thread's signal mask to `mask` (the kernel's 64 bits, glibc's two internal
/// signals included, which its wrappers leave out) with the raw syscall; returns the old mask.
fn set_raw_sigmask(mask: u64) -> u64 {
    let mut old: u64 = 0;
    // SAFETY: 8-byte kernel sigsets, both valid for the call.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &mask,
            &mut old,
            8,
        )
    };
    old
}

/// Stack of [`spawn`]'s child until its exec.
const SPAWN_STACK: usize = 64 * 1024;

/// Starts a program, as `posix_spawn(path, argv, envp)` would: in a child whose fds 0–2 are
/// `stdio`, every other descriptor closed, the signal mask empty and every signal at its
/// default disposition. The child runs in the caller's memory
/// on a stack of its own until the exec (`CLONE_VM|CLONE_VFORK`), so no page table is copied and
/// the exec has no copy to tear down. The caller is suspended until the exec has succeeded or
/// failed, and a failure is the result: `Err` carries the errno (ENOENT, EACCES, ...), its child
/// already reaped. Returns the child's pid.
///
/// Unlike glibc's `posix_spawn`, the child is created on the caller's CPU and takes the
/// caller's affinity back before anything else: a new child is otherwise placed on the idlest
/// CPU, and an idle vCPU takes 0.1–0.6 ms to wake up on this project's VMs, while the caller
/// only waits. For single-threaded callers (init): every signal is blocked in the calling thread
/// until the child has exec'd, but another thread could still run a handler meanwhile.
pub fn spawn(
    path: &CString,
    argv: &[CString],
    envp: &[CString],
    stdio: StdioFds,
) -> SysResult<i32> {
    spawn_with_fds(path, argv, envp, stdio, &[])
}

/// Most descriptors [`spawn_with_fds`] passes on beyond stdio.
pub const MAX_EXTRA_FDS: usize = 16;

/// [`spawn`], with `extra` becoming the child's fds 3, 4, ... (close-on-exec clear), every
/// other descriptor above 2 closed.
pub fn spawn_with_fds(
    path: &CString,
    argv: &[CString],
    envp: &[CString],
    stdio: StdioFds,
    extra: &[RawFd],
) -> SysResult<i32> {
    if extra.len() > MAX_EXTRA_FDS {
        return Err(SysError::from_errno(
            format!(
                "spawn {} with {} extra fds (at most {MAX_EXTRA_FDS})",
                path.to_string_lossy(),
                extra.len()
            ),
            libc::EINVAL,
        ));
    }
    let mut extra_fds = [-1 as RawFd; MAX_EXTRA_FDS];
    extra_fds[..extra.len()].copy_from_slice(extra);
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    let name = path.to_string_lossy();
    let affinity = pin_to_current_cpu().ok();
    let args = ChildArgs {
        path: path.as_ptr(),
        argv: a.as_ptr(),
        envp: e.as_ptr(),
        stdio,
        extra: extra_fds,
        extra_len: extra.len(),
        affinity,
        error: std::sync::atomic::AtomicI32::new(0),
    };
    let mut stack = vec![0u8; SPAWN_STACK];
    // SAFETY: one past the end of the buffer, rounded down to 16 bytes: the top of the stack.
    let top = unsafe { stack.as_mut_ptr().add(SPAWN_STACK) };
    let top = top.wrapping_sub(top as usize % 16).cast::<libc::c_void>();
    // No signal handler may run on the child's stack or in the suspended caller's name.
    let old = set_raw_sigmask(!0);
    // SAFETY: `spawn_child` runs on `stack` (alive and unused until this returns, the caller
    // being suspended by CLONE_VFORK until the child execs or exits) with `args`, which
    // outlives the child's use of it for the same reason.
    let pid = unsafe {
        libc::clone(
            spawn_child,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::addr_of!(args).cast_mut().cast(),
        )
    };
    let clone_error = SysError::last(format!("clone(CLONE_VM|CLONE_VFORK) for {name}"));
    set_raw_sigmask(old);
    if let Some(mask) = &args.affinity {
        let _ = set_cpu_affinity(mask);
    }
    drop(stack);
    if pid < 0 {
        return Err(clone_error);
    }
    let errno = args.error.load(std::sync::atomic::Ordering::SeqCst);
    if errno != 0 {
        let _ = waitpid(pid, false);
        return Err(SysError::from_errno(format!("execve({name})"), errno));
    }
    Ok(pid)
}

/// Ends the process at once, without running destructors or atexit handlers (for the child
/// side of a fork, where the parent's buffers and locks must not be touched).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is always safe to call.
    unsafe { libc::_exit(code) }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    Exited(i32),
    Signaled(i32),
}

/// `waitpid(pid, WNOHANG?)`: None when nothing changed (WNOHANG) or no child is left (ECHILD
/// becomes an error).
pub fn waitpid(pid: i32, nohang: bool) -> SysResult<Option<(i32, WaitStatus)>> {
    let mut status = 0;
    loop {
        // __WALL: also children whose exit signal is not SIGCHLD (a `clone` without it).
        let flags = libc::__WALL | if nohang { libc::WNOHANG } else { 0 };
        // SAFETY: `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r < 0 {
            let e = SysError::last(format!("waitpid({pid})"));
            if e.errno == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Ok(None);
        }
        let ws = if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        };
        return Ok(Some((r, ws)));
    }
}

/// `kill(pid, sig)`.
pub fn kill(pid: i32, sig: libc::c_int) -> SysResult<()> {
    // SAFETY: integer arguments only.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(SysError::last(format!("kill({pid}, {sig})")));
    }
    Ok(())
}

/// `pidfd_send_signal(pidfd, sig)`: signals exactly the process the pidfd names (no pid reuse).
pub fn pidfd_kill(pidfd: RawFd, sig: libc::c_int) -> SysResult<()> {
    // SAFETY: integer arguments and a null siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r != 0 {
        return Err(SysError::last(format!("pidfd_send_signal({sig})")));
    }
    Ok(())
}

/// A set of signals.
pub fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is valid storage; sigemptyset/sigaddset initialise it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid storage.
    unsafe { libc::sigemptyset(&mut set) };
    for &s in signals {
        // SAFETY: `set` is initialised; an invalid signal only returns EINVAL.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    set
}

/// Sets the signal mask to exactly `set`.
pub fn set_sigmask(set: &libc::sigset_t) -> SysResult<()> {
    // SAFETY: valid sigset pointer; the old mask is not requested.
    let r = unsafe { libc::sigprocmask(libc::SIG_SETMASK, set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(SysError::last("sigprocmask(SIG_SETMASK)"));
    }
    Ok(())
}

/// A signal taken by [`sigwait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub signal: libc::c_int,
    /// The sender's pid as the receiver's pid namespace sees it: 0 when the sender is outside
    /// it (in an ancestor namespace) or the kernel.
    pub sender: libc::pid_t,
}

/// Waits for one of the (blocked) signals in `set`.
pub fn sigwait(set: &libc::sigset_t) -> SysResult<Received> {
    loop {
        // SAFETY: all-zero is a valid siginfo_t, filled by the kernel below.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid sigset and a valid out pointer.
        let r = unsafe { libc::sigwaitinfo(set, &mut info) };
        if r < 0 {
            let e = SysError::last("sigwaitinfo");
            if e.errno == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        // SAFETY: si_pid is read as the kernel filled it; for signals without a sender it is 0.
        let sender = unsafe { info.si_pid() };
        return Ok(Received { signal: r, sender });
    }
}

/// Resets every catchable signal's disposition to the default (the program must not inherit
/// ignored signals from the supervisor).
pub fn reset_signal_dispositions() {
    for sig in 1..32 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is always a valid disposition; errors (invalid signal) are ignored.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// This process's pid.
pub fn getpid() -> i32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// A CPU affinity mask (up to 1,024 CPUs: on larger machines the calls fail with EINVAL).
#[derive(Clone, Copy)]
struct CpuMask(libc::cpu_set_t);

impl std::fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SAFETY: CPU_COUNT only reads the set.
        let count = unsafe { libc::CPU_COUNT(&self.0) };
        write!(f, "CpuMask({count} CPUs)")
    }
}

/// The calling thread's CPU affinity.
fn cpu_affinity() -> SysResult<CpuMask> {
    // SAFETY: an all-zero cpu_set_t is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a cpu_set_t of the size passed.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Err(SysError::last("sched_getaffinity(0)"));
    }
    Ok(CpuMask(set))
}

/// Sets the calling thread's CPU affinity.
fn set_cpu_affinity(mask: &CpuMask) -> SysResult<()> {
    // SAFETY: `mask.0` is a cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mask.0) } != 0 {
        return Err(SysError::last("sched_setaffinity(0)"));
    }
    Ok(())
}

/// Restricts the calling thread to the CPU it is running on; returns the mask it had, to be
/// given back with [`set_cpu_affinity`].
fn pin_to_current_cpu() -> SysResult<CpuMask> {
    let old = cpu_affinity()?;
    // SAFETY: no arguments.
    let cpu = unsafe { libc::sched_getcpu() };
    if cpu < 0 {
        return Err(SysError::last("sched_getcpu()"));
    }
    // SAFETY: an all-zero cpu_set_t is a valid (empty) set.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET bounds-checks the index against the set's size.
    unsafe { libc::CPU_SET(cpu as usize, &mut one) };
    set_cpu_affinity(&CpuMask(one))?;
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::fd::AsRawFd;

    fn cs(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn spawned_program_gets_stdio_only_default_signals_an_empty_mask_and_our_cpus() {
        let (r, w) = crate::fd::pipe().unwrap();
        let script = "grep -E '^(Sig(Blk|Ign)|Cpus_allowed_list)' /proc/self/status; \
                      ls /proc/self/fd | tr '\\n' ' '";
        let pid = spawn(
            &cs("/bin/sh"),
            &[cs("sh"), cs("-c"), cs(script)],
            &[cs("PATH=/usr/bin:/bin")],
            StdioFds {
                stdin: None,
                stdout: w.as_raw_fd(),
                stderr: w.as_raw_fd(),
                terminal_session: false,
            },
        )
        .unwrap();
        drop(w);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut out).unwrap();
        assert_eq!(
            waitpid(pid, false).unwrap().map(|s| s.1),
            Some(WaitStatus::Exited(0))
        );
        // The test harness ignores SIGPIPE and glibc's spawn would leave 32 and 33 ignored.
        assert!(out.contains("SigBlk:\t0000000000000000\n"), "{out}");
        assert!(out.contains("SigIgn:\t0000000000000000\n"), "{out}");
        // Created on our CPU, it took our whole affinity back before its exec.
        let ours = std::fs::read_to_string("/proc/self/status").unwrap();
        let cpus = |status: &str| {
            status
                .lines()
                .find(|l| l.starts_with("Cpus_allowed_list"))
                .map(str::to_string)
        };
        assert!(cpus(&ours).is_some());
        assert_eq!(cpus(&out), cpus(&ours), "{out}");
        // 0, 1, 2 and ls's own directory fd: nothing else of ours leaked.
        assert!(out.ends_with("0 1 2 3 "), "{out}");
    }

    #[test]
    fn spawn_reports_the_exec_error() {
        let stdio = StdioFds {
            stdin: None,
            stdout: 1,
            stderr: 2,
            terminal_session: false,
        };
        let err = spawn(&cs("/nonexistent/x"), &[cs("x")], &[], stdio).unwrap_err();
        assert_eq!(err.errno, libc::ENOENT, "{err}");
        let err = spawn(&cs("/etc/passwd"), &[cs("x")], &[], stdio).unwrap_err();
        assert_eq!(err.errno, libc::EACCES, "{err}");
    }

    #[test]
    fn fork_is_refused_while_another_thread_runs() {
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let helper = std::thread::spawn(move || {
            let _ = stop_rx.recv();
        });
        let err = clone_fork(0).expect_err("clone must be refused with two threads");
        assert_eq!(err.errno, libc::EDEADLK, "{err}");
        assert!(err.call.contains("threads"), "{err}");
        stop_tx.send(()).unwrap();
        helper.join().unwrap();
    }
}
