//! The async driver (the daemon's): the machine on a tokio runtime, one task per sandbox, any
//! number of them on one runtime of any number of threads.
//!
//! Each round: what came from outside first (a kill or cancel; the next chunk of stdin when
//! the machine takes one), then the clock ([`Supervision::on_time`]), then one `ppoll` with a
//! zero timeout over what the machine waits for — the level-triggered truth of what is ready —
//! and the ready fds' handlers. Only when nothing is ready does the task sleep: on
//! [`AsyncFd`]s (edge-triggered epoll in tokio's reactor, each registered on a duplicate of the
//! machine's fd, dropped as soon as the machine stops waiting on it), the kill channel, the
//! stdin channel, and `sleep_until` the machine's next wake-up. Every readiness tokio recorded
//! is cleared before the zero-timeout poll, so an edge that comes after it always wakes the
//! task. After handling ready fds the task yields, so an endless writer cannot hold a worker
//! thread. Cgroup counters are small file reads and stay synchronous.
//!
//! Nothing process-wide is used: no termination pipe (`Supervised::termination` is `None` in a
//! daemon), no timer slack (a per-thread setting, and tokio's timer has a millisecond tick
//! anyway). Init is reaped with `waitid(P_PIDFD)`, which needs init to be a child of this
//! process (the daemon's spawner clones it with CLONE_PARENT) and SIGCHLD not ignored.

use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bunker_policy::Policy;
use bunker_sys::event::{self, ChildExit, Interest};
use bunker_sys::{reactor, SysError};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest as TokioInterest;
use tokio::sync::mpsc;

use super::machine::{Role, Supervision};
use super::{KillReason, Supervised};
use crate::error::SandboxError;
use crate::result::RunResult;

/// Chunks of stdin waiting in the channel before the sender waits: the client's backpressure.
const STDIN_CHUNKS: usize = 16;

/// What the daemon holds over a run supervised by [`supervise_async`].
#[derive(Debug)]
pub struct SupervisionControl {
    /// Ends the run: a reason sent here kills the sandbox with it (the first one stays); every
    /// sender dropped — the client is gone — kills it with [`KillReason::Cancelled`].
    pub kill: mpsc::Receiver<KillReason>,
    /// The program's stdin, fed from a channel.
    pub stdin: Option<StdinFeed>,
}

/// The write end of the program's stdin pipe and the chunks to write into it. The channel's
/// end (every sender dropped) closes the pipe: the program reads end of file.
#[derive(Debug)]
pub struct StdinFeed {
    pub write_end: OwnedFd,
    pub chunks: mpsc::Receiver<Vec<u8>>,
}

impl SupervisionControl {
    /// A control without stdin, and the sender that kills the run (drop every clone of it to
    /// cancel).
    pub fn new() -> (SupervisionControl, mpsc::Sender<KillReason>) {
        let (kill_tx, kill) = mpsc::channel(1);
        (SupervisionControl { kill, stdin: None }, kill_tx)
    }

    /// Feeds the program's stdin through `write_end` (the pipe's write end; the program reads
    /// the other end as its fd 0) from the returned sender.
    pub fn with_stdin(mut self, write_end: OwnedFd) -> (SupervisionControl, mpsc::Sender<Vec<u8>>) {
        let (tx, chunks) = mpsc::channel(STDIN_CHUNKS);
        self.stdin = Some(StdinFeed { write_end, chunks });
        (self, tx)
    }
}

