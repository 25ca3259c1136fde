//! What the supervisor's event loop needs from the kernel: ppoll with a precise timeout,
//! non-blocking fds, pidfd signals and reaping (with the rusage of the whole reaped tree), plain
//! `kill` for processes found in a cgroup, and a self-pipe that turns SIGTERM/SIGINT/SIGHUP (and,
//! when watched, SIGWINCH) to the supervisor into an event the loop can poll.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use crate::error::{SysError, SysResult};

/// Puts `fd` into non-blocking mode (O_NONBLOCK on its open file description).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> SysResult<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: F_GETFL on a valid borrowed fd has no memory effects.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags < 0 {
        return Err(SysError::last(format!("fcntl({raw}, F_GETFL)")));
    }
    // SAFETY: F_SETFL with integer flags on a valid borrowed fd has no memory effects.
    let rc = unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) };
    if rc < 0 {
        return Err(SysError::last(format!("fcntl({raw}, F_SETFL, O_NONBLOCK)")));
    }
    Ok(())
}

/// What [`poll_with`] waits for on one fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    Read,
    Write,
}

/// Readiness reported by [`poll`] for one fd.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    /// Data (or EOF) can be read.
    pub readable: bool,
    /// Data can be written (for a pipe: at least PIPE_BUF bytes without blocking).
    pub writable: bool,
    /// The peer closed (POLLHUP) or the fd is in error (POLLERR, POLLNVAL).
    pub hangup: bool,
}

impl Ready {
    /// Anything to act on.
    pub fn any(self) -> bool {
        self.readable || self.writable || self.hangup
    }
}

