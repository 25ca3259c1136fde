//! `bunker run --connect PATH` (or `BUNKER_SOCKET=PATH`): the run is carried out by a `bunker
//! serve` daemon instead of this process, with the same output, report and exit code as a local
//! run (docs/cli.md, "Running through a daemon").
//!
//! Everything that belongs to the caller is settled here, before anything is sent, exactly as
//! a local run would settle it: the policy is loaded and checked by `run.rs` as usual and sent
//! inline as its effective document (every path already absolute, `extends` merged, `~` and
//! relative paths resolved against this process's HOME and working directory); the variables of
//! `allow.env` are sent with this process's values; the working directory is the one a local
//! run would start in. The program's stdin is this process's fd 0 (or, when the sandbox could
//! write through it or change its file, a pipe this process fills from it), handed to the
//! daemon with SCM_RIGHTS. Its output comes back as events (output mode `events`) and is written to this
//! process's stdout and stderr as it arrives, each stream in order; the console is told where
//! the program's stderr stopped, so bunker's lines after it start on a fresh line as locally.
//! (Output mode `fds` would hand fd 1 and 2 over as well, but then nothing here knows whether
//! the program's stderr ended mid-line.) SIGTERM, SIGINT and SIGHUP cancel the run on the
//! daemon and end like a local run's termination.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::IsTerminal;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use bunker_api::protocol::ServerFrame;
use bunker_api::{
    ApiError, ErrorCode, OutputMode, PolicyChoice, RunOptions, RunSpec, StdinSource, WarmMode,
};
use bunker_client::{Client, StdioFds};
use bunker_policy::Policy;
use bunker_sandbox::events::RunEvent;
use bunker_sandbox::host::HostContext;
use bunker_sandbox::{RunRequest, RunResult, Status};

use crate::cli::RunOpts;

/// The environment variable naming the daemon's socket when `--connect` is not given.
pub const SOCKET_ENV: &str = "BUNKER_SOCKET";

/// The environment variable that asks for `--warm` (value `require`).
pub const WARM_ENV: &str = "BUNKER_WARM";

/// Whether the run must start in a prepared sandbox: `--warm`, or `BUNKER_WARM=require`. Any
/// other value of the variable is an error, so that a typo never means a silent cold run.
pub fn warm(opts: &RunOpts) -> Result<WarmMode, String> {
    if opts.warm {
        return Ok(WarmMode::Require);
    }
    match std::env::var(WARM_ENV).as_deref() {
        Err(_) | Ok("") => Ok(WarmMode::Auto),
        Ok("require") => Ok(WarmMode::Require),
        Ok(other) => Err(format!(
            "{WARM_ENV}={other:?}: the only value is \"require\" (or unset it)"
        )),
    }
}

