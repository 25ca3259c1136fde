//! The supervisor's loop: output capture with caps, timeouts, CPU time, OOM detection, and the
//! final RunResult.
//!
//! One thread, one `ppoll` over: init's pidfd (readable when init — and with it the whole pid
//! namespace — is gone), the control socket (init's messages), the program's stdout and stderr
//! (or the pty's master, `stdin.rs`), the caller's stdin and the relay's pipe when stdin is
//! relayed, and the termination self-pipe (SIGTERM/SIGINT/SIGHUP to the supervisor; SIGWINCH
//! too when bunker's pty follows the caller's window size). The poll timeout is the time left
//! to the wall-clock deadline (nanosecond precision), or the accounting tick (10 ms) when CPU
//! time or memory must be watched. Every limit is enforced the same way: SIGKILL
//! to init through its pidfd, which makes the kernel kill every process of the sandbox's pid
//! namespace — including those that started a new session or double-forked.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bunker_cgroup::{Controller, MemoryStats, Over, ThrashWatch};
use bunker_policy::{Limits, Policy};
use bunker_sys::event::{self, ChildExit, Interest};
use bunker_sys::fd;

use crate::console::Console;
use crate::error::SandboxError;
use crate::events::{Observer, RunEvent};
use crate::init::{self, InitMessage, MAX_MESSAGE};
use crate::limits::SandboxCgroup;
use crate::result::{Enforced, RunResult, Status, StreamResult};
use crate::stdin::Relay;
use bunker_api::exit::{CANNOT_EXECUTE, NOT_FOUND};
use bunker_api::{Data, ErrorCode};

/// How often CPU time and OOM kills are checked while the sandbox runs.
const ACCOUNTING_TICK: Duration = Duration::from_millis(10);
/// After init is gone, how long to wait for the output pipes to reach end of file. Every writer
/// died with the pid namespace, so this only matters if a write end leaked somewhere.
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// How long init gets to end the sandbox itself (`init::teardown_signal`) before the
/// supervisor kills it, and the kernel the rest.
const TEARDOWN_GRACE: Duration = Duration::from_millis(5);
/// Once init reports it has killed everything (`TearingDown`), how long it gets to reap: the
/// dying processes' exits take milliseconds on a loaded host, and SIGKILL to init would leave
/// their reaping, and their CPU time, to the kernel.
const REAP_GRACE: Duration = Duration::from_millis(500);
/// Reads per stream per wake-up: an endless writer must not keep the loop from its deadline.
const READS_PER_WAKE: usize = 16;
const READ_CHUNK: usize = 64 * 1024;

/// A started sandbox, handed over by spawn.rs.
#[derive(Debug)]
pub struct Supervised {
    /// Host pid of the sandbox's init (pid 1 inside). Killing it kills the whole pid namespace.
    pub init_pid: i32,
    /// pidfd of init (readable when it exits).
    pub pidfd: OwnedFd,
    /// SOCK_SEQPACKET control socket: `InitMessage`s from init, one per datagram (JSON).
    pub control: OwnedFd,
    /// Read ends of the program's stdout and stderr pipes.
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub cgroup: SandboxCgroup,
    /// When the clone happened (wall time is measured from here).
    pub started: Instant,
    pub enforced: Enforced,
    /// Copy output to the supervisor's stdout/stderr as it arrives (else capture into the result).
    pub stream_output: bool,
    /// bunker's own lines, relayed into the streamed stderr (see `console.rs`).
    pub console: Option<Console>,
    pub observer: Option<Arc<dyn Observer>>,
    /// The relay of the caller's stdin, when the program does not read it directly.
    pub stdin: Option<Relay>,
}

/// Why bunker killed the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    Timeout,
    CpuTime,
    MemoryLimit,
    /// At the memory limit, the sandbox kept faulting back in what it lost (`ThrashWatch`).
    MemoryThrash,
    OutputLimit,
    /// The supervisor itself received this signal (SIGTERM, SIGINT, SIGHUP).
    Terminated(i32),
}

/// Runs until the sandbox is gone; kills it on timeout or limit; reaps init; returns the result.
/// Init is always killed and reaped and the cgroup removed before this returns, error or not.
pub fn supervise(sandbox: Supervised, policy: &Policy) -> Result<RunResult, SandboxError> {
    let Supervised {
        init_pid,
        pidfd,
        control,
        stdout,
        stderr,
        mut cgroup,
        started,
        mut enforced,
        stream_output,
        console,
        observer,
        stdin,
    } = sandbox;
    let limits = &policy.limits;
    // Two things that would otherwise sit between the deadline and the moment init is seen
    // gone: the kernel's timer slack on our poll timeout (50 µs by default; restored below,
    // it is a per-thread setting of the caller's), and the teardown of the sandbox's mount
    // namespace (unmounting its root waits for an RCU grace period), which would run inside
    // the exit of its last process. Holding a reference moves it to when we drop it, after
    // the reaping. Both are best effort: without them the kill only takes a little longer.
    // (When the program ends by itself, the reference goes as soon as init reports the end,
    // so the teardown runs in init's exit while we read the cgroup's counters: see
    // `Run::program_ended`.)
    let slack = event::timer_slack().ok();
    let _ = event::set_timer_slack(1);
    let mount_ns = File::open(format!("/proc/{init_pid}/ns/mnt")).ok();
    let mut run = Run {
        control: control.as_fd(),
        mount_ns,
        early_counters: None,
        limits,
        cgroup: &cgroup,
        pidfd: pidfd.as_fd(),
        started,
        kill: None,
        kill_deadline: None,
        messages: Messages::default(),
        thrash: ThrashWatch::new(),
        init_gone_at: None,
        output: Output::new(limits, stream_output, console),
        observer: observer.as_deref(),
        stdin,
    };
    let looped = match control.try_clone() {
        Ok(reader) => run.run(File::from(reader), [File::from(stdout), File::from(stderr)]),
        Err(e) => Err(SandboxError::Setup {
            step: "duplicate the control socket".to_string(),
            source: bunker_sys::SysError::from_errno(
                format!("fcntl(F_DUPFD_CLOEXEC): {e}"),
                e.raw_os_error().unwrap_or(libc::EMFILE),
            ),
        }),
    };
    // Whatever happened above, nothing of the sandbox may outlive this function.
    if looped.is_err() {
        let _ = event::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
    }
    let reaped = event::wait_pidfd(pidfd.as_fd(), true);
    drop(run.mount_ns.take());
    if let Some(slack) = slack {
        let _ = event::set_timer_slack(slack);
    }
    let Run {
        kill,
        messages,
        init_gone_at,
        output,
        early_counters,
        stdin,
        ..
    } = run;
    // Pty mode: the caller's terminal gets its modes back.
    drop(stdin);
    let ended = init_gone_at.unwrap_or_else(Instant::now);
    let (memory, pids_hits) = early_counters.unwrap_or_else(|| counters(&cgroup));
    let cgroup_cpu = cgroup.cpu_usage();
    if let Err(e) = cgroup.destroy() {
        enforced.notes.push(e.to_string());
    }
    // Unless done while init exited (`Run::program_ended`).
    cgroup.clean_stale_groups();
    looped?;
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
        kill,
        messages,
        init_exit,
        oom_kills: memory.map_or(0, |m| m.oom_kills),
        pids_hits,
        cpu,
    };
    let verdict = classify(&observed, limits);
    let (stdout, stderr) = output.finish();
    Ok(RunResult {
        status: verdict.status,
        exit_code: verdict.exit_code,
        signal: verdict.signal,
        error: verdict.error,
        error_code: verdict.error_code,
        error_step: verdict.error_step,
        wall_ms: ms(ended.saturating_duration_since(started)),
        cpu_ms: ms(cpu),
        peak_memory_bytes: memory.and_then(|m| m.peak_bytes),
        stdout,
        stderr,
        enforced,
        http: Default::default(),
    })
}