/// Runs until the sandbox is gone, on the current tokio runtime; kills it on timeout, limit or
/// `control.kill`; reaps init; returns the result. Init is always killed and reaped and the
/// cgroup removed before this returns, error or not — and when the future is dropped before it
/// is done (then blocking, in the drop: see [`Supervision`]).
pub async fn supervise_async(
    sandbox: Supervised,
    policy: &Policy,
    control: SupervisionControl,
) -> Result<RunResult, SandboxError> {
    let mut machine = Supervision::new(sandbox, policy);
    let SupervisionControl { kill, stdin } = control;
    let mut outside = Outside {
        kill: Some(kill),
        stdin: None,
    };
    let looped = async {
        machine.start()?;
        if let Some(StdinFeed { write_end, chunks }) = stdin {
            machine.attach_stdin(write_end)?;
            outside.stdin = Some(chunks);
        }
        drive(&mut machine, &mut outside).await
    }
    .await;
    if looped.is_err() {
        machine.kill_outright();
    }
    let reaped = reap(machine.pidfd()).await;
    match looped {
        Ok(()) => machine.finish(reaped),
        Err(e) => {
            machine.abandon();
            Err(e)
        }
    }
}

/// The channels from outside, each `None` once it has said all it will.
struct Outside {
    kill: Option<mpsc::Receiver<KillReason>>,
    stdin: Option<mpsc::Receiver<Vec<u8>>>,
}