/// The daemon to run through: `--connect PATH`, else a non-empty `BUNKER_SOCKET`; none with
/// `--local` (or when neither is set).
pub fn socket(opts: &RunOpts) -> Option<PathBuf> {
    if opts.local {
        return None;
    }
    opts.connect.clone().or_else(|| {
        std::env::var_os(SOCKET_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// Runs `request` through the daemon at `socket`. Whatever fails (the daemon cannot be reached,
/// refuses the request, or is lost) comes back as a refused run carrying the error's code, so
/// the caller reports it and exits with its code like any run that did not start.
/// With `warm` required, a run the daemon served cold is refused here (it ran, but the caller
/// asked for the warm path and must not mistake a cold run for it).
pub fn run(
    socket: &Path,
    request: &RunRequest,
    host: &HostContext,
    opts: &RunOpts,
    warm: WarmMode,
) -> RunResult {
    let mut terminated = None;
    let outcome = Remote::prepare(request, host, opts, warm)
        .and_then(|remote| remote.run(socket, request, &mut terminated))
        .and_then(|result| {
            if warm == WarmMode::Require && !result.warm {
                return Err(ApiError::new(
                    ErrorCode::InternalError,
                    "the daemon served the run cold although it was asked for a warm start \
                     (--warm / BUNKER_WARM=require)",
                ));
            }
            Ok(result)
        });
    let mut result = outcome.unwrap_or_else(RunResult::refused);
    if let Some(signal) = terminated {
        result.status = Status::Signal;
        result.exit_code = None;
        result.signal = Some(signal);
        result.error_code = Some(ErrorCode::Terminated);
        result.error_step = None;
        result.error = Some(format!(
            "bunker received {}: the sandbox was killed",
            signal_name(signal)
        ));
    }
    result
}

/// What is sent: the spec, and the descriptors it names.
struct Remote {
    spec: RunSpec,
    /// The program's stdin, handed to the daemon.
    stdin: Option<OwnedFd>,
    /// This process's terminal relayed into that stdin while the run lasts.
    relay: Option<TerminalRelay>,
}

fn not_sendable(message: String) -> ApiError {
    ApiError::new(ErrorCode::RequestInvalid, message)
}

impl Remote {
    fn prepare(
        request: &RunRequest,
        host: &HostContext,
        opts: &RunOpts,
        warm: WarmMode,
    ) -> Result<Remote, ApiError> {
        if !opts.resolve.is_empty() {
            return Err(not_sendable(
                "--resolve is not available through a daemon (--connect / BUNKER_SOCKET): the \
                 daemon's egress proxy resolves names itself; run with --local to pin them"
                    .into(),
            ));
        }
        let stdin_is_terminal = std::io::stdin().is_terminal();
        if request.policy.kernel.tty && stdin_is_terminal {
            return Err(not_sendable(
                "kernel.tty (a pseudo-terminal for the program) is not available through a \
                 daemon (--connect / BUNKER_SOCKET); run with --local for an interactive program"
                    .into(),
            ));
        }
        let policy = allowed_env_present(&request.policy, &host.env);
        let env = caller_env(&policy, &host.env)?;
        let document = policy_document(&policy)?;
        let argv = request
            .argv
            .iter()
            .map(|a| utf8(a, "an argument of the command"))
            .collect::<Result<Vec<_>, _>>()?;
        let cwd = match &request.cwd {
            Some(dir) => utf8(dir.as_os_str(), "--cwd")?,
            None => utf8(
                default_cwd(&policy, host.cwd.as_deref()).as_os_str(),
                "the current directory",
            )?,
        };
        let (stdin, relay) = program_stdin()?;
        Ok(Remote {
            spec: RunSpec {
                policy: PolicyChoice::Inline(document),
                argv,
                cwd: Some(cwd),
                env,
                stdin: if stdin.is_some() {
                    StdinSource::Fd
                } else {
                    StdinSource::Null
                },
                options: RunOptions {
                    output: OutputMode::Events,
                    timeout_ms: None,
                    warm,
                },
            },
            stdin,
            relay,
        })
    }

    /// Sends the run and waits for its result; a termination signal meanwhile cancels it
    /// (recorded in `terminated`), a second one gives up on the daemon's answer (closing the
    /// connection kills the sandbox too).
    fn run(
        self,
        socket: &Path,
        request: &RunRequest,
        terminated: &mut Option<i32>,
    ) -> Result<RunResult, ApiError> {
        let mut client = Client::connect(socket)?;
        let fds = StdioFds {
            stdin: self.stdin.as_ref().map(AsFd::as_fd),
            output: None,
        };
        let id = client.send_run(&self.spec, fds)?;
        // Ours is a duplicate: the daemon holds its own now.
        drop(self.stdin);
        // Stops reading the terminal once the run is over, however it ends.
        let _relay = self.relay;
        let mut output = Output::new();
        let interrupt: Option<BorrowedFd<'static>> = bunker_sys::event::termination_fd();
        loop {
            match client.recv_for(id, interrupt)? {
                None => {
                    let signal = interrupt.and_then(bunker_sys::event::take_termination_signal);
                    if let Some(signal) = signal {
                        if terminated.is_some() {
                            return Err(ApiError::new(ErrorCode::Cancelled, "cancelled"));
                        }
                        *terminated = Some(signal);
                        client.cancel(id)?;
                    }
                }
                Some(ServerFrame::Event(event)) => match &event.event {
                    RunEvent::Stdout { data } => output.write(Stream::Stdout, data, request),
                    RunEvent::Stderr { data } => output.write(Stream::Stderr, data, request),
                    // `started` (the best-effort warnings, before any output), limits hit.
                    other => {
                        if let Some(observer) = &request.observer {
                            observer.event(other);
                        }
                    }
                },
                Some(ServerFrame::Reply(reply)) => return client.expect_result(reply, "run"),
            }
        }
    }
}

/// The program's output streams, as indices of [`Output::files`].
#[derive(Clone, Copy)]
enum Stream {
    Stdout = 0,
    Stderr = 1,
}

/// Writes the program's output events to this process's stdout and stderr as they come.
struct Output {
    /// Duplicates of fd 1 and 2; `None` once a write failed (the reader closed it): the rest of
    /// that stream is dropped, as a local run's supervisor drops output nobody reads.
    files: [Option<std::fs::File>; 2],
    /// Each stream ends in an unfinished line.
    mid_line: [bool; 2],
    /// fd 1 and fd 2 are the same file (`2>&1`, a terminal): bunker's next line then also
    /// needs a fresh line after the program's unfinished stdout line, as a local run's
    /// supervisor sees it.
    shared: bool,
}

impl Output {
    fn new() -> Output {
        use std::os::unix::fs::MetadataExt;
        let file = |fd| dup_if_open(fd).map(std::fs::File::from);
        let files = [file(1), file(2)];
        let id = |f: &Option<std::fs::File>| {
            f.as_ref()
                .and_then(|f| f.metadata().ok())
                .map(|m| (m.dev(), m.ino()))
        };
        let shared = id(&files[0]).is_some() && id(&files[0]) == id(&files[1]);
        Output {
            files,
            mid_line: [false; 2],
            shared,
        }
    }

    fn write(&mut self, stream: Stream, data: &bunker_api::Data, request: &RunRequest) {
        let Some(bytes) = data.to_bytes().filter(|b| !b.is_empty()) else {
            return;
        };
        let slot = &mut self.files[stream as usize];
        if slot
            .as_ref()
            .is_some_and(|file| write_all(file, &bytes).is_err())
        {
            *slot = None;
        }
        self.mid_line[stream as usize] = !bytes.ends_with(b"\n");
        if let Some(console) = &request.console {
            console.program_wrote(self.mid_line[1] || (self.shared && self.mid_line[0]));
        }
    }
}

/// Writes `bytes` whole, also to a descriptor the caller made non-blocking: a full pipe is
/// waited out, not taken for an error.
fn write_all(mut file: &std::fs::File, mut bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    while !bytes.is_empty() {
        match file.write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                bunker_sys::event::poll_with(
                    &[(file.as_fd(), bunker_sys::event::Interest::Write)],
                    None,
                )
                .map_err(std::io::Error::other)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `bunker eval --connect` (or `BUNKER_SOCKET`): op `eval` through the daemon at `socket`, which
/// prints the same line as a cold eval. The spec is sent as `bunker eval` built it (a
/// `--policy FILE` is already inline in it, loaded relative to this process); the daemon puts the
/// engine's profile under its policy and applies its `http` and `limits` as the cold path does.
pub fn eval(
    socket: &Path,
    spec: &bunker_api::EvalSpec,
) -> Result<bunker_api::EvalResult, ApiError> {
    Client::connect(socket)?.eval(spec)
}

/// The effective policy as a policy document that loads back to the same policy: every path
/// absolute, `extends` merged, nothing left for the daemon to resolve. Also what
/// `bunker check --document` prints, for clients to send inline.
pub(crate) fn policy_document(policy: &Policy) -> Result<serde_json::Value, ApiError> {
    let mut document = serde_json::to_value(policy)
        .map_err(|e| not_sendable(format!("cannot encode the effective policy as JSON: {e}")))?;
    // Where the policy came from is no part of a policy document.
    if let Some(map) = document.as_object_mut() {
        map.remove("sources");
    }
    drop_nulls(&mut document);
    Ok(document)
}

/// Removes the keys whose value is null (unset options: the same as absent in a document).
fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// The program's stdin: this process's fd 0, handed to the daemon, which judges it for the
/// sandbox's host uid as a local run judges its own (the table in `bunker_sandbox::stdin`):
/// passed on as it is, or only its bytes through a pipe the daemon fills. A terminal is relayed
/// by this process, which is in the terminal's session (the daemon is not), as a local run's
/// supervisor relays it: its bytes go into a pipe whose read end is the program's stdin, read
/// only while bunker is in the foreground. A closed fd 0 or `/dev/null` is the program's own
/// `/dev/null`.
fn program_stdin() -> Result<(Option<OwnedFd>, Option<TerminalRelay>), ApiError> {
    use bunker_sys::tty::StdinKind;
    let Some(stdin) = dup_if_open(0) else {
        return Ok((None, None));
    };
    match bunker_sys::tty::stdin_kind(stdin.as_fd(), bunker_sys::process::euid()) {
        StdinKind::Nothing => Ok((None, None)),
        StdinKind::ReadOnlyData | StdinKind::Other => Ok((Some(stdin), None)),
        StdinKind::Terminal => {
            let euid = bunker_sys::process::euid();
            let prepared = bunker_sandbox::stdin::prepare(
                &bunker_sandbox::stdin::ProgramStdin::Inherit,
                false,
                euid,
            )
            .map_err(|e| e.to_api_error())?;
            let relay = match prepared.relay {
                Some(relay) => Some(TerminalRelay::start(relay)?),
                None => None,
            };
            Ok((Some(prepared.stdin), relay))
        }
    }
}

/// A thread relaying this process's terminal into the program's stdin pipe (the relay of a
/// local run, `bunker_sandbox::stdin::Relay`, driven by a poll loop of its own); stopped and
/// joined when dropped.
struct TerminalRelay {
    stop: Option<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TerminalRelay {
    fn start(relay: bunker_sandbox::stdin::Relay) -> Result<TerminalRelay, ApiError> {
        let (stop_read, stop_write) = bunker_sys::fd::pipe().map_err(|e| {
            ApiError::new(
                ErrorCode::SetupFailed,
                format!("the stdin relay's pipe: {e}"),
            )
        })?;
        let thread = std::thread::spawn(move || pump(relay, stop_read));
        Ok(TerminalRelay {
            stop: Some(stop_write),
            thread: Some(thread),
        })
    }
}

impl Drop for TerminalRelay {
    fn drop(&mut self) {
        // Closing the write end wakes the loop.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Moves the terminal's bytes into the pipe until either ends or `stop` is closed.
fn pump(mut relay: bunker_sandbox::stdin::Relay, stop: OwnedFd) {
    use bunker_sys::event::Interest;
    loop {
        let now = std::time::Instant::now();
        let (read, write) = {
            let read = relay.wants_read(now);
            let write = relay.wants_write();
            let wake = relay.wake_at();
            if read.is_none() && write.is_none() && wake.is_none() {
                return;
            }
            let mut fds = vec![(stop.as_fd(), Interest::Read)];
            fds.extend(read.map(|fd| (fd, Interest::Read)));
            fds.extend(write.map(|fd| (fd, Interest::Write)));
            let timeout = wake.map(|at| at.saturating_duration_since(now));
            let Ok(ready) = bunker_sys::event::poll_with(&fds, timeout) else {
                return;
            };
            if ready[0].any() {
                return;
            }
            let mut next = ready[1..].iter();
            let read = read.is_some() && next.next().is_some_and(|r| r.any());
            let write = write.is_some() && next.next().is_some_and(|r| r.any());
            (read, write)
        };
        // A paused relay's wake-up only makes the next round look at the terminal again.
        if read {
            relay.read_source();
        }
        if write {
            relay.write_sink();
        }
    }
}

/// The policy with `allow.env` narrowed to the names this process has: the daemon fills the
/// rest from its own environment otherwise, which a local run would not.
fn allowed_env_present(policy: &Policy, caller: &[(OsString, OsString)]) -> Policy {
    let mut policy = policy.clone();
    policy
        .allow
        .env
        .retain(|name| lookup(caller, name).is_some());
    policy
}

/// The value of `name` in the caller's environment.
fn lookup<'a>(caller: &'a [(OsString, OsString)], name: &str) -> Option<&'a OsStr> {
    caller
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_os_str())
}

/// This process's values of the policy's `allow.env` names (minus `deny.env`).
fn caller_env(
    policy: &Policy,
    caller: &[(OsString, OsString)],
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut env = BTreeMap::new();
    for name in &policy.allow.env {
        if policy.deny.env.contains(name) {
            continue;
        }
        if let Some(value) = lookup(caller, name) {
            let value = utf8(value, &format!("the value of {name}"))?;
            env.insert(name.clone(), value);
        }
    }
    Ok(env)
}

/// Where a local run starts without `--cwd`: this process's directory when the sandbox can see
/// it (a grant covers it, or one below it makes it exist inside), else /tmp.
fn default_cwd(policy: &Policy, caller_cwd: Option<&Path>) -> PathBuf {
    let tmp = PathBuf::from("/tmp");
    let Some(dir) = caller_cwd else {
        return tmp;
    };
    if bunker_sandbox::preflight::exists_inside(policy, dir) {
        dir.to_path_buf()
    } else {
        tmp
    }
}

fn utf8(value: &OsStr, what: &str) -> Result<String, ApiError> {
    value.to_str().map(str::to_owned).ok_or_else(|| {
        not_sendable(format!(
            "{what} ({}) is not UTF-8, which the daemon's protocol cannot carry; run with \
             --local",
            OsString::from(value).to_string_lossy()
        ))
    })
}

/// A duplicate of descriptor `n` when it is open.
fn dup_if_open(n: i32) -> Option<OwnedFd> {
    bunker_sys::fd::dup_cloexec(n).ok()
}

fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_sent_loads_back_to_the_same_policy() {
        let text = r#"{
            "extends": ["default"],
            "allow": {"net": ["*.example.com:443", "example.org", "10.0.0.0/8"],
                      "read": ["/etc/hosts", "./relative"], "write": ["/tmp"], "env": ["HOME"]},
            "deny": {"read": ["/etc/**/secret*"], "env": ["AWS_SECRET"]},
            "limits": {"memory": "64MB", "pids": 50, "cpu": 0.5, "timeout": "5s",
                       "cpu_time": "2s", "output": "10KB", "file_size": "1MB",
                       "open_files": 100, "stack": "8MB", "tmp_size": "16MB",
                       "best_effort": ["memory"], "kill_on_output_overflow": true},
            "http": {"max_requests": 10, "request_timeout": "3s", "max_request_bytes": "1MB",
                     "max_response_bytes": "2MB", "max_total_bytes": "5MB",
                     "block_private_ips": false},
            "kernel": {"hostname": "sent"},
            "set_env": {"GREETING": "hello"}
        }"#;
        let base = Path::new("/work/base");
        let policy = bunker_policy::load_str(text, base, "test").unwrap();
        assert!(policy.allow.read.contains(&base.join("relative")));
        let sent = policy_document(&policy).unwrap().to_string();
        // Loaded elsewhere (another base directory): the same policy, but for its sources.
        let mut loaded = bunker_policy::load_str(&sent, Path::new("/elsewhere"), "sent").unwrap();
        loaded.sources = policy.sources.clone();
        assert_eq!(loaded, policy);
    }
}