/// Waits until one of `fds` is readable or `timeout` passes (`None` waits forever), with
/// nanosecond timeout precision (ppoll). Returns the readiness of each fd, in order. A signal
/// that interrupts the wait yields an all-not-ready answer rather than an error, so the caller
/// simply looks again.
pub fn poll(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> SysResult<Vec<Ready>> {
    let with: Vec<(BorrowedFd<'_>, Interest)> =
        fds.iter().map(|fd| (*fd, Interest::Read)).collect();
    poll_with(&with, timeout)
}

/// [`poll`] with a choice of reading or writing per fd.
pub fn poll_with(
    fds: &[(BorrowedFd<'_>, Interest)],
    timeout: Option<Duration>,
) -> SysResult<Vec<Ready>> {
    let mut raw: Vec<libc::pollfd> = fds
        .iter()
        .map(|(fd, interest)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: match interest {
                Interest::Read => libc::POLLIN,
                Interest::Write => libc::POLLOUT,
            },
            revents: 0,
        })
        .collect();
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `raw` points to `raw.len()` initialised pollfd structs the kernel may write
    // `revents` into; `ts_ptr` is null or points to a timespec alive for the call; a null
    // sigmask keeps the current mask.
    let rc = unsafe {
        libc::ppoll(
            raw.as_mut_ptr(),
            raw.len() as libc::nfds_t,
            ts_ptr,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        let err = SysError::last(format!("ppoll({} fds)", raw.len()));
        if err.errno == libc::EINTR {
            return Ok(vec![Ready::default(); raw.len()]);
        }
        return Err(err);
    }
    Ok(raw
        .iter()
        .map(|p| Ready {
            readable: p.revents & libc::POLLIN != 0,
            writable: p.revents & libc::POLLOUT != 0,
            hangup: p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
        })
        .collect())
}

/// Opens a pidfd for `pid` (close-on-exec).
pub fn pidfd_open(pid: i32) -> SysResult<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    if rc < 0 {
        return Err(SysError::last(format!("pidfd_open({pid})")));
    }
    // SAFETY: the kernel returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

/// Sends `signal` to the process `pidfd` refers to. Unlike `kill(pid)`, this cannot hit a
/// process that reused the pid after the original one was reaped. A process that already exited
/// (ESRCH) is not an error: the caller wanted it gone.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> SysResult<()> {
    let raw = pidfd.as_raw_fd();
    // SAFETY: pidfd_send_signal with a valid fd, a null siginfo and zero flags has no memory
    // effects in this process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            raw,
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if rc < 0 {
        let err = SysError::last(format!("pidfd_send_signal({raw}, {signal})"));
        if err.errno != libc::ESRCH {
            return Err(err);
        }
    }
    Ok(())
}

/// The calling thread's timer slack, in nanoseconds: how late the kernel may fire its timers
/// (poll timeouts included) to batch wake-ups. 50 µs by default.
pub fn timer_slack() -> SysResult<u64> {
    // SAFETY: PR_GET_TIMERSLACK takes no pointer and returns the value.
    let rc = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
    if rc < 0 {
        return Err(SysError::last("prctl(PR_GET_TIMERSLACK)"));
    }
    Ok(rc as u64)
}

/// Sets the calling thread's timer slack (nanoseconds, at least 1).
pub fn set_timer_slack(ns: u64) -> SysResult<()> {
    let ns = ns.max(1) as libc::c_ulong;
    // SAFETY: PR_SET_TIMERSLACK takes an integer and no pointer.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns, 0, 0, 0) };
    if rc < 0 {
        return Err(SysError::last(format!("prctl(PR_SET_TIMERSLACK, {ns})")));
    }
    Ok(())
}

/// Sends `signal` to `pid`. ESRCH (already gone) is not an error.
pub fn kill(pid: i32, signal: i32) -> SysResult<()> {
    if pid <= 0 {
        // kill(0|-1|-n) would signal groups of processes: never what a caller of this means.
        return Err(SysError::from_errno(
            format!("kill({pid}, {signal})"),
            libc::EINVAL,
        ));
    }
    // SAFETY: kill with a positive pid has no memory effects in this process.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc < 0 {
        let err = SysError::last(format!("kill({pid}, {signal})"));
        if err.errno != libc::ESRCH {
            return Err(err);
        }
    }
    Ok(())
}

/// How a reaped child ended, and what it (and the descendants it reaped) cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildExit {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal number, when a signal killed it.
    pub signal: Option<i32>,
    /// User + system CPU time of the child and every descendant it waited for.
    pub cpu: Duration,
    /// Largest resident set of any one of them, in bytes.
    pub max_rss_bytes: u64,
}

/// Reaps the child `pidfd` refers to (waitid(P_PIDFD, WEXITED)), collecting its rusage. With
/// `block == false` returns `Ok(None)` when it has not exited yet.
pub fn wait_pidfd(pidfd: BorrowedFd<'_>, block: bool) -> SysResult<Option<ChildExit>> {
    let raw = pidfd.as_raw_fd();
    let options = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: an all-zero siginfo_t / rusage is a valid value of these plain C structs.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: the raw waitid syscall (the libc wrapper has no rusage argument) writes into
        // `info` and `usage`, both valid and exclusively borrowed for the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_waitid,
                libc::P_PIDFD,
                raw,
                &mut info as *mut libc::siginfo_t,
                options,
                &mut usage as *mut libc::rusage,
            )
        };
        if rc < 0 {
            let err = SysError::last(format!("waitid(P_PIDFD, {raw}, WEXITED)"));
            if err.errno == libc::EINTR {
                continue;
            }
            return Err(err);
        }
        // SAFETY: si_pid is valid to read for SIGCHLD-type siginfo, which waitid fills in (and
        // which stays zero when WNOHANG found nothing).
        let pid = unsafe { info.si_pid() };
        if pid == 0 {
            return Ok(None);
        }
        // SAFETY: as above, si_status is valid for a siginfo filled in by waitid.
        let status = unsafe { info.si_status() };
        let (code, signal) = if info.si_code == libc::CLD_EXITED {
            (Some(status), None)
        } else {
            (None, Some(status))
        };
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64)
                + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        return Ok(Some(ChildExit {
            code,
            signal,
            cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
            max_rss_bytes: (usage.ru_maxrss.max(0) as u64).saturating_mul(1024),
        }));
    }
}

// ---------------------------------------------------------------------------------------------
// Termination signals → a pollable fd.
// ---------------------------------------------------------------------------------------------

/// Write end of the self-pipe (-1 before installation).
static TERM_WRITE: AtomicI32 = AtomicI32::new(-1);
/// Read end of the self-pipe (-1 before installation).
static TERM_READ: AtomicI32 = AtomicI32::new(-1);
/// Pid of the process that installed the handler. A child forked from it (the sandbox's init
/// before it execs, or a helper) inherits the handler; it must not write into the supervisor's
/// pipe — and in the child the fd number may even have been reused for something else.
static TERM_OWNER: AtomicI32 = AtomicI32::new(0);

