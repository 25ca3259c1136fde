//! The supervision of one run as a state machine, [`Supervision`]. It owns everything of the run
//! — init's pidfd, the control socket, the output pipes, the cgroup, the output budget, the
//! stdin relay — and never waits. A driver asks it what it waits for ([`Supervision::waits_for`]:
//! fds, each readable or writable, with its [`Role`]; [`Supervision::next_wake`]: the next
//! instant it must look at the clock), waits for the earliest of those however it likes, and
//! tells it what happened: [`Supervision::on_ready`] with the role of a ready fd,
//! [`Supervision::on_time`] at the top of every round, [`Supervision::kill`] from outside. Once
//! [`Supervision::is_done`], the driver reaps init and hands the exit to
//! [`Supervision::finish`] for the [`RunResult`].
//!
//! Every limit is enforced the same way: a teardown request to init, and SIGKILL to init through
//! its pidfd after a grace, which makes the kernel kill every process of the sandbox's pid
//! namespace — including those that started a new session or double-forked.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bunker_cgroup::{Controller, MemoryStats, Over, ThrashWatch};
use bunker_policy::{Limits, Policy};
use bunker_sys::event::{self, ChildExit, Interest};
use bunker_sys::{fd, SysError};

use super::output::Output;
use super::verdict::{classify, Messages, Observed};
use super::{KillReason, Supervised};
use crate::error::SandboxError;
use crate::events::{Observer, RunEvent};
use crate::init::protocol::{self, InitMessage, MAX_MESSAGE};
use crate::limits::SandboxCgroup;
use crate::result::{Enforced, RunResult};
use crate::stdin::Relay;
use bunker_api::ErrorCode;

/// How often CPU time and OOM kills are checked while the sandbox runs.
const ACCOUNTING_TICK: Duration = Duration::from_millis(10);
/// After init is gone, how long to wait for the output pipes to reach end of file. Every writer
/// died with the pid namespace, so this only matters if a write end leaked somewhere.
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// How long init gets to end the sandbox itself (`protocol::teardown_signal`) before the
/// supervisor kills it, and the kernel the rest.
const TEARDOWN_GRACE: Duration = Duration::from_millis(5);
/// Once init reports it has killed everything (`TearingDown`), how long it gets to reap: the
/// dying processes' exits take milliseconds on a loaded host, and SIGKILL to init would leave
/// their reaping, and their CPU time, to the kernel.
const REAP_GRACE: Duration = Duration::from_millis(500);
/// Reads per stream per wake-up: an endless writer must not keep the loop from its deadline.
const READS_PER_WAKE: usize = 16;
const READ_CHUNK: usize = 64 * 1024;

/// What a ready fd is to the machine (from [`Supervision::waits_for`], back to
/// [`Supervision::on_ready`]). A role names one fd, the same each time it is waited on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Init's pidfd: readable when init — and with it the whole pid namespace — is gone.
    Init,
    /// The control socket (init's messages).
    Control,
    /// An output source, by its place in the machine's list (stdout, stderr, the pty's master).
    Pipe(usize),
    /// Our own stdout (0) or stderr (1), writable.
    Sink(usize),
    /// bunker's own lines waiting in the console's relay.
    Relay,
    /// The caller's stdin is readable (the relay).
    StdinSource,
    /// The relay's pipe or pty master is writable.
    StdinSink,
    /// The termination self-pipe (a signal to the supervisor).
    Termination,
    /// The program's stdin pipe fed by the driver ([`Supervision::feed_stdin`]) is writable.
    Feed,
}

/// One input of the machine, open until end of file.
struct Source {
    file: File,
    open: bool,
}

/// One of the program's output streams: its pipe, or (pty mode) the pty's master, counted as
/// its stdout.
struct OutputSource {
    source: Source,
    /// 0 stdout, 1 stderr.
    stream: usize,
}

/// The program's stdin, fed by the driver chunk by chunk ([`Supervision::feed_stdin`]).
struct Feed {
    /// The pipe's write end (non-blocking); `None` once closed, which the program reads as end
    /// of file.
    sink: Option<File>,
    /// Given, not yet taken by the pipe.
    pending: Vec<u8>,
    /// The driver has no more ([`Supervision::end_stdin`]): close once `pending` is in.
    ended: bool,
}

