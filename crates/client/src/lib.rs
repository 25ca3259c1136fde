//! A small blocking client of `bunker serve` (docs/protocol.md): one connection, one request
//! at a time, events of started sandboxes kept in order until they are asked for.
//!
//! ```no_run
//! use bunker_api::{PolicyChoice, RunSpec};
//! let mut client = bunker_client::Client::connect("/run/bunker.sock")?;
//! let spec = RunSpec {
//!     policy: PolicyChoice::Name("default".into()),
//!     argv: vec!["python3".into(), "-c".into(), "print(6*7)".into()],
//!     cwd: None,
//!     env: Default::default(),
//!     stdin: Default::default(),
//!     options: Default::default(),
//! };
//! let result = client.run(&spec)?;
//! assert_eq!(result.exit_code, Some(0));
//! # Ok::<(), bunker_api::ApiError>(())
//! ```
//!
//! Frames are encoded and parsed by `bunker_api::protocol` (the one frame codec); descriptors
//! travel with SCM_RIGHTS through `bunker_sys::fd::send_all_with_fds`. Every failure is an
//! [`ApiError`]: the service's own, or `unavailable` when the socket cannot be reached or the
//! connection is lost, `protocol_error` when the service answers something this client cannot
//! read.
#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use bunker_api::eval::{EvalResult, EvalSpec};
use bunker_api::protocol::{
    self, EventFrame, Health, Hello, Operation, Reply, ReplyOk, Request, ServerFrame, Stats,
    WorkerSpec,
};
use bunker_api::{
    ApiError, Data, ErrorCode, OutputMode, RunEvent, RunResult, RunSpec, StdinSource,
};

/// The largest frame this client accepts from the service. A `run` result in capture mode
/// carries up to `limits.output` bytes of output as JSON text or base64, which can be well over
/// the service's own bound on client frames ([`protocol::DEFAULT_MAX_FRAME`]).
pub const MAX_SERVER_FRAME: usize = 64 << 20;

/// Bytes read from the socket at once.
const READ_CHUNK: usize = 64 * 1024;

/// Descriptors handed to the service with a `run` or `start` (SCM_RIGHTS), as the spec asks:
/// `stdin` for `spec.stdin: fd`, `output` (stdout, stderr) for `spec.options.output: fds`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdioFds<'a> {
    /// The program's stdin.
    pub stdin: Option<BorrowedFd<'a>>,
    /// The program's stdout and stderr.
    pub output: Option<(BorrowedFd<'a>, BorrowedFd<'a>)>,
}

impl<'a> StdioFds<'a> {
    /// In the protocol's order: stdin, stdout, stderr. Refuses descriptors the spec does not
    /// name, and a spec naming descriptors that are not given.
    fn for_spec(&self, spec: &RunSpec) -> Result<Vec<RawFd>, ApiError> {
        let wants_stdin = spec.stdin == StdinSource::Fd;
        let wants_output = spec.options.output == OutputMode::Fds;
        if wants_stdin != self.stdin.is_some() {
            return Err(ApiError::new(
                ErrorCode::RequestInvalid,
                if wants_stdin {
                    "spec.stdin is \"fd\" but no stdin descriptor was given"
                } else {
                    "a stdin descriptor was given but spec.stdin is not \"fd\""
                },
            ));
        }
        if wants_output != self.output.is_some() {
            return Err(ApiError::new(
                ErrorCode::RequestInvalid,
                if wants_output {
                    "spec.options.output is \"fds\" but no stdout/stderr descriptors were given"
                } else {
                    "stdout/stderr descriptors were given but spec.options.output is not \"fds\""
                },
            ));
        }
        let mut fds = Vec::new();
        fds.extend(self.stdin.map(|fd| fd.as_raw_fd()));
        if let Some((out, err)) = self.output {
            fds.extend([out.as_raw_fd(), err.as_raw_fd()]);
        }
        Ok(fds)
    }
}