impl Outside {
    /// Takes what is already there, without waiting: a kill must not wait behind a sandbox
    /// whose fds are always ready.
    fn take_ready(&mut self, machine: &mut Supervision<'_>) -> Result<(), SandboxError> {
        if let Some(kill) = self.kill.as_mut() {
            match kill.try_recv() {
                Ok(reason) => self.killed(machine, Some(reason))?,
                Err(mpsc::error::TryRecvError::Disconnected) => self.killed(machine, None)?,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
        }
        if machine.wants_stdin() {
            if let Some(stdin) = self.stdin.as_mut() {
                match stdin.try_recv() {
                    Ok(chunk) => machine.feed_stdin(&chunk),
                    Err(mpsc::error::TryRecvError::Disconnected) => self.stdin_ended(machine),
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
            }
        }
        Ok(())
    }

    fn killed(
        &mut self,
        machine: &mut Supervision<'_>,
        reason: Option<KillReason>,
    ) -> Result<(), SandboxError> {
        self.kill = None;
        machine.kill(reason.unwrap_or(KillReason::Cancelled))
    }

    fn stdin_ended(&mut self, machine: &mut Supervision<'_>) {
        self.stdin = None;
        machine.end_stdin();
    }
}

/// One fd the task can sleep on: a duplicate of the machine's fd for `role`, registered with
/// tokio's reactor. `None` for an fd epoll refuses (a regular file, always ready: the
/// zero-timeout poll sees it).
struct Registration {
    role: Role,
    /// The machine's fd number when registered: a new number is a new registration.
    raw: RawFd,
    fd: Option<AsyncFd<OwnedFd>>,
}

fn io_error(context: &str) -> impl FnOnce(io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io {
        context: context.to_string(),
        source,
    }
}

/// Registers what the machine waits on now and drops what it no longer does (so no duplicate
/// keeps a pipe open that the machine closed).
fn register(
    registered: &mut Vec<Registration>,
    wanted: &[(BorrowedFd<'_>, Interest, Role)],
) -> Result<(), SandboxError> {
    registered.retain(|r| {
        wanted
            .iter()
            .any(|&(fd, _, role)| role == r.role && fd.as_raw_fd() == r.raw)
    });
    for &(fd, interest, role) in wanted {
        let raw = fd.as_raw_fd();
        if registered.iter().any(|r| r.role == role && r.raw == raw) {
            continue;
        }
        let dup = fd
            .try_clone_to_owned()
            .map_err(io_error("duplicate a sandbox fd for the reactor"))?;
        let interest = match interest {
            Interest::Read => TokioInterest::READABLE,
            Interest::Write => TokioInterest::WRITABLE,
        };
        let fd = match reactor::register(dup, interest) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => None,
            Err(e) => return Err(io_error("register a sandbox fd with the reactor")(e)),
        };
        registered.push(Registration { role, raw, fd });
    }
    Ok(())
}

/// Polls one registration's readiness; with `clear`, forgets what tokio recorded so far.
fn poll_ready(r: &Registration, cx: &mut Context<'_>, clear: bool) -> Poll<io::Result<()>> {
    let Some(fd) = &r.fd else {
        return Poll::Pending;
    };
    let ready = if is_write(r.role) {
        fd.poll_write_ready(cx)
    } else {
        fd.poll_read_ready(cx)
    };
    ready.map_ok(|mut guard| {
        if clear {
            guard.clear_ready();
        }
    })
}

fn is_write(role: Role) -> bool {
    matches!(role, Role::Sink(_) | Role::StdinSink | Role::Feed)
}

/// Forgets every readiness tokio recorded: the zero-timeout poll that follows sees the truth,
/// and an edge after this point wakes the task again.
fn clear_readiness(registered: &[Registration]) {
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    for r in registered {
        let _ = poll_ready(r, &mut cx, true);
    }
}

/// Ready when any registration is (or the reactor failed).
async fn any_ready(registered: &[Registration]) -> io::Result<()> {
    poll_fn(|cx| {
        for r in registered {
            if let Poll::Ready(result) = poll_ready(r, cx, false) {
                return Poll::Ready(result);
            }
        }
        Poll::Pending
    })
    .await
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

/// `recv` on a channel that may be gone (then never ready).
async fn recv<T>(channel: &mut Option<mpsc::Receiver<T>>, wanted: bool) -> Option<T> {
    match channel.as_mut().filter(|_| wanted) {
        Some(c) => c.recv().await,
        None => std::future::pending().await,
    }
}

async fn drive(machine: &mut Supervision<'_>, outside: &mut Outside) -> Result<(), SandboxError> {
    let mut registered: Vec<Registration> = Vec::new();
    loop {
        outside.take_ready(machine)?;
        let now = Instant::now();
        machine.on_time(now)?;
        if machine.is_done() {
            return Ok(());
        }
        let wake = machine.next_wake();
        let wanted = machine.waits_for(now);
        register(&mut registered, &wanted)?;
        clear_readiness(&registered);
        let fds: Vec<_> = wanted
            .iter()
            .map(|&(fd, interest, _)| (fd, interest))
            .collect();
        let ready =
            event::poll_with(&fds, Some(Duration::ZERO)).map_err(|source| SandboxError::Setup {
                step: "poll the sandbox".to_string(),
                source,
            })?;
        let roles: Vec<Role> = wanted
            .iter()
            .zip(&ready)
            .filter(|(_, r)| r.any())
            .map(|(&(_, _, role), _)| role)
            .collect();
        drop(fds);
        drop(wanted);
        if !roles.is_empty() {
            for role in roles {
                machine.on_ready(role)?;
            }
            tokio::task::yield_now().await;
            continue;
        }
        let wants_stdin = machine.wants_stdin();
        tokio::select! {
            reason = recv(&mut outside.kill, true) => outside.killed(machine, reason)?,
            chunk = recv(&mut outside.stdin, wants_stdin) => match chunk {
                Some(chunk) => machine.feed_stdin(&chunk),
                None => outside.stdin_ended(machine),
            },
            ready = any_ready(&registered) => ready.map_err(io_error("wait for the sandbox"))?,
            () = sleep_until(wake) => {}
        }
    }
}

/// Reaps init: waits until its pidfd is readable (it has exited), then `waitid` without
/// blocking.
async fn reap(pidfd: BorrowedFd<'_>) -> Result<Option<ChildExit>, SysError> {
    let watched = pidfd
        .try_clone_to_owned()
        .ok()
        .and_then(|dup| reactor::register(dup, TokioInterest::READABLE).ok());
    let Some(watched) = watched else {
        // No reactor for it: the blocking wait (init was killed or is gone: it is short).
        return event::wait_pidfd(pidfd, true);
    };
    loop {
        if let Some(exit) = event::wait_pidfd(pidfd, false)? {
            return Ok(Some(exit));
        }
        match watched.readable().await {
            Ok(mut guard) => guard.clear_ready(),
            Err(_) => return event::wait_pidfd(pidfd, true),
        }
    }
}

/// The driver against real processes (a plain child stands in for init), on a multi-thread
/// runtime.
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::stand_in::{policy, say, start, start_fed, Recorder};
    use super::super::OutputMode;
    use super::*;
    use crate::events::{Observer, RunEvent};
    use crate::init::InitMessage;
    use crate::limits::SandboxCgroup;
    use crate::result::Status;
    use bunker_api::{Data, ErrorCode};

    fn exited(init: &std::os::unix::net::UnixDatagram) {
        say(init, &InitMessage::Started);
        say(
            init,
            &InitMessage::Exited {
                code: Some(0),
                signal: None,
            },
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_clean_exit_with_captured_output() {
        let p = policy(|_| {});
        let (sup, init, _child) = start("echo out; echo err >&2; exit 0", SandboxCgroup::none());
        exited(&init);
        let (control, _kill) = SupervisionControl::new();
        let r = supervise_async(sup, &p, control).await.unwrap();
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(r.stdout.data, Some(Data::Utf8("out\n".into())));
        assert_eq!(r.stderr.data, Some(Data::Utf8("err\n".into())));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_timeout_kills() {
        let p = policy(|l| l.timeout = Some(Duration::from_millis(150)));
        let (sup, init, _child) = start("exec sleep 100", SandboxCgroup::none());
        say(&init, &InitMessage::Started);
        let (control, _kill) = SupervisionControl::new();
        let r = supervise_async(sup, &p, control).await.unwrap();
        assert_eq!(r.status, Status::Timeout, "{r:?}");
        assert_eq!(r.signal, Some(libc::SIGKILL));
        assert_eq!(r.error_code, Some(ErrorCode::LimitTimeout));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn output_events_stop_at_the_cap() {
        let p = policy(|l| l.output = 10_000);
        let recorder = Arc::new(Recorder::default());
        let (mut sup, init, _child) = start(
            "head -c 30000 /dev/zero | tr '\\0' x; echo late >&2",
            SandboxCgroup::none(),
        );
        sup.output = OutputMode::Events;
        sup.observer = Some(recorder.clone());
        exited(&init);
        let (control, _kill) = SupervisionControl::new();
        let r = supervise_async(sup, &p, control).await.unwrap();
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(recorder.stream(0), vec![b'x'; 10_000]);
        assert_eq!(recorder.stream(1), b"");
        assert_eq!(
            (r.stdout.bytes, r.stdout.kept, r.stdout.data),
            (30_000, 10_000, None)
        );
        assert_eq!((r.stderr.bytes, r.stderr.kept), (5, 0));
        assert!(recorder.events().iter().any(|e| matches!(
            e,
            RunEvent::LimitHit {
                code: ErrorCode::LimitOutput,
                ..
            }
        )));
    }

    /// Cancels the run when the output limit is hit: the loop is then busy with an output that
    /// never ends, so the cancel must not wait behind its always-ready fd.
    #[derive(Debug)]
    struct CancelAtTheCap(mpsc::Sender<KillReason>);

    impl Observer for CancelAtTheCap {
        fn event(&self, event: &RunEvent) {
            if matches!(event, RunEvent::LimitHit { .. }) {
                let _ = self.0.try_send(KillReason::Cancelled);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancel_ends_an_endless_output_as_cancelled() {
        let p = policy(|l| {
            l.output = 1000;
            l.timeout = Some(Duration::from_secs(60));
        });
        let (mut sup, init, _child) = start("exec sleep 100", SandboxCgroup::none());
        say(&init, &InitMessage::Started);
        // Always readable, never at its end (and not for epoll: the zero-timeout poll's case).
        sup.stdout = OwnedFd::from(std::fs::File::open("/dev/zero").unwrap());
        let (control, kill) = SupervisionControl::new();
        sup.observer = Some(Arc::new(CancelAtTheCap(kill)));
        let r = supervise_async(sup, &p, control).await.unwrap();
        assert_eq!(r.status, Status::Signal, "{r:?}");
        assert_eq!(r.error_code, Some(ErrorCode::Cancelled));
        assert_eq!(r.stdout.kept, 1000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_control_is_a_cancel() {
        let p = policy(|l| l.timeout = Some(Duration::from_secs(60)));
        let (sup, init, _child) = start("exec sleep 100", SandboxCgroup::none());
        say(&init, &InitMessage::Started);
        let (control, kill) = SupervisionControl::new();
        drop(kill);
        let r = supervise_async(sup, &p, control).await.unwrap();
        assert_eq!(r.error_code, Some(ErrorCode::Cancelled), "{r:?}");
        assert_eq!(r.signal, Some(libc::SIGKILL));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stdin_is_fed_from_the_channel_until_it_closes() {
        let p = policy(|l| l.timeout = Some(Duration::from_secs(60)));
        // `cat` ends only at end of file: the channel's close must reach it.
        let (sup, init, _child, stdin) = start_fed(
            "cat; printf ' [%s]' \"$(cat)\" >&2; exit 0",
            SandboxCgroup::none(),
        );
        exited(&init);
        let (control, _kill) = SupervisionControl::new();
        let (control, feed) = control.with_stdin(stdin);
        let run = tokio::spawn(async move { supervise_async(sup, &p, control).await });
        // More than a pipe holds, so the feed waits for the pipe to be writable.
        let big = vec![b'y'; 200_000];
        feed.send(b"hello ".to_vec()).await.unwrap();
        feed.send(big.clone()).await.unwrap();
        feed.send(b" world".to_vec()).await.unwrap();
        drop(feed);
        let r = run.await.unwrap().unwrap();
        assert_eq!(r.status, Status::Ok, "{r:?}");
        let mut expected = b"hello ".to_vec();
        expected.extend(&big);
        expected.extend(b" world");
        assert_eq!(r.stdout.bytes, expected.len() as u64);
        assert_eq!(r.stdout.data.unwrap().to_bytes().unwrap(), expected);
        // The second `cat` read end of file at once: the pipe was closed, not left open.
        assert_eq!(r.stderr.data, Some(Data::Utf8(" []".into())));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thirty_two_sandboxes_on_one_runtime() {
        let runs: Vec<_> = (0..32)
            .map(|i| {
                let (sup, init, _child) = start(
                    &format!("echo start {i}; sleep 0.2; echo end {i} >&2"),
                    SandboxCgroup::none(),
                );
                exited(&init);
                tokio::spawn(async move {
                    let p = policy(|l| l.timeout = Some(Duration::from_secs(60)));
                    let (control, _kill) = SupervisionControl::new();
                    supervise_async(sup, &p, control).await
                })
            })
            .collect();
        for (i, run) in runs.into_iter().enumerate() {
            let r = run.await.unwrap().unwrap();
            assert_eq!(r.status, Status::Ok, "{r:?}");
            assert_eq!(r.stdout.data, Some(Data::Utf8(format!("start {i}\n"))));
            assert_eq!(r.stderr.data, Some(Data::Utf8(format!("end {i}\n"))));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_supervision_leaves_no_process() {
        let (sup, init, child) = start("exec sleep 100", SandboxCgroup::none());
        say(&init, &InitMessage::Started);
        let pid = child.id();
        let run = tokio::spawn(async move {
            let p = policy(|l| l.timeout = Some(Duration::from_secs(60)));
            let (control, _kill) = SupervisionControl::new();
            supervise_async(sup, &p, control).await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        run.abort();
        assert!(run.await.unwrap_err().is_cancelled());
        // Killed and reaped: no zombie either.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