/// The cgroup's memory counters and pids-limit hits.
fn counters(cgroup: &SandboxCgroup) -> (Option<MemoryStats>, u64) {
    (cgroup.memory_stats(), cgroup.pids_limit_hits().unwrap_or(0))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// What init reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Messages {
    pub started: bool,
    /// A failed setup step: its code, the step, and `step: detail`.
    pub setup_failed: Option<(ErrorCode, String, String)>,
    /// The exec failure's message.
    pub exec_failed: Option<String>,
    /// The program's end: (exit code, signal).
    pub exited: Option<(Option<i32>, Option<i32>)>,
}

impl Messages {
    fn record(&mut self, msg: InitMessage) {
        match msg {
            InitMessage::Started => self.started = true,
            InitMessage::SetupFailed {
                step,
                errno,
                detail,
                code,
            } => {
                let errno = if errno != 0 {
                    format!(" ({})", bunker_sys::error::errno_name(errno))
                } else {
                    String::new()
                };
                let message = format!("{step}: {detail}{errno}");
                self.setup_failed.get_or_insert((code, step, message));
            }
            InitMessage::ExecFailed { detail, .. } => {
                self.exec_failed.get_or_insert(detail);
            }
            InitMessage::Exited { code, signal } => {
                self.exited.get_or_insert((code, signal));
            }
            // Setup-phase messages (Ready) belong to spawn.rs.
            _ => {}
        }
    }
}

/// Everything the verdict is made of.
#[derive(Debug, Clone)]
pub struct Observed {
    pub kill: Option<KillReason>,
    pub messages: Messages,
    pub init_exit: ChildExit,
    pub oom_kills: u64,
    pub pids_hits: u64,
    pub cpu: Duration,
}

/// Status, code, signal and message of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
    /// Set with `error`: its stable code.
    pub error_code: Option<ErrorCode>,
    /// For a setup failure: the step that failed.
    pub error_step: Option<String>,
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGXCPU => "SIGXCPU".into(),
        libc::SIGXFSZ => "SIGXFSZ".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGSYS => "SIGSYS".into(),
        n => format!("signal {n}"),
    }
}

fn human_bytes(n: u64) -> String {
    let units: [(u64, &str); 4] = [
        (1 << 20, "MiB"),
        (1_000_000, "MB"),
        (1 << 10, "KiB"),
        (1_000, "kB"),
    ];
    for (size, unit) in units {
        if n >= size && n.is_multiple_of(size) {
            return format!("{} {unit}", n / size);
        }
    }
    format!("{n} bytes")
}