/// SIGWINCH arrived since [`take_window_change`] last looked (see [`watch_window_changes`]).
static WINDOW_CHANGED: AtomicBool = AtomicBool::new(false);

/// The signals [`install_termination_handler`] catches.
pub const TERMINATION_SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

extern "C" fn on_termination_signal(signal: libc::c_int) {
    // Only async-signal-safe calls here: getpid, write, and errno save/restore.
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let fd = TERM_WRITE.load(Ordering::Relaxed);
    if fd >= 0 && me == TERM_OWNER.load(Ordering::Relaxed) {
        if signal == libc::SIGWINCH {
            WINDOW_CHANGED.store(true, Ordering::Relaxed);
        }
        let byte = signal as u8;
        // SAFETY: writes one byte from a live stack variable to the non-blocking pipe; a full
        // pipe (EAGAIN) just drops the byte, which is fine: one pending byte is enough.
        unsafe { libc::write(fd, &byte as *const u8 as *const libc::c_void, 1) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Installs handlers for SIGTERM, SIGINT and SIGHUP that record the signal in a self-pipe, so
/// the supervisor's loop can tear the sandbox down (and remove its cgroup) instead of dying
/// with it running. Signals that are ignored when this is called stay ignored. Idempotent.
/// Call it once, early, from the main thread of the binary.
pub fn install_termination_handler() -> SysResult<()> {
    if TERM_READ.load(Ordering::SeqCst) >= 0 {
        return Ok(());
    }
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: pipe2 writes two fds into the 2-element array.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if rc < 0 {
        return Err(SysError::last("pipe2(O_CLOEXEC|O_NONBLOCK)"));
    }
    // SAFETY: getpid has no preconditions.
    TERM_OWNER.store(unsafe { libc::getpid() }, Ordering::SeqCst);
    TERM_WRITE.store(fds[1], Ordering::SeqCst);
    TERM_READ.store(fds[0], Ordering::SeqCst);
    for signal in TERMINATION_SIGNALS {
        // A signal the caller ignores stays ignored (`nohup bunker ...`, or SIGINT in a
        // background job of a script): that is how they asked not to be stopped by it.
        // SAFETY: an all-zero sigaction is a valid value for the kernel to fill in.
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only reads the current one into `current`.
        let rc = unsafe { libc::sigaction(signal, std::ptr::null(), &mut current) };
        if rc < 0 {
            return Err(SysError::last(format!("sigaction({signal}, NULL)")));
        }
        if current.sa_sigaction == libc::SIG_IGN {
            continue;
        }
        // SAFETY: an all-zero sigaction is a valid value to fill in.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_termination_signal as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: sa_mask is a valid sigset_t inside `action`.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: `action` is fully initialised; the handler only makes async-signal-safe calls.
        let rc = unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) };
        if rc < 0 {
            return Err(SysError::last(format!("sigaction({signal})")));
        }
    }
    Ok(())
}

/// Also wakes the loop polling [`termination_fd`] on SIGWINCH (the caller's terminal was
/// resized), which [`take_window_change`] then reports. Needs [`install_termination_handler`]
/// first (without it, window changes are not watched: `Ok(false)`).
pub fn watch_window_changes() -> SysResult<bool> {
    if TERM_READ.load(Ordering::SeqCst) < 0 {
        return Ok(false);
    }
    // SAFETY: an all-zero sigaction is a valid value to fill in.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_termination_signal as *const () as libc::sighandler_t;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: sa_mask is a valid sigset_t inside `action`.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is fully initialised; the handler only makes async-signal-safe calls.
    if unsafe { libc::sigaction(libc::SIGWINCH, &action, std::ptr::null_mut()) } < 0 {
        return Err(SysError::last("sigaction(SIGWINCH)"));
    }
    Ok(true)
}

/// Whether SIGWINCH arrived since the last call.
pub fn take_window_change() -> bool {
    WINDOW_CHANGED.swap(false, Ordering::SeqCst)
}

/// The read end of the termination self-pipe, once the handler is installed: it becomes
/// readable when the supervisor got SIGTERM, SIGINT or SIGHUP (or SIGWINCH, when watched).
pub fn termination_fd() -> Option<BorrowedFd<'static>> {
    let fd = TERM_READ.load(Ordering::SeqCst);
    // SAFETY: the pipe's read end is created once and never closed for the life of the process.
    (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
}

/// The termination signal received since the last call, if any: drains `pipe`, the read end of
/// the termination self-pipe ([`termination_fd`]), which the caller was given. A SIGWINCH byte
/// is no termination.
pub fn take_termination_signal(pipe: BorrowedFd<'_>) -> Option<i32> {
    let fd = pipe.as_raw_fd();
    let mut buf = [0u8; 16];
    let mut last = None;
    loop {
        // SAFETY: reads at most `buf.len()` bytes into the live buffer from the borrowed,
        // non-blocking pipe.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n <= 0 {
            return last;
        }
        if let Some(&sig) = buf[..n as usize]
            .iter()
            .rev()
            .find(|&&b| i32::from(b) != libc::SIGWINCH)
        {
            last = Some(i32::from(sig));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    #[test]
    fn poll_times_out_with_millisecond_precision() {
        let (a, _b) = UnixStream::pair().unwrap();
        let t = Instant::now();
        let ready = poll(&[a.as_fd()], Some(Duration::from_millis(30))).unwrap();
        let took = t.elapsed();
        assert!(!ready[0].any());
        assert!(took >= Duration::from_millis(30), "{took:?}");
    }

    #[test]
    fn poll_sees_data_and_hangup() {
        let (a, b) = UnixStream::pair().unwrap();
        use std::io::Write;
        (&b).write_all(b"x").unwrap();
        let ready = poll(&[a.as_fd()], Some(Duration::from_secs(5))).unwrap();
        assert!(ready[0].readable);
        drop(b);
        let ready = poll(&[a.as_fd()], Some(Duration::from_secs(5))).unwrap();
        assert!(ready[0].hangup || ready[0].readable);
    }

    #[test]
    fn a_killed_child_is_reaped_through_its_pidfd() {
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let pidfd = pidfd_open(child.id() as i32).unwrap();
        assert_eq!(wait_pidfd(pidfd.as_fd(), false).unwrap(), None);
        pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL).unwrap();
        let ready = poll(&[pidfd.as_fd()], Some(Duration::from_secs(5))).unwrap();
        assert!(ready[0].readable);
        let exit = wait_pidfd(pidfd.as_fd(), true).unwrap().unwrap();
        assert_eq!(exit.signal, Some(libc::SIGKILL));
        assert_eq!(exit.code, None);
        // Already reaped: std's wait now finds no child.
        assert!(child.wait().is_err());
        // Signalling a reaped process through its pidfd is not an error.
        pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL).unwrap();
    }

    #[test]
    fn an_exit_code_and_cpu_time_come_back() {
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exit 7",
            ])
            .spawn()
            .unwrap();
        let pidfd = pidfd_open(child.id() as i32).unwrap();
        let exit = wait_pidfd(pidfd.as_fd(), true).unwrap().unwrap();
        assert_eq!(exit.code, Some(7));
        assert!(exit.cpu > Duration::ZERO);
        assert!(exit.max_rss_bytes > 0);
        assert!(child.wait().is_err());
    }

    #[test]
    fn poll_reports_a_full_pipe_as_not_writable() {
        let (r, w) = std::io::pipe().unwrap();
        set_nonblocking(w.as_fd()).unwrap();
        let ready = poll_with(&[(w.as_fd(), Interest::Write)], Some(Duration::ZERO)).unwrap();
        assert!(ready[0].writable);
        use std::io::Write;
        let mut w = w;
        while w.write(&[0u8; 4096]).is_ok() {}
        let ready = poll_with(&[(w.as_fd(), Interest::Write)], Some(Duration::ZERO)).unwrap();
        assert!(!ready[0].writable);
        drop(r);
    }

    #[test]
    fn timer_slack_round_trips() {
        // Each test runs on its own thread: changing its slack touches nothing else.
        let before = timer_slack().unwrap();
        set_timer_slack(1).unwrap();
        assert_eq!(timer_slack().unwrap(), 1);
        set_timer_slack(before).unwrap();
        assert_eq!(timer_slack().unwrap(), before);
    }

    #[test]
    fn kill_refuses_process_groups() {
        assert_eq!(kill(0, 0).unwrap_err().errno, libc::EINVAL);
        assert_eq!(kill(-1, 0).unwrap_err().errno, libc::EINVAL);
    }
}