impl Feed {
    /// Hands the pipe what it takes without blocking; closes it when done or when the program
    /// closed its end (EPIPE: what is left is dropped).
    fn write(&mut self) {
        let Some(sink) = self.sink.as_mut() else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            match sink.write(&self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.sink = None;
                    self.pending.clear();
                    return;
                }
            }
        }
        if self.ended {
            self.sink = None;
        }
    }
}

/// The state of one supervised run. See the module's documentation.
///
/// Dropped before [`Supervision::finish`] or [`Supervision::abandon`] (a driver's future
/// dropped mid-run), it kills init outright, reaps it (blocking: the kernel's teardown of the
/// pid namespace is quick after SIGKILL) and removes the cgroup: nothing of the sandbox outlives
/// the machine.
pub struct Supervision<'p> {
    limits: &'p Limits,
    init_pid: i32,
    pidfd: OwnedFd,
    /// init's messages; also where the teardown request ([`protocol::TEARDOWN_REQUEST`]) goes.
    control: Source,
    pipes: Vec<OutputSource>,
    cgroup: SandboxCgroup,
    started: Instant,
    enforced: Enforced,
    /// The sandbox's mount namespace, held until the end: its teardown (unmounting its root
    /// waits for an RCU grace period) would otherwise run inside the exit of the sandbox's last
    /// process, between a kill and the moment init is seen gone. Best effort.
    mount_ns: Option<File>,
    /// Memory and pids counters read when the program ended (see `program_ended`).
    early_counters: Option<(Option<MemoryStats>, u64)>,
    kill: Option<KillReason>,
    /// When init is killed outright if it has not ended the sandbox by then.
    kill_deadline: Option<Instant>,
    messages: Messages,
    /// Whether the sandbox thrashes at its memory limit instead of being OOM-killed.
    thrash: ThrashWatch,
    /// When init's pidfd became readable (the sandbox is gone).
    init_gone_at: Option<Instant>,
    output: Output,
    observer: Option<Arc<dyn Observer>>,
    /// The caller's stdin relayed to the program (`stdin.rs`).
    stdin: Option<Relay>,
    /// The caller's termination self-pipe ([`Supervised::termination`]).
    termination: Option<BorrowedFd<'static>>,
    /// The program's stdin, when the driver feeds it.
    feed: Option<Feed>,
    /// The wall-clock timeout's instant.
    deadline: Option<Instant>,
    watch_cpu: bool,
    watch_oom: bool,
    /// The next CPU-time and memory check, when either is watched.
    next_tick: Option<Instant>,
    buf: Vec<u8>,
    done: bool,
    /// Init has been reaped by the driver, or by `drop`.
    reaped: bool,
    /// The cgroup is removed and the run's fds let go (`release`).
    released: bool,
}