/// Decides how the run ended. Order matters: a kill by bunker explains everything after it;
/// a setup failure means the program never ran; an OOM kill explains a dead program; the pids
/// limit explains a failing one.
pub fn classify(o: &Observed, limits: &Limits) -> Verdict {
    let v = |status, error_code, exit_code, signal, error: String| Verdict {
        status,
        exit_code,
        signal,
        error: Some(error),
        error_code: Some(error_code),
        error_step: None,
    };
    // An exec failure, or init's own end with the exec failure's code.
    let exec_code = |code: Option<i32>| match code {
        Some(NOT_FOUND) => ErrorCode::CommandNotFound,
        _ => ErrorCode::CannotExecute,
    };
    if let Some(kill) = o.kill {
        let killed = Some(libc::SIGKILL);
        let mut verdict = match kill {
            KillReason::Timeout => v(
                Status::Timeout,
                ErrorCode::LimitTimeout,
                None,
                killed,
                format!(
                    "killed at the {} timeout",
                    span(limits.timeout.unwrap_or_default())
                ),
            ),
            KillReason::CpuTime => v(
                Status::CpuTime,
                ErrorCode::LimitCpuTime,
                None,
                killed,
                format!(
                    "killed after {} of CPU time (limit {})",
                    span(o.cpu),
                    span(limits.cpu_time.unwrap_or_default())
                ),
            ),
            KillReason::MemoryLimit => v(
                Status::MemoryLimit,
                ErrorCode::LimitMemory,
                None,
                killed,
                memory_message(limits),
            ),
            KillReason::MemoryThrash => v(
                Status::MemoryLimit,
                ErrorCode::LimitMemory,
                None,
                killed,
                format!(
                    "{}: its working set does not fit (at the limit it kept faulting back in the \
                     pages it lost; a cold page cache charges a runtime's own code to it too)",
                    memory_message(limits)
                ),
            ),
            KillReason::OutputLimit => v(
                Status::OutputLimit,
                ErrorCode::LimitOutput,
                None,
                killed,
                format!(
                    "killed when its output exceeded {} (limits.output)",
                    human_bytes(limits.output)
                ),
            ),
            KillReason::Terminated(sig) => v(
                Status::Signal,
                ErrorCode::Terminated,
                None,
                Some(sig),
                format!(
                    "bunker received {}: the sandbox was killed",
                    signal_name(sig)
                ),
            ),
        };
        // A fork bomb usually ends at the timeout: say that the pids limit held it.
        if o.pids_hits > 0 {
            if let Some(error) = verdict.error.as_mut() {
                error.push_str(&format!("; {}", pids_message(o, limits)));
            }
        }
        return verdict;
    }
    if let Some((code, step, failed)) = &o.messages.setup_failed {
        return Verdict {
            error_step: Some(step.clone()),
            ..v(Status::SetupError, *code, None, None, failed.clone())
        };
    }
    let (code, signal) = match o.messages.exited {
        Some(end) => end,
        // Init died without reporting: its own end is all there is.
        None => (o.init_exit.code, o.init_exit.signal),
    };
    if o.oom_kills > 0 {
        return v(
            Status::MemoryLimit,
            ErrorCode::LimitMemory,
            code,
            signal,
            memory_message(limits),
        );
    }
    if let Some(detail) = &o.messages.exec_failed {
        return v(Status::Exit, exec_code(code), code, None, detail.clone());
    }
    if o.messages.exited.is_none() {
        let how = match (o.init_exit.code, o.init_exit.signal) {
            (_, Some(s)) => format!("was killed by {}", signal_name(s)),
            (Some(c), _) => format!("exited with code {c}"),
            _ => "ended".to_string(),
        };
        let error = format!("the sandbox's init {how} before the program ended");
        return match signal {
            Some(s) => v(
                Status::Signal,
                ErrorCode::InternalError,
                None,
                Some(s),
                error,
            ),
            None => match code {
                Some(NOT_FOUND | CANNOT_EXECUTE) => {
                    v(Status::SetupError, exec_code(code), code, None, error)
                }
                _ => v(
                    Status::SetupError,
                    ErrorCode::SetupFailed,
                    code,
                    None,
                    error,
                ),
            },
        };
    }
    let cpu_exhausted = limits.cpu_time.is_some_and(|limit| o.cpu >= limit);
    match (code, signal) {
        (Some(0), _) => Verdict {
            status: Status::Ok,
            exit_code: Some(0),
            signal: None,
            error: None,
            error_code: None,
            error_step: None,
        },
        (_, Some(s)) if s == libc::SIGXCPU || (s == libc::SIGKILL && cpu_exhausted) => v(
            Status::CpuTime,
            ErrorCode::LimitCpuTime,
            None,
            Some(s),
            format!(
                "killed by RLIMIT_CPU ({}) after {} of CPU time (limit {})",
                signal_name(s),
                span(o.cpu),
                span(limits.cpu_time.unwrap_or_default())
            ),
        ),
        (code, signal) if o.pids_hits > 0 => v(
            Status::PidsLimit,
            ErrorCode::LimitPids,
            code,
            signal,
            pids_message(o, limits),
        ),
        (_, Some(s)) => Verdict {
            status: Status::Signal,
            exit_code: None,
            signal: Some(s),
            error: None,
            error_code: None,
            error_step: None,
        },
        (code, None) => Verdict {
            status: Status::Exit,
            exit_code: code,
            signal: None,
            error: None,
            error_code: None,
            error_step: None,
        },
    }
}

fn pids_message(o: &Observed, limits: &Limits) -> String {
    format!(
        "the pids limit ({}) refused {} fork(s)",
        limits
            .pids
            .map_or_else(|| "?".to_string(), |p| p.to_string()),
        o.pids_hits
    )
}

fn memory_message(limits: &Limits) -> String {
    match limits.memory {
        Some(m) => format!("killed by the memory limit ({})", human_bytes(m)),
        None => "killed by the out-of-memory killer".to_string(),
    }
}