/// One connection to `bunker serve`, past the handshake.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    socket: PathBuf,
    server: String,
    /// Bytes read that do not make a whole frame yet.
    buf: Vec<u8>,
    next_id: u64,
    /// Events read while waiting for a reply, oldest first.
    events: VecDeque<EventFrame>,
    /// Replies read while waiting for another one.
    replies: HashMap<u64, Reply>,
}

impl Client {
    /// Connects to the service's socket and does the handshake.
    pub fn connect(socket: impl AsRef<Path>) -> Result<Client, ApiError> {
        let socket = socket.as_ref().to_path_buf();
        let stream = UnixStream::connect(&socket).map_err(|e| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "cannot connect to bunker serve at {}: {e}{}",
                    socket.display(),
                    match e.kind() {
                        std::io::ErrorKind::NotFound =>
                            " (no socket there: is the daemon running?)",
                        std::io::ErrorKind::ConnectionRefused =>
                            " (nobody listens on it: the daemon is gone)",
                        std::io::ErrorKind::PermissionDenied =>
                            " (the socket is not open to this user: see the daemon's socket_group)",
                        _ => "",
                    }
                ),
            )
        })?;
        let mut client = Client {
            stream,
            socket,
            server: String::new(),
            buf: Vec::new(),
            next_id: 1,
            events: VecDeque::new(),
            replies: HashMap::new(),
        };
        client.write_frame(
            &Hello::Hello {
                version: protocol::VERSION,
            },
            &[],
        )?;
        let reply = match client.recv(None)? {
            Some(ServerFrame::Reply(reply)) => reply,
            _ => return Err(client.protocol_error("an event before the handshake's reply")),
        };
        match into_result(reply)? {
            ReplyOk::Hello(hello) if hello.version == protocol::VERSION => {
                client.server = hello.server;
                Ok(client)
            }
            other => Err(client.protocol_error(&format!(
                "the handshake was answered with {other:?}, not protocol version {}",
                protocol::VERSION
            ))),
        }
    }

    /// The server's name and version, from the handshake (`bunker 0.1.0`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The connection's socket, to poll beside other descriptors.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// Runs `spec` and returns its result once it ends (output mode `capture` or `events`; the
    /// events of an `events` run are dropped: see [`Client::run_with`]).
    pub fn run(&mut self, spec: &RunSpec) -> Result<RunResult, ApiError> {
        self.run_with(spec, StdioFds::default(), |_| {})
    }

    /// Runs `spec` with the descriptors it names, calling `on_event` for each of its events as
    /// they arrive, and returns its result once it ends.
    pub fn run_with(
        &mut self,
        spec: &RunSpec,
        fds: StdioFds<'_>,
        mut on_event: impl FnMut(&RunEvent),
    ) -> Result<RunResult, ApiError> {
        let id = self.send_run(spec, fds)?;
        loop {
            match self.recv_for(id, None)? {
                Some(ServerFrame::Event(event)) => on_event(&event.event),
                Some(ServerFrame::Reply(reply)) => return self.expect_result(reply, "run"),
                None => {}
            }
        }
    }

    /// Sends a `run` request and returns its id without waiting: the caller reads its events
    /// and reply with [`Client::recv`] (to watch another descriptor meanwhile) and may
    /// [`Client::cancel`] it.
    pub fn send_run(&mut self, spec: &RunSpec, fds: StdioFds<'_>) -> Result<u64, ApiError> {
        let fds = fds.for_spec(spec)?;
        self.send(Operation::Run { spec: spec.clone() }, &fds)
    }

    /// Starts `spec` and returns the new sandbox's id; its events then come from
    /// [`Client::next_event`].
    pub fn start(&mut self, spec: &RunSpec, fds: StdioFds<'_>) -> Result<String, ApiError> {
        let raw = fds.for_spec(spec)?;
        let id = self.send(Operation::Start { spec: spec.clone() }, &raw)?;
        match self.reply(id)? {
            ReplyOk::Started(started) => Ok(started.sandbox),
            other => Err(self.unexpected("start", &other)),
        }
    }

    /// The next event of any sandbox this connection started, in the order they came.
    pub fn next_event(&mut self) -> Result<EventFrame, ApiError> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(event);
            }
            match self.recv(None)? {
                Some(ServerFrame::Event(event)) => return Ok(event),
                Some(ServerFrame::Reply(reply)) => self.keep_reply(reply)?,
                None => {}
            }
        }
    }

    /// The events of the sandboxes this connection started, as an iterator that ends after the
    /// connection is lost (yielding that error last).
    pub fn events(&mut self) -> Events<'_> {
        Events {
            client: self,
            done: false,
        }
    }

    /// Writes bytes to the stdin of a sandbox started with stdin `stream`.
    pub fn stdin(&mut self, sandbox: &str, data: &[u8]) -> Result<(), ApiError> {
        self.done(Operation::Stdin {
            sandbox: sandbox.into(),
            data: Data::from_bytes(data.to_vec()),
        })
    }

    /// Closes a streamed stdin: the program reads end of file.
    pub fn close_stdin(&mut self, sandbox: &str) -> Result<(), ApiError> {
        self.done(Operation::CloseStdin {
            sandbox: sandbox.into(),
        })
    }

    /// Waits for a started sandbox to end and returns its result.
    pub fn wait(&mut self, sandbox: &str) -> Result<RunResult, ApiError> {
        let id = self.send(
            Operation::Wait {
                sandbox: sandbox.into(),
            },
            &[],
        )?;
        let reply = self.reply_frame(id)?;
        self.expect_result(reply, "wait")
    }

    /// Kills a started sandbox (its result carries `cancelled`); returns once it is gone.
    pub fn kill(&mut self, sandbox: &str) -> Result<(), ApiError> {
        self.done(Operation::Kill {
            sandbox: sandbox.into(),
        })
    }

    /// Freezes every process of a started sandbox.
    pub fn pause(&mut self, sandbox: &str) -> Result<(), ApiError> {
        self.done(Operation::Pause {
            sandbox: sandbox.into(),
        })
    }

    /// Thaws a paused sandbox.
    pub fn resume(&mut self, sandbox: &str) -> Result<(), ApiError> {
        self.done(Operation::Resume {
            sandbox: sandbox.into(),
        })
    }

    /// Cancels an earlier `run` or `start` of this connection by its request id, without
    /// waiting for the answer (the cancelled request's own reply says how it ended).
    pub fn cancel(&mut self, request: u64) -> Result<u64, ApiError> {
        self.send(Operation::Cancel { request }, &[])
    }

    /// Evaluates `spec` (op `eval`) and returns what came of it. A problem of the request
    /// itself (a bad spec, a policy beyond the caller's ceiling, `busy`) is an error; one of the
    /// code (it threw, timed out, broke the ring protocol) is the result's `error`.
    pub fn eval(&mut self, spec: &EvalSpec) -> Result<EvalResult, ApiError> {
        let id = self.send(
            Operation::Eval {
                spec: Box::new(spec.clone()),
            },
            &[],
        )?;
        match self.reply(id)? {
            ReplyOk::Eval(result) => Ok(*result),
            other => Err(self.unexpected("eval", &other)),
        }
    }

    /// Opens a worker of this connection's own (the opt-in multi-request mode): evals whose
    /// `spec.worker` names the returned id run in it one at a time, its globals kept; it ends
    /// with [`Client::close_worker`], a timeout or memory kill, or this connection.
    pub fn open_worker(&mut self, spec: &WorkerSpec) -> Result<String, ApiError> {
        let id = self.send(
            Operation::OpenWorker {
                spec: Box::new(spec.clone()),
            },
            &[],
        )?;
        match self.reply(id)? {
            ReplyOk::WorkerOpened(opened) => Ok(opened.worker),
            other => Err(self.unexpected("open_worker", &other)),
        }
    }

    /// Ends an opened worker.
    pub fn close_worker(&mut self, worker: &str) -> Result<(), ApiError> {
        self.done(Operation::CloseWorker {
            worker: worker.into(),
        })
    }

    /// The service's counters.
    pub fn stats(&mut self) -> Result<Stats, ApiError> {
        let id = self.send(Operation::Stats, &[])?;
        match self.reply(id)? {
            ReplyOk::Stats(stats) => Ok(stats),
            other => Err(self.unexpected("stats", &other)),
        }
    }

    /// Whether the service is serving or draining.
    pub fn health(&mut self) -> Result<Health, ApiError> {
        let id = self.send(Operation::Health, &[])?;
        match self.reply(id)? {
            ReplyOk::Health(health) => Ok(health),
            other => Err(self.unexpected("health", &other)),
        }
    }

    /// Sends one request with `fds` attached and returns its id.
    pub fn send(&mut self, op: Operation, fds: &[RawFd]) -> Result<u64, ApiError> {
        let id = self.next_id;
        self.next_id += 1;
        self.write_frame(&Request { id, op }, fds)?;
        Ok(id)
    }

    /// The next frame from the service, waiting for it; with `interrupt`, `None` as soon as
    /// that descriptor is readable and no whole frame is in (the caller drains it). Frames
    /// already read come first.
    pub fn recv(
        &mut self,
        interrupt: Option<BorrowedFd<'_>>,
    ) -> Result<Option<ServerFrame>, ApiError> {
        loop {
            if let Some(frame) = self.parse_buffered()? {
                return Ok(Some(frame));
            }
            if let Some(interrupt) = interrupt {
                let ready = bunker_sys::event::poll(&[self.stream.as_fd(), interrupt], None)
                    .map_err(|e| self.lost(&e.to_string()))?;
                if ready[1].readable {
                    return Ok(None);
                }
                if !ready[0].any() {
                    continue;
                }
            }
            let mut chunk = vec![0u8; READ_CHUNK];
            let n = match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(self.lost(if self.buf.is_empty() {
                        "the daemon closed the connection"
                    } else {
                        "the daemon closed the connection in the middle of a frame"
                    }))
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.lost(&e.to_string())),
            };
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// [`Client::recv`] for request `id`: its events and its reply. Events of other requests
    /// and other replies are kept for later; `None` when `interrupt` became readable.
    pub fn recv_for(
        &mut self,
        id: u64,
        interrupt: Option<BorrowedFd<'_>>,
    ) -> Result<Option<ServerFrame>, ApiError> {
        if let Some(reply) = self.replies.remove(&id) {
            return Ok(Some(ServerFrame::Reply(reply)));
        }
        loop {
            match self.recv(interrupt)? {
                None => return Ok(None),
                Some(ServerFrame::Event(event)) if event.id == id => {
                    return Ok(Some(ServerFrame::Event(event)))
                }
                Some(ServerFrame::Event(event)) => self.events.push_back(event),
                Some(ServerFrame::Reply(reply)) if reply.id == Some(id) => {
                    return Ok(Some(ServerFrame::Reply(reply)))
                }
                Some(ServerFrame::Reply(reply)) => self.keep_reply(reply)?,
            }
        }
    }

    /// The reply to request `id`, as its `RunResult` (`run`, `wait`).
    pub fn expect_result(&self, reply: Reply, op: &str) -> Result<RunResult, ApiError> {
        match into_result(reply)? {
            ReplyOk::Result(result) => Ok(*result),
            other => Err(self.unexpected(op, &other)),
        }
    }

    fn done(&mut self, op: Operation) -> Result<(), ApiError> {
        let name = op.name();
        let id = self.send(op, &[])?;
        match self.reply(id)? {
            ReplyOk::Done(_) => Ok(()),
            other => Err(self.unexpected(name, &other)),
        }
    }

    fn reply(&mut self, id: u64) -> Result<ReplyOk, ApiError> {
        let reply = self.reply_frame(id)?;
        into_result(reply)
    }

    fn reply_frame(&mut self, id: u64) -> Result<Reply, ApiError> {
        loop {
            match self.recv_for(id, None)? {
                Some(ServerFrame::Reply(reply)) => return Ok(reply),
                // Events of a `run` in flight when another request was sent.
                Some(ServerFrame::Event(event)) => self.events.push_back(event),
                None => {}
            }
        }
    }

    /// Keeps a reply for whoever waits for it; a reply with no id is the service refusing the
    /// connection (a `protocol_error` before it closes it).
    fn keep_reply(&mut self, reply: Reply) -> Result<(), ApiError> {
        match reply.id {
            Some(id) => {
                self.replies.insert(id, reply);
                Ok(())
            }
            None => Err(reply
                .error
                .unwrap_or_else(|| self.protocol_error("a reply with no id after the handshake"))),
        }
    }

    fn write_frame(
        &mut self,
        value: &impl serde::Serialize,
        fds: &[RawFd],
    ) -> Result<(), ApiError> {
        let payload = serde_json::to_vec(value).map_err(|e| {
            ApiError::new(
                ErrorCode::RequestInvalid,
                format!("cannot encode the request: {e}"),
            )
        })?;
        let frame = protocol::encode_frame(&payload).ok_or_else(|| {
            ApiError::new(
                ErrorCode::RequestInvalid,
                format!(
                    "a request of {} bytes is longer than a frame",
                    payload.len()
                ),
            )
        })?;
        bunker_sys::fd::send_all_with_fds(self.stream.as_raw_fd(), &frame, fds)
            .map_err(|e| self.lost(&e.to_string()))
    }

    fn parse_buffered(&mut self) -> Result<Option<ServerFrame>, ApiError> {
        let parsed = protocol::parse_frame(&self.buf, MAX_SERVER_FRAME)
            .map_err(|e| self.protocol_error(&e.to_string()))?;
        let Some(frame) = parsed else {
            return Ok(None);
        };
        let value: ServerFrame = serde_json::from_str(frame.payload).map_err(|e| {
            self.protocol_error(&format!("a frame that is not a reply or event: {e}"))
        })?;
        let consumed = frame.consumed;
        self.buf.drain(..consumed);
        Ok(Some(value))
    }

    fn lost(&self, why: &str) -> ApiError {
        ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "lost the connection to bunker serve at {}: {why}",
                self.socket.display()
            ),
        )
    }

    fn protocol_error(&self, what: &str) -> ApiError {
        ApiError::new(
            ErrorCode::ProtocolError,
            format!("bunker serve at {} sent {what}", self.socket.display()),
        )
    }

    fn unexpected(&self, op: &str, got: &ReplyOk) -> ApiError {
        self.protocol_error(&format!("an unexpected answer to {op}: {got:?}"))
    }
}