impl std::fmt::Debug for Supervision<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervision")
            .field("init_pid", &self.init_pid)
            .field("kill", &self.kill)
            .field("init_gone_at", &self.init_gone_at)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<'p> Supervision<'p> {
    /// Takes the started sandbox over. Nothing here can fail: whatever happens next, the
    /// driver ends with [`Supervision::finish`] or [`Supervision::abandon`], which kill nothing
    /// but clean everything up.
    pub fn new(sandbox: Supervised, policy: &'p Policy) -> Supervision<'p> {
        let Supervised {
            init_pid,
            pidfd,
            control,
            stdout,
            stderr,
            cgroup,
            started,
            enforced,
            output,
            console,
            observer,
            mut stdin,
            termination,
        } = sandbox;
        let limits = &policy.limits;
        let mount_ns = File::open(format!("/proc/{init_pid}/ns/mnt")).ok();
        let output = Output::new(limits, output, console, observer.clone());
        let pty_output = stdin.as_mut().and_then(Relay::take_output);
        let pipes = [File::from(stdout), File::from(stderr)]
            .into_iter()
            .enumerate()
            .chain(pty_output.map(|master| (0, master)))
            .map(|(stream, file)| OutputSource {
                source: Source { file, open: true },
                stream,
            })
            .collect();
        let watch_cpu = limits.cpu_time.is_some() && cgroup.has(Controller::CpuAcct);
        let watch_oom = cgroup.has(Controller::Memory);
        // Nothing can be over a limit before the program has run for a tick.
        let next_tick = (watch_cpu || watch_oom).then(|| Instant::now() + ACCOUNTING_TICK);
        Supervision {
            limits,
            init_pid,
            pidfd,
            control: Source {
                file: File::from(control),
                open: true,
            },
            pipes,
            cgroup,
            started,
            enforced,
            mount_ns,
            early_counters: None,
            kill: None,
            kill_deadline: None,
            messages: Messages::default(),
            thrash: ThrashWatch::new(),
            init_gone_at: None,
            output,
            observer,
            stdin,
            termination,
            feed: None,
            deadline: limits.timeout.map(|t| started + t),
            watch_cpu,
            watch_oom,
            next_tick,
            buf: vec![0u8; READ_CHUNK.max(MAX_MESSAGE)],
            done: false,
            reaped: false,
            released: false,
        }
    }

    /// Makes the fds the machine reads non-blocking. The driver's first step: its failure is
    /// the run's (the driver then kills, reaps and [`Supervision::abandon`]s).
    pub fn start(&mut self) -> Result<(), SandboxError> {
        let fds =
            std::iter::once(&self.control.file).chain(self.pipes.iter().map(|p| &p.source.file));
        for file in fds {
            event::set_nonblocking(file.as_fd()).map_err(|source| SandboxError::Setup {
                step: "make supervisor fds non-blocking".to_string(),
                source,
            })?;
        }
        Ok(())
    }

    /// Init's pidfd, for the driver's reaping once the machine is done.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The program's stdin is the read end of a pipe whose write end is `write_end`: the driver
    /// feeds it ([`Supervision::feed_stdin`], [`Supervision::end_stdin`]).
    pub fn attach_stdin(&mut self, write_end: OwnedFd) -> Result<(), SandboxError> {
        event::set_nonblocking(write_end.as_fd()).map_err(|source| SandboxError::Setup {
            step: "make the program's stdin pipe non-blocking".to_string(),
            source,
        })?;
        self.feed = Some(Feed {
            sink: Some(File::from(write_end)),
            pending: Vec::new(),
            ended: false,
        });
        Ok(())
    }

    /// Whether the driver should hand the next chunk of stdin over: the pipe is open, has taken
    /// everything so far, and the sandbox runs. (The driver's backpressure: at most one chunk
    /// waits here.)
    pub fn wants_stdin(&self) -> bool {
        self.alive()
            && self
                .feed
                .as_ref()
                .is_some_and(|f| f.sink.is_some() && !f.ended && f.pending.is_empty())
    }

    /// The next chunk of the program's stdin; written at once as far as the pipe takes it, the
    /// rest when it is writable.
    pub fn feed_stdin(&mut self, chunk: &[u8]) {
        if let Some(feed) = self.feed.as_mut().filter(|f| f.sink.is_some() && !f.ended) {
            feed.pending.extend_from_slice(chunk);
            feed.write();
        }
    }

    /// No more stdin: the pipe closes once what waits is in (the program reads end of file).
    pub fn end_stdin(&mut self) {
        if let Some(feed) = self.feed.as_mut() {
            feed.ended = true;
            feed.write();
        }
    }

    /// Host pid of the sandbox's init.
    pub fn init_pid(&self) -> i32 {
        self.init_pid
    }

    /// The sandbox is gone and its output drained: the driver reaps init and finishes.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn alive(&self) -> bool {
        self.init_gone_at.is_none() && self.kill.is_none()
    }

    /// Ends the run for `reason` (the first reason stays): init is asked to tear the sandbox
    /// down, and is killed outright if it has not after a grace.
    pub fn kill(&mut self, reason: KillReason) -> Result<(), SandboxError> {
        if self.kill.is_none() && self.init_gone_at.is_none() {
            self.kill = Some(reason);
            // Init kills and reaps everything (so their CPU time is accounted); SIGKILL to init
            // after TEARDOWN_GRACE if it has not (`kill_overdue`).
            self.kill_deadline = Some(Instant::now() + TEARDOWN_GRACE);
            // The request first: the signal only wakes init, which then reads it. If init is
            // past reading it (gone, or its socket broken), the SIGKILL after the grace ends it.
            let _ = fd::send_with_fds(
                self.control.file.as_raw_fd(),
                protocol::TEARDOWN_REQUEST,
                &[],
            );
            self.signal_init(protocol::teardown_signal())?;
        }
        Ok(())
    }

    /// SIGKILL to init now, for a driver that failed: nothing of the sandbox may outlive it.
    pub fn kill_outright(&self) {
        let _ = event::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
    }

    /// SIGKILL to init once the teardown it was asked for is overdue.
    fn kill_overdue(&mut self, now: Instant) -> Result<(), SandboxError> {
        if self.init_gone_at.is_none() && self.kill_deadline.is_some_and(|d| now >= d) {
            self.kill_deadline = None;
            self.signal_init(libc::SIGKILL)?;
        }
        Ok(())
    }

    fn signal_init(&self, signal: i32) -> Result<(), SandboxError> {
        event::pidfd_send_signal(self.pidfd.as_fd(), signal).map_err(|source| SandboxError::Setup {
            step: "kill the sandbox".to_string(),
            source,
        })
    }

    /// What time decides, at the top of every round: the end once init is gone and the output
    /// drained (or the drain grace passed), an overdue teardown, the timeout, the accounting
    /// tick.
    pub fn on_time(&mut self, now: Instant) -> Result<(), SandboxError> {
        if self.done {
            return Ok(());
        }
        if let Some(gone) = self.init_gone_at {
            if !self.pipes.iter().any(|p| p.source.open) || now >= gone + DRAIN_GRACE {
                // Read what init said last (its Exited message may trail the pidfd).
                if self.control.open {
                    self.read_control()?;
                }
                self.done = true;
                return Ok(());
            }
        }
        self.kill_overdue(now)?;
        if self.alive() {
            if self.deadline.is_some_and(|d| now >= d) {
                return self.kill(KillReason::Timeout);
            }
            if self.next_tick.is_some_and(|t| now >= t) {
                self.check_accounting()?;
                self.next_tick = Some(now + ACCOUNTING_TICK);
            }
        }
        Ok(())
    }

    /// The earliest instant [`Supervision::on_time`] has something to do: the deadline, the
    /// next tick, the drain grace or the teardown's grace, a paused relay's retry.
    pub fn next_wake(&self) -> Option<Instant> {
        let alive = self.alive();
        let mut times = Vec::with_capacity(4);
        if alive {
            times.extend(self.deadline);
            times.extend(self.next_tick);
        }
        if let Some(gone) = self.init_gone_at {
            times.push(gone + DRAIN_GRACE);
        } else if let Some(d) = self.kill_deadline {
            times.push(d);
        }
        if let Some(t) = self
            .stdin
            .as_ref()
            .filter(|_| alive)
            .and_then(Relay::wake_at)
        {
            times.push(t);
        }
        times.into_iter().min()
    }

    /// The fds to wait on now, each with what to wait for and its role.
    pub fn waits_for(&self, now: Instant) -> Vec<(BorrowedFd<'_>, Interest, Role)> {
        let alive = self.alive();
        let mut fds = Vec::with_capacity(10);
        if self.init_gone_at.is_none() {
            fds.push((self.pidfd.as_fd(), Interest::Read, Role::Init));
        }
        if self.control.open {
            fds.push((self.control.file.as_fd(), Interest::Read, Role::Control));
        }
        for (i, p) in self.pipes.iter().enumerate() {
            if p.source.open {
                fds.push((p.source.file.as_fd(), Interest::Read, Role::Pipe(i)));
            }
        }
        for i in 0..2 {
            if let Some(sink) = self.output.waiting(i) {
                fds.push((sink, Interest::Write, Role::Sink(i)));
            }
        }
        if let Some(relay) = self.output.relay() {
            fds.push((relay, Interest::Read, Role::Relay));
        }
        if let Some(relay) = self.stdin.as_ref().filter(|_| alive) {
            if let Some(source) = relay.wants_read(now) {
                fds.push((source, Interest::Read, Role::StdinSource));
            }
            if let Some(sink) = relay.wants_write() {
                fds.push((sink, Interest::Write, Role::StdinSink));
            }
        }
        if let Some(feed) = self.feed.as_ref().filter(|_| self.init_gone_at.is_none()) {
            if let (Some(sink), false) = (&feed.sink, feed.pending.is_empty()) {
                fds.push((sink.as_fd(), Interest::Write, Role::Feed));
            }
        }
        if let Some(t) = self.termination.filter(|_| alive) {
            fds.push((t, Interest::Read, Role::Termination));
        }
        fds
    }

    /// The fd of `role` is ready (or hung up): does what it can without blocking.
    pub fn on_ready(&mut self, role: Role) -> Result<(), SandboxError> {
        match role {
            Role::Init => {
                self.init_gone_at.get_or_insert_with(Instant::now);
            }
            Role::Control => self.read_control()?,
            Role::Pipe(i) => self.read_pipe(i)?,
            Role::Sink(i) => self.output.write_waiting(i),
            Role::Relay => {
                // A line's place is where it was said: after all the program wrote before (its
                // thread waits until the line is taken, so nothing the line led to can be in
                // the pipes yet).
                for i in 0..self.pipes.len() {
                    if self.pipes[i].source.open {
                        self.read_pipe(i)?;
                    }
                }
                self.output.take_relay();
            }
            Role::StdinSource => {
                if let Some(relay) = self.stdin.as_mut() {
                    relay.read_source();
                }
            }
            Role::StdinSink => {
                if let Some(relay) = self.stdin.as_mut() {
                    relay.write_sink();
                }
            }
            Role::Feed => {
                if let Some(feed) = self.feed.as_mut() {
                    feed.write();
                }
            }
            Role::Termination => {
                let signal = self.termination.and_then(event::take_termination_signal);
                if let Some(sig) = signal {
                    self.kill(KillReason::Terminated(sig))?;
                }
                if event::take_window_change() {
                    if let Some(relay) = self.stdin.as_mut() {
                        relay.window_changed();
                    }
                }
            }
        }
        Ok(())
    }

    fn check_accounting(&mut self) -> Result<(), SandboxError> {
        if self.watch_cpu {
            if let (Some(limit), Some(used)) = (self.limits.cpu_time, self.cgroup.cpu_usage()) {
                if used >= limit {
                    return self.kill(KillReason::CpuTime);
                }
            }
        }
        if self.watch_oom {
            if self.cgroup.memory_stats().is_some_and(|m| m.oom_kills > 0) {
                // v1 OOM-kills one process; the rest of the sandbox goes with it.
                return self.kill(KillReason::MemoryLimit);
            }
            match self.over_memory_limit() {
                Some(Over::NothingToReclaim) => return self.kill(KillReason::MemoryLimit),
                Some(Over::WorkingSetDoesNotFit) => return self.kill(KillReason::MemoryThrash),
                None => {}
            }
        }
        Ok(())
    }

    /// Whether the sandbox is over its memory limit (see [`ThrashWatch`]): at it with nothing
    /// left to reclaim, or thrashing there, where the kernel would keep it at 100% CPU in
    /// reclaim for seconds before its OOM killer comes. `memory.stat` is read only on ticks at
    /// the limit.
    fn over_memory_limit(&mut self) -> Option<Over> {
        let (Some(limit), Some(usage)) = (self.limits.memory, self.cgroup.memory_usage()) else {
            return None;
        };
        if !ThrashWatch::at_limit(usage, limit) {
            self.thrash.below_limit();
            return None;
        }
        self.thrash
            .at_limit_tick(self.cgroup.memory_sample()?, limit)
    }

    /// Init reported the program's end and is about to exit (its exit ends the pid namespace).
    /// Until then the supervisor would only wait, so it does now what needs no wait for the
    /// reaping: the memory and pids counters are read (nothing of the program is left to
    /// change them), and the mount namespace's reference is let go, so its teardown runs in
    /// init's exit beside that instead of after the reaping. A kill by bunker keeps both for
    /// after the reaping, where the kill's latency is not at stake.
    fn program_ended(&mut self) {
        if self.kill.is_some() || self.early_counters.is_some() {
            return;
        }
        self.mount_ns = None;
        self.early_counters = Some(counters(&self.cgroup));
        self.cgroup.clean_stale_groups();
    }

    fn read_control(&mut self) -> Result<(), SandboxError> {
        loop {
            match self.control.file.read(&mut self.buf) {
                Ok(0) => {
                    self.control.open = false;
                    return Ok(());
                }
                Ok(n) => {
                    // A datagram that does not parse is ignored: init is ours, but the
                    // supervisor must not trust anything that crossed the sandbox boundary
                    // enough to fail on it.
                    if let Ok(msg) = serde_json::from_slice::<InitMessage>(&self.buf[..n]) {
                        if msg == InitMessage::TearingDown {
                            if let Some(deadline) = &mut self.kill_deadline {
                                *deadline = Instant::now() + REAP_GRACE;
                            }
                        }
                        self.messages.record(msg);
                        if self.messages.exited.is_some() {
                            self.program_ended();
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.control.open = false;
                    return Ok(());
                }
            }
        }
    }

    fn read_pipe(&mut self, pipe: usize) -> Result<(), SandboxError> {
        let index = self.pipes[pipe].stream;
        for _ in 0..READS_PER_WAKE {
            let read = self.pipes[pipe]
                .source
                .file
                .read(&mut self.buf[..READ_CHUNK]);
            match read {
                Ok(0) => {
                    self.pipes[pipe].source.open = false;
                    return Ok(());
                }
                Ok(n) => {
                    let was_cut = self.output.truncated(index);
                    let overflow = self.output.accept(index, &self.buf[..n]);
                    if overflow && !was_cut {
                        if let Some(observer) = &self.observer {
                            let stream = if index == 0 { "stdout" } else { "stderr" };
                            observer.event(&RunEvent::LimitHit {
                                code: ErrorCode::LimitOutput,
                                message: format!(
                                    "{stream} reached limits.output ({} bytes, both streams \
                                     together): the rest is counted, not delivered",
                                    self.limits.output
                                ),
                            });
                        }
                    }
                    if overflow && self.output.kills_on_overflow() {
                        self.kill(KillReason::OutputLimit)?;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // A pty's master once no slave is open: the end of the program's output.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    self.pipes[pipe].source.open = false;
                    return Ok(());
                }
                Err(e) => {
                    return Err(SandboxError::Io {
                        context: format!(
                            "read the program's {}",
                            if index == 0 { "stdout" } else { "stderr" }
                        ),
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }

    /// Lets go of what must go before the cgroup's last counters (the mount namespace, the
    /// relay: in pty mode the caller's terminal gets its modes back; the stdin feed), reads them
    /// and removes the cgroup. Once.
    fn release(&mut self) -> (Instant, (Option<MemoryStats>, u64), Option<Duration>) {
        self.released = true;
        self.mount_ns = None;
        self.stdin = None;
        self.feed = None;
        let ended = self.init_gone_at.unwrap_or_else(Instant::now);
        let counters = self
            .early_counters
            .take()
            .unwrap_or_else(|| counters(&self.cgroup));
        let cgroup_cpu = self.cgroup.cpu_usage();
        if let Err(e) = self.cgroup.destroy() {
            self.enforced.notes.push(e.to_string());
        }
        // Unless done while init exited (`program_ended`).
        self.cgroup.clean_stale_groups();
        (ended, counters, cgroup_cpu)
    }

    /// After the driver failed (and killed and reaped init): removes the cgroup and lets go of
    /// everything else. The captured output is dropped, the streamed rest not written.
    pub fn abandon(mut self) {
        self.reaped = true;
        self.release();
    }

    /// The run's result, from init's reaped exit (`waitid` on [`Supervision::pidfd`]). Removes
    /// the cgroup first, whatever `reaped` says.
    pub fn finish(
        mut self,
        reaped: Result<Option<ChildExit>, SysError>,
    ) -> Result<RunResult, SandboxError> {
        self.reaped = true;
        let (ended, (memory, pids_hits), cgroup_cpu) = self.release();
        let init_pid = self.init_pid;
        let init_exit = reaped
            .map_err(|source| SandboxError::Setup {
                step: format!("reap the sandbox's init (pid {init_pid})"),
                source,
            })?
            .ok_or_else(|| SandboxError::Init {
                step: format!("reap the sandbox's init (pid {init_pid})"),
                detail: "waitid found no exited child".to_string(),
            })?;
        let cpu = cgroup_cpu.unwrap_or(init_exit.cpu);
        let observed = Observed {
            kill: self.kill,
            messages: std::mem::take(&mut self.messages),
            init_exit,
            oom_kills: memory.map_or(0, |m| m.oom_kills),
            pids_hits,
            cpu,
        };
        let verdict = classify(&observed, self.limits);
        let (stdout, stderr) = self.output.finish();
        Ok(RunResult {
            status: verdict.status,
            exit_code: verdict.exit_code,
            signal: verdict.signal,
            error: verdict.error,
            error_code: verdict.error_code,
            error_step: verdict.error_step,
            wall_ms: ms(ended.saturating_duration_since(self.started)),
            cpu_ms: ms(cpu),
            peak_memory_bytes: memory.and_then(|m| m.peak_bytes),
            stdout,
            stderr,
            enforced: std::mem::take(&mut self.enforced),
            http: Default::default(),
            warm: false,
        })
    }
}

impl Drop for Supervision<'_> {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_outright();
            let _ = event::wait_pidfd(self.pidfd.as_fd(), true);
        }
        if !self.released {
            self.release();
        }
    }
}

/// The cgroup's memory counters and pids-limit hits.
fn counters(cgroup: &SandboxCgroup) -> (Option<MemoryStats>, u64) {
    (cgroup.memory_stats(), cgroup.pids_limit_hits().unwrap_or(0))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