fn span(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

/// The output budget shared by stdout and stderr, and where the kept bytes go.
///
/// Streaming never blocks the loop: kept bytes wait in a buffer (bounded by the limit) until our
/// own stdout/stderr is writable, and are written at most `PIPE_BUF` bytes at a time — a pipe
/// that polls writable takes that much without blocking. A caller that stops reading bunker's
/// output therefore cannot stop the timeout (`bunker run --timeout 1s -- yes | sleep 100`).
#[derive(Debug)]
pub struct Output {
    limit: u64,
    kill_on_overflow: bool,
    stream: bool,
    delivered: u64,
    streams: [StreamState; 2],
    /// bunker's own lines go into the stderr stream, each on a fresh line (streaming only).
    console: Option<Console>,
    /// Relayed bytes after the last complete line.
    relay_partial: Vec<u8>,
    /// Our stdout and stderr are the same file (`2>&1`, a terminal): a line of bunker's
    /// then also needs a fresh line after the program's unfinished stdout line.
    shared_sink: bool,
}

#[derive(Debug, Default)]
struct StreamState {
    result: StreamResult,
    /// Kept bytes: the capture, or (streaming) what is not yet written to the sink.
    buffer: Vec<u8>,
    /// Streaming: how much of `buffer` is written.
    written: usize,
    /// Streaming: our own stdout/stderr (a duplicate, so no user-space buffering is involved).
    sink: Option<File>,
    /// Writing to the sink failed (EPIPE): keep counting, stop writing.
    sink_broken: bool,
    /// The last byte put into `buffer` was not a newline.
    mid_line: bool,
}

/// Largest write that a writable pipe takes without blocking.
const PIPE_BUF: usize = libc::PIPE_BUF;
/// bunker lines waiting for a stderr that is not read are dropped (and counted) once the stderr
/// backlog is past the output limit plus this: the supervisor's memory stays bounded by that.
const MAX_CONSOLE_BACKLOG: usize = 256 * 1024;

impl Output {
    pub fn new(limits: &Limits, stream: bool, console: Option<Console>) -> Output {
        let mut streams: [StreamState; 2] = Default::default();
        if stream {
            // Whatever the caller printed through std's buffers goes first.
            let _ = std::io::stdout().flush();
            let sinks = [
                std::io::stdout().as_fd().try_clone_to_owned(),
                std::io::stderr().as_fd().try_clone_to_owned(),
            ];
            for (state, sink) in streams.iter_mut().zip(sinks) {
                match sink {
                    Ok(fd) => state.sink = Some(File::from(fd)),
                    Err(_) => state.sink_broken = true,
                }
            }
        }
        let console = console.filter(|_| stream);
        if let Some(console) = &console {
            console.start_relay();
        }
        let relay_partial = Vec::new();
        let shared_sink = match (&streams[0].sink, &streams[1].sink) {
            (Some(out), Some(err)) => match (out.metadata(), err.metadata()) {
                (Ok(a), Ok(b)) => {
                    use std::os::unix::fs::MetadataExt;
                    (a.dev(), a.ino()) == (b.dev(), b.ino())
                }
                _ => false,
            },
            _ => false,
        };
        let mut output = Output {
            limit: limits.output,
            kill_on_overflow: limits.kill_on_output_overflow,
            stream,
            delivered: 0,
            streams,
            console,
            relay_partial,
            shared_sink,
        };
        // Lines said before the loop (the best-effort warnings at `RunEvent::Started`) go first.
        output.take_relay();
        output
    }

    /// The console's relay, to poll while the run streams.
    fn relay(&self) -> Option<BorrowedFd<'_>> {
        self.console.as_ref().map(Console::relay_fd)
    }

    /// Moves bunker's relayed lines into the stderr stream, each starting on a fresh line.
    /// They are not the program's output: not counted in its bytes, not under its limit.
    fn take_relay(&mut self) {
        let Some(console) = &self.console else {
            return;
        };
        console.read_relay(&mut self.relay_partial);
        let Some(end) = self.relay_partial.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let lines: Vec<u8> = self.relay_partial.drain(..=end).collect();
        let err = &self.streams[1];
        let backlog = err.buffer.len() - err.written;
        let bound = usize::try_from(self.limit)
            .unwrap_or(usize::MAX)
            .saturating_add(MAX_CONSOLE_BACKLOG);
        if err.sink_broken || backlog + lines.len() > bound {
            let count = lines.iter().filter(|&&b| b == b'\n').count() as u64;
            console.count_dropped(count);
            return;
        }
        let fresh = self.streams[1].mid_line || (self.shared_sink && self.streams[0].mid_line);
        let err = &mut self.streams[1];
        if fresh {
            err.buffer.push(b'\n');
        }
        err.buffer.extend_from_slice(&lines);
        err.mid_line = false;
        if self.shared_sink {
            self.streams[0].mid_line = false;
        }
    }

    /// Whether stream `index` has been cut.
    fn truncated(&self, index: usize) -> bool {
        self.streams[index].result.truncated
    }

    /// Takes `data` read from stream `index` (0 stdout, 1 stderr). Returns whether the output
    /// limit was exceeded (so the caller can kill when asked to). Memory use is bounded by the
    /// limit: bytes past it are only counted.
    pub fn accept(&mut self, index: usize, data: &[u8]) -> bool {
        let room = self.limit.saturating_sub(self.delivered);
        let keep = (data.len() as u64).min(room) as usize;
        let s = &mut self.streams[index];
        s.result.bytes += data.len() as u64;
        s.result.kept += keep as u64;
        self.delivered += keep as u64;
        if keep > 0 && !s.sink_broken {
            s.buffer.extend_from_slice(&data[..keep]);
            s.mid_line = data[keep - 1] != b'\n';
        }
        let overflow = keep < data.len();
        if overflow {
            s.result.truncated = true;
        }
        overflow
    }

    /// Whether a cut should kill the sandbox.
    pub fn kills_on_overflow(&self) -> bool {
        self.kill_on_overflow
    }

    /// The sink of stream `index` when it has bytes waiting to be written.
    fn waiting(&self, index: usize) -> Option<BorrowedFd<'_>> {
        let s = &self.streams[index];
        match &s.sink {
            Some(sink) if self.stream && !s.sink_broken && s.written < s.buffer.len() => {
                Some(sink.as_fd())
            }
            _ => None,
        }
    }

    /// Writes what the writable sink of stream `index` takes without blocking.
    fn write_waiting(&mut self, index: usize) {
        let s = &mut self.streams[index];
        let Some(sink) = s.sink.as_mut() else {
            return;
        };
        let end = s.buffer.len().min(s.written + PIPE_BUF);
        match sink.write(&s.buffer[s.written..end]) {
            Ok(n) => s.written += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(_) => s.sink_broken = true,
        }
        if s.written == s.buffer.len() || s.sink_broken {
            s.buffer.clear();
            s.written = 0;
        }
    }

    /// Delivers what is still waiting (now blocking: the sandbox is gone) and returns the
    /// stream results.
    pub fn finish(mut self) -> (StreamResult, StreamResult) {
        self.take_relay();
        let stream = self.stream;
        let ends_mid_line =
            self.streams[1].mid_line || (self.shared_sink && self.streams[0].mid_line);
        let console = self.console.take();
        let [out, err] = self.streams;
        let done = |mut s: StreamState| {
            if stream {
                if let (Some(sink), false) = (s.sink.as_mut(), s.sink_broken) {
                    let _ = sink.write_all(&s.buffer[s.written..]);
                }
            } else {
                s.result.data = Some(Data::from_bytes(std::mem::take(&mut s.buffer)));
            }
            s.result
        };
        let results = (done(out), done(err));
        if let Some(console) = console {
            console.end_relay(ends_mid_line);
        }
        results
    }
}