/// The events of a connection's sandboxes ([`Client::events`]).
#[derive(Debug)]
pub struct Events<'a> {
    client: &'a mut Client,
    done: bool,
}

impl Iterator for Events<'_> {
    type Item = Result<EventFrame, ApiError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.client.next_event();
        self.done = next.is_err();
        Some(next)
    }
}

/// A reply's `ok`, or its `error`.
fn into_result(reply: Reply) -> Result<ReplyOk, ApiError> {
    match (reply.ok, reply.error) {
        (_, Some(error)) => Err(error),
        (Some(ok), None) => Ok(ok),
        (None, None) => Err(ApiError::new(
            ErrorCode::ProtocolError,
            "bunker serve sent a reply with neither ok nor error",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_is_unavailable_and_says_where() {
        let err = Client::connect("/nonexistent/bunker.sock").unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert!(err.message.contains("/nonexistent/bunker.sock"), "{err}");
        assert!(err.message.contains("is the daemon running"), "{err}");
    }

    #[test]
    fn descriptors_must_match_the_spec() {
        let spec: RunSpec =
            serde_json::from_str(r#"{"policy":{"name":"default"},"argv":["true"],"stdin":"fd"}"#)
                .unwrap();
        let err = StdioFds::default().for_spec(&spec).err();
        assert_eq!(err.map(|e| e.code), Some(ErrorCode::RequestInvalid));
    }
}