struct Run<'a> {
    /// The control socket, for the teardown request ([`init::TEARDOWN_REQUEST`]).
    control: BorrowedFd<'a>,
    /// The sandbox's mount namespace, held until the end (see `supervise`).
    mount_ns: Option<File>,
    /// Memory and pids counters read when the program ended (see `Run::program_ended`).
    early_counters: Option<(Option<MemoryStats>, u64)>,
    limits: &'a Limits,
    cgroup: &'a SandboxCgroup,
    pidfd: BorrowedFd<'a>,
    started: Instant,
    kill: Option<KillReason>,
    /// When init is killed outright if it has not ended the sandbox by then.
    kill_deadline: Option<Instant>,
    messages: Messages,
    /// Whether the sandbox thrashes at its memory limit instead of being OOM-killed.
    thrash: ThrashWatch,
    /// When init's pidfd became readable (the sandbox is gone).
    init_gone_at: Option<Instant>,
    output: Output,
    observer: Option<&'a dyn Observer>,
    /// The caller's stdin relayed to the program (`stdin.rs`).
    stdin: Option<Relay>,
}

/// One input of the loop, open until end of file.
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

impl Run<'_> {
    fn kill(&mut self, reason: KillReason) -> Result<(), SandboxError> {
        if self.kill.is_none() && self.init_gone_at.is_none() {
            self.kill = Some(reason);
            // Init kills and reaps everything (so their CPU time is accounted); SIGKILL to init
            // after TEARDOWN_GRACE if it has not (`kill_overdue`).
            self.kill_deadline = Some(Instant::now() + TEARDOWN_GRACE);
            // The request first: the signal only wakes init, which then reads it. If init is
            // past reading it (gone, or its socket broken), the SIGKILL after the grace ends it.
            let _ = fd::send_with_fds(self.control.as_raw_fd(), init::TEARDOWN_REQUEST, &[]);
            self.signal_init(init::teardown_signal())?;
        }
        Ok(())
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
        event::pidfd_send_signal(self.pidfd, signal).map_err(|source| SandboxError::Setup {
            step: "kill the sandbox".to_string(),
            source,
        })
    }

    fn run(&mut self, control: File, pipes: [File; 2]) -> Result<(), SandboxError> {
        let io_err = |context: &str| {
            let context = context.to_string();
            move |source: bunker_sys::SysError| SandboxError::Setup {
                step: context,
                source,
            }
        };
        event::set_nonblocking(control.as_fd())
            .map_err(io_err("make supervisor fds non-blocking"))?;
        let mut control = Source {
            file: control,
            open: true,
        };
        let pty_output = self.stdin.as_mut().and_then(Relay::take_output);
        let mut pipes: Vec<OutputSource> = pipes
            .into_iter()
            .enumerate()
            .chain(pty_output.map(|master| (0, master)))
            .map(|(stream, file)| OutputSource {
                source: Source { file, open: true },
                stream,
            })
            .collect();
        for p in &pipes {
            event::set_nonblocking(p.source.file.as_fd())
                .map_err(io_err("make supervisor fds non-blocking"))?;
        }
        let deadline = self.limits.timeout.map(|t| self.started + t);
        let watch_cpu = self.limits.cpu_time.is_some() && self.cgroup.has(Controller::CpuAcct);
        let watch_oom = self.cgroup.has(Controller::Memory);
        let tick = (watch_cpu || watch_oom).then_some(ACCOUNTING_TICK);
        // Nothing can be over a limit before the program has run for a tick.
        let mut next_tick = Instant::now() + ACCOUNTING_TICK;
        let mut buf = vec![0u8; READ_CHUNK.max(MAX_MESSAGE)];

        loop {
            let now = Instant::now();
            if let Some(gone) = self.init_gone_at {
                if !pipes.iter().any(|p| p.source.open) || now >= gone + DRAIN_GRACE {
                    // Read what init said last (its Exited message may trail the pidfd).
                    if control.open {
                        self.read_control(&mut control, &mut buf)?;
                    }
                    return Ok(());
                }
            }
            self.kill_overdue(now)?;
            let alive = self.init_gone_at.is_none() && self.kill.is_none();
            if alive {
                if deadline.is_some_and(|d| now >= d) {
                    self.kill(KillReason::Timeout)?;
                    continue;
                }
                if tick.is_some() && now >= next_tick {
                    self.check_accounting(watch_cpu, watch_oom)?;
                    next_tick = now + ACCOUNTING_TICK;
                    if self.kill.is_some() {
                        continue;
                    }
                }
            }

            // Wait for the earliest of: the deadline, the next tick, the drain grace.
            let mut wait: Option<Duration> = None;
            let mut until = |t: Instant| {
                let d = t.saturating_duration_since(now);
                wait = Some(wait.map_or(d, |w: Duration| w.min(d)));
            };
            if alive {
                if let Some(d) = deadline {
                    until(d);
                }
                if tick.is_some() {
                    until(next_tick);
                }
            }
            if let Some(gone) = self.init_gone_at {
                until(gone + DRAIN_GRACE);
            } else if let Some(d) = self.kill_deadline {
                until(d);
            }
            let relay = self.stdin.as_ref().filter(|_| alive);
            if let Some(t) = relay.and_then(Relay::wake_at) {
                until(t);
            }

            let termination = event::termination_fd().filter(|_| alive);
            let mut fds: Vec<(BorrowedFd<'_>, Interest)> = Vec::with_capacity(10);
            let mut roles: Vec<Role> = Vec::with_capacity(10);
            if self.init_gone_at.is_none() {
                fds.push((self.pidfd, Interest::Read));
                roles.push(Role::Init);
            }
            if control.open {
                fds.push((control.file.as_fd(), Interest::Read));
                roles.push(Role::Control);
            }
            for (i, p) in pipes.iter().enumerate() {
                if p.source.open {
                    fds.push((p.source.file.as_fd(), Interest::Read));
                    roles.push(Role::Pipe(i));
                }
            }
            for i in 0..2 {
                if let Some(sink) = self.output.waiting(i) {
                    fds.push((sink, Interest::Write));
                    roles.push(Role::Sink(i));
                }
            }
            if let Some(relay) = self.output.relay() {
                fds.push((relay, Interest::Read));
                roles.push(Role::Relay);
            }
            if let Some(relay) = relay {
                if let Some(source) = relay.wants_read(now) {
                    fds.push((source, Interest::Read));
                    roles.push(Role::StdinSource);
                }
                if let Some(sink) = relay.wants_write() {
                    fds.push((sink, Interest::Write));
                    roles.push(Role::StdinSink);
                }
            }
            if let Some(t) = termination {
                fds.push((t, Interest::Read));
                roles.push(Role::Termination);
            }
            let ready = event::poll_with(&fds, wait).map_err(io_err("poll the sandbox"))?;
            drop(fds);

            for (role, r) in roles.into_iter().zip(ready) {
                if !r.any() {
                    continue;
                }
                match role {
                    Role::Init => self.init_gone_at = Some(Instant::now()),
                    Role::Control => self.read_control(&mut control, &mut buf)?,
                    Role::Pipe(i) => {
                        let p = &mut pipes[i];
                        self.read_pipe(p.stream, &mut p.source, &mut buf)?
                    }
                    Role::Sink(i) => self.output.write_waiting(i),
                    Role::Relay => {
                        // A line's place is where it was said: after all the program wrote
                        // before (its thread waits until the line is taken, so nothing the
                        // line led to can be in the pipes yet).
                        for p in pipes.iter_mut().filter(|p| p.source.open) {
                            self.read_pipe(p.stream, &mut p.source, &mut buf)?;
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
                    Role::Termination => {
                        if let Some(sig) = event::take_termination_signal() {
                            self.kill(KillReason::Terminated(sig))?;
                        }
                        if event::take_window_change() {
                            if let Some(relay) = self.stdin.as_mut() {
                                relay.window_changed();
                            }
                        }
                    }
                }
            }
        }
    }

    fn check_accounting(&mut self, watch_cpu: bool, watch_oom: bool) -> Result<(), SandboxError> {
        if watch_cpu {
            if let (Some(limit), Some(used)) = (self.limits.cpu_time, self.cgroup.cpu_usage()) {
                if used >= limit {
                    return self.kill(KillReason::CpuTime);
                }
            }
        }
        if watch_oom {
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
        self.early_counters = Some(counters(self.cgroup));
        self.cgroup.clean_stale_groups();
    }

    fn read_control(&mut self, control: &mut Source, buf: &mut [u8]) -> Result<(), SandboxError> {
        loop {
            match control.file.read(buf) {
                Ok(0) => {
                    control.open = false;
                    return Ok(());
                }
                Ok(n) => {
                    // A datagram that does not parse is ignored: init is ours, but the
                    // supervisor must not trust anything that crossed the sandbox boundary
                    // enough to fail on it.
                    if let Ok(msg) = serde_json::from_slice::<InitMessage>(&buf[..n]) {
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
                    control.open = false;
                    return Ok(());
                }
            }
        }
    }

    fn read_pipe(
        &mut self,
        index: usize,
        pipe: &mut Source,
        buf: &mut [u8],
    ) -> Result<(), SandboxError> {
        for _ in 0..READS_PER_WAKE {
            match pipe.file.read(&mut buf[..READ_CHUNK]) {
                Ok(0) => {
                    pipe.open = false;
                    return Ok(());
                }
                Ok(n) => {
                    let was_cut = self.output.truncated(index);
                    let overflow = self.output.accept(index, &buf[..n]);
                    if overflow && !was_cut {
                        if let Some(observer) = self.observer {
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
                    pipe.open = false;
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
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Init,
    Control,
    /// An output source, by its place in the loop's list.
    Pipe(usize),
    /// Our own stdout (0) or stderr (1), writable.
    Sink(usize),
    /// bunker's own lines waiting in the console's relay.
    Relay,
    /// The caller's stdin is readable (the relay).
    StdinSource,
    /// The relay's pipe or pty master is writable.
    StdinSink,
    Termination,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            output: 10,
            ..Limits::default()
        }
    }

    fn exit(code: Option<i32>, signal: Option<i32>) -> ChildExit {
        ChildExit {
            code,
            signal,
            cpu: Duration::ZERO,
            max_rss_bytes: 0,
        }
    }

    fn observed(exited: Option<(Option<i32>, Option<i32>)>) -> Observed {
        Observed {
            kill: None,
            messages: Messages {
                started: true,
                exited,
                ..Messages::default()
            },
            init_exit: exit(exited.and_then(|e| e.0), exited.and_then(|e| e.1)),
            oom_kills: 0,
            pids_hits: 0,
            cpu: Duration::ZERO,
        }
    }

    #[test]
    fn plain_exits() {
        let l = limits();
        assert_eq!(
            classify(&observed(Some((Some(0), None))), &l).status,
            Status::Ok
        );
        let v = classify(&observed(Some((Some(3), None))), &l);
        assert_eq!((v.status, v.exit_code), (Status::Exit, Some(3)));
        let v = classify(&observed(Some((None, Some(libc::SIGSEGV)))), &l);
        assert_eq!((v.status, v.signal), (Status::Signal, Some(libc::SIGSEGV)));
    }

    #[test]
    fn bunkers_kill_explains_the_end() {
        let l = Limits {
            timeout: Some(Duration::from_millis(100)),
            ..limits()
        };
        let mut o = observed(None);
        o.init_exit = exit(None, Some(libc::SIGKILL));
        o.kill = Some(KillReason::Timeout);
        let v = classify(&o, &l);
        assert_eq!(v.status, Status::Timeout);
        assert_eq!(v.error.as_deref(), Some("killed at the 100ms timeout"));
        o.kill = Some(KillReason::Terminated(libc::SIGTERM));
        let v = classify(&o, &l);
        assert_eq!((v.status, v.signal), (Status::Signal, Some(libc::SIGTERM)));
        o.kill = Some(KillReason::OutputLimit);
        assert_eq!(classify(&o, &l).status, Status::OutputLimit);
        // A contained fork bomb that ran into the timeout.
        o.kill = Some(KillReason::Timeout);
        o.pids_hits = 12;
        let v = classify(&o, &l);
        assert_eq!(v.status, Status::Timeout);
        assert!(v
            .error
            .unwrap()
            .ends_with("; the pids limit (?) refused 12 fork(s)"));
    }

    #[test]
    fn oom_kill_is_a_memory_limit_even_without_a_kill_by_bunker() {
        let l = Limits {
            memory: Some(50 << 20),
            ..limits()
        };
        let mut o = observed(Some((None, Some(libc::SIGKILL))));
        o.oom_kills = 1;
        let v = classify(&o, &l);
        assert_eq!(v.status, Status::MemoryLimit);
        assert_eq!(
            v.error.as_deref(),
            Some("killed by the memory limit (50 MiB)")
        );
        // v2 oom.group takes init too: no Exited message at all.
        let mut o = observed(None);
        o.init_exit = exit(None, Some(libc::SIGKILL));
        o.oom_kills = 3;
        assert_eq!(classify(&o, &l).status, Status::MemoryLimit);
    }

    #[test]
    fn a_thrash_kill_is_a_memory_limit_that_says_the_working_set_does_not_fit() {
        let l = Limits {
            memory: Some(50 << 20),
            ..limits()
        };
        let mut o = observed(Some((None, Some(libc::SIGKILL))));
        o.kill = Some(KillReason::MemoryThrash);
        let v = classify(&o, &l);
        assert_eq!(v.status, Status::MemoryLimit);
        let error = v.error.unwrap();
        assert!(
            error.starts_with("killed by the memory limit (50 MiB): its working set does not fit"),
            "{error}"
        );
    }

    #[test]
    fn pids_limit_explains_a_failure_not_a_success() {
        let l = Limits {
            pids: Some(64),
            ..limits()
        };
        let mut o = observed(Some((Some(1), None)));
        o.pids_hits = 5;
        let v = classify(&o, &l);
        assert_eq!((v.status, v.exit_code), (Status::PidsLimit, Some(1)));
        assert!(v.error.unwrap().contains("64"));
        let mut o = observed(Some((Some(0), None)));
        o.pids_hits = 5;
        assert_eq!(classify(&o, &l).status, Status::Ok);
    }

    #[test]
    fn rlimit_cpu_backstop_is_cpu_time() {
        let l = Limits {
            cpu_time: Some(Duration::from_secs(1)),
            ..limits()
        };
        let o = observed(Some((None, Some(libc::SIGXCPU))));
        assert_eq!(classify(&o, &l).status, Status::CpuTime);
        let mut o = observed(Some((None, Some(libc::SIGKILL))));
        o.cpu = Duration::from_millis(2500);
        assert_eq!(classify(&o, &l).status, Status::CpuTime);
    }

    #[test]
    fn setup_and_exec_failures() {
        let l = limits();
        let mut o = observed(None);
        o.messages.setup_failed = Some((
            ErrorCode::SetupFailed,
            "bind mount /x → /x".into(),
            "bind mount /x → /x: ENOENT".into(),
        ));
        let v = classify(&o, &l);
        assert_eq!(v.status, Status::SetupError);
        assert_eq!(v.error_code, Some(ErrorCode::SetupFailed));
        assert_eq!(v.error_step.as_deref(), Some("bind mount /x → /x"));
        let mut o = observed(Some((Some(127), None)));
        o.messages.exec_failed = Some("nope: command not found".into());
        let v = classify(&o, &l);
        assert_eq!((v.status, v.exit_code), (Status::Exit, Some(127)));
        assert_eq!(v.error.as_deref(), Some("nope: command not found"));
        assert_eq!(v.error_code, Some(ErrorCode::CommandNotFound));
        // Init died without a word.
        let mut o = observed(None);
        o.init_exit = exit(Some(1), None);
        assert_eq!(classify(&o, &l).status, Status::SetupError);
    }

    #[test]
    fn output_is_capped_across_both_streams_and_counted_past_the_cap() {
        let mut out = Output::new(&limits(), false, None);
        assert!(!out.accept(0, b"123456"));
        assert!(out.accept(1, b"abcdefgh"));
        for _ in 0..1000 {
            assert!(out.accept(0, &[b'x'; 1000]));
        }
        let (o, e) = out.finish();
        assert_eq!((o.bytes, o.kept, o.truncated), (1_000_006, 6, true));
        assert_eq!(o.data, Some(Data::Utf8("123456".into())));
        assert_eq!((e.bytes, e.kept, e.truncated), (8, 4, true));
        assert_eq!(e.data, Some(Data::Utf8("abcd".into())));
    }

    #[test]
    fn messages_keep_the_first_report() {
        let mut m = Messages::default();
        m.record(InitMessage::Started);
        m.record(InitMessage::Exited {
            code: Some(2),
            signal: None,
        });
        m.record(InitMessage::Exited {
            code: Some(5),
            signal: None,
        });
        assert!(m.started);
        assert_eq!(m.exited, Some((Some(2), None)));
        m.record(InitMessage::SetupFailed {
            step: "start the program".into(),
            errno: libc::EAGAIN,
            detail: "fork".into(),
            code: ErrorCode::SetupFailed,
        });
        assert_eq!(
            m.setup_failed,
            Some((
                ErrorCode::SetupFailed,
                "start the program".to_string(),
                "start the program: fork (EAGAIN)".to_string()
            ))
        );
    }

    // ---- The loop against real processes (no sandbox: a plain child stands in for init). ----

    use std::os::unix::net::UnixDatagram;
    use std::process::{Child, Command, Stdio};

    fn policy(edit: impl FnOnce(&mut Limits)) -> Policy {
        let mut p = bunker_policy::load_str("{}", std::path::Path::new("/"), "test").unwrap();
        edit(&mut p.limits);
        p
    }

    /// Starts `sh -c script` as a stand-in for init; the returned socket end plays init's side
    /// of the control socket. The script waits for a line on stdin before it starts, so the
    /// caller can move it into a cgroup first.
    #[allow(clippy::zombie_processes)] // supervise reaps it through the pidfd
    fn start(script: &str, cgroup: SandboxCgroup) -> (Supervised, UnixDatagram, Child) {
        let mut child = Command::new("sh")
            .args(["-c", &format!("read go; {script}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        cgroup.add_process(pid).unwrap();
        let (ours, theirs) = UnixDatagram::pair().unwrap();
        let sup = Supervised {
            init_pid: pid,
            pidfd: event::pidfd_open(pid).unwrap(),
            control: OwnedFd::from(ours),
            stdout: OwnedFd::from(child.stdout.take().unwrap()),
            stderr: OwnedFd::from(child.stderr.take().unwrap()),
            cgroup,
            started: Instant::now(),
            enforced: Enforced::default(),
            stream_output: false,
            console: None,
            observer: None,
            stdin: None,
        };
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        (sup, theirs, child)
    }

    fn say(sock: &UnixDatagram, msg: &InitMessage) {
        sock.send(&serde_json::to_vec(msg).unwrap()).unwrap();
    }

    #[test]
    fn captured_output_that_is_not_utf8_comes_back_exactly() {
        let p = policy(|_| {});
        let (sup, init, _child) = start(r"printf 'a\377\000b'; exit 0", SandboxCgroup::none());
        say(&init, &InitMessage::Started);
        say(
            &init,
            &InitMessage::Exited {
                code: Some(0),
                signal: None,
            },
        );
        drop(init);
        let r = supervise(sup, &p).unwrap();
        let data = r.stdout.data.unwrap();
        assert!(matches!(data, Data::Base64(_)), "{data:?}");
        assert_eq!(data.to_bytes().unwrap(), b"a\xff\x00b");
    }

    #[test]
    fn loop_reports_a_clean_exit_with_captured_output() {
        let p = policy(|_| {});
        let (sup, init, _child) = start("echo out; echo err >&2; exit 0", SandboxCgroup::none());
        say(&init, &InitMessage::Started);
        say(
            &init,
            &InitMessage::Exited {
                code: Some(0),
                signal: None,
            },
        );
        drop(init);
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(r.stdout.data, Some(Data::Utf8("out\n".into())));
        assert_eq!(r.stderr.data, Some(Data::Utf8("err\n".into())));
        assert!(!r.stdout.truncated);
    }

    #[test]
    fn loop_kills_at_the_timeout() {
        let p = policy(|l| l.timeout = Some(Duration::from_millis(150)));
        let (sup, init, _child) = start("exec sleep 100", SandboxCgroup::none());
        say(&init, &InitMessage::Started);
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::Timeout, "{r:?}");
        assert_eq!(r.signal, Some(libc::SIGKILL));
        assert!(r.wall_ms >= 150.0 && r.wall_ms < 5000.0, "{}", r.wall_ms);
    }

    #[test]
    fn loop_caps_output_and_counts_the_rest() {
        let p = policy(|l| l.output = 10_000);
        let (sup, init, _child) = start(
            "head -c 1000000 /dev/zero | tr '\\0' x",
            SandboxCgroup::none(),
        );
        say(
            &init,
            &InitMessage::Exited {
                code: Some(0),
                signal: None,
            },
        );
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!((r.stdout.bytes, r.stdout.kept), (1_000_000, 10_000));
        assert!(r.stdout.truncated);
        assert_eq!(
            r.stdout.data.and_then(|d| d.to_bytes()).map(|b| b.len()),
            Some(10_000)
        );
    }

    #[test]
    fn loop_kills_an_endless_writer_on_overflow() {
        let p = policy(|l| {
            l.output = 1000;
            l.kill_on_output_overflow = true;
            l.timeout = Some(Duration::from_secs(30));
        });
        let (sup, _init, _child) = start("exec yes", SandboxCgroup::none());
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::OutputLimit, "{r:?}");
        assert_eq!(r.stdout.kept, 1000);
        assert!(r.stdout.bytes > 1000);
    }

    #[test]
    fn loop_survives_an_endless_writer_until_the_timeout() {
        let p = policy(|l| {
            l.output = 1000;
            l.timeout = Some(Duration::from_millis(300));
        });
        let (sup, _init, _child) = start("exec yes", SandboxCgroup::none());
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::Timeout, "{r:?}");
        assert_eq!(r.stdout.kept, 1000);
        assert!(r.stdout.bytes > 100_000, "{}", r.stdout.bytes);
    }

    /// A cgroup for the tests that need the kernel's accounting; None when this host (or user)
    /// cannot make one.
    fn cgroup_for(p: &Policy) -> Option<SandboxCgroup> {
        let mut e = Enforced::default();
        SandboxCgroup::prepare(p, &mut e).ok()
    }

    #[test]
    fn loop_kills_at_the_cpu_time_limit() {
        let p = policy(|l| {
            l.cpu_time = Some(Duration::from_millis(300));
            l.timeout = Some(Duration::from_secs(20));
        });
        let Some(cg) = cgroup_for(&p) else {
            return crate::skip::skip("no cgroup");
        };
        let (sup, _init, _child) = start("while :; do :; done", cg);
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::CpuTime, "{r:?}");
        assert!(r.cpu_ms >= 300.0 && r.cpu_ms < 2000.0, "{}", r.cpu_ms);
    }

    #[test]
    fn loop_reports_an_oom_kill_with_the_peak() {
        let p = policy(|l| {
            l.memory = Some(40 << 20);
            l.timeout = Some(Duration::from_secs(20));
        });
        let Some(cg) = cgroup_for(&p) else {
            return crate::skip::skip("no cgroup");
        };
        let dirs = cg.paths();
        let (sup, _init, _child) = start("python3 -c \"x = b'a' * (300 << 20)\"; sleep 100", cg);
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::MemoryLimit, "{r:?}");
        let peak = r.peak_memory_bytes.unwrap();
        assert!(peak > 20 << 20 && peak <= 40 << 20, "{peak}");
        for d in dirs {
            assert!(!d.exists(), "{} left behind", d.display());
        }
    }
}
