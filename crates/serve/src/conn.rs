//! One connection: handshake, then each request served in a task of its own, replies and
//! events through the connection's outbox. When the connection ends (closed, or a protocol
//! error), every sandbox it made is killed and its queued requests leave the queue.

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bunker_api::eval::EvalSpec;
use bunker_api::protocol::{
    Done, Health, HealthStatus, Hello, HelloOk, Operation, Reply, ReplyOk, Request, Started,
    WorkerOpened, WorkerSpec, VERSION,
};
use bunker_api::{
    ApiError, ErrorCode, OutputMode, RunEvent, RunResult, RunSpec, Status, StdinSource,
};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::auth::{self, Peer};
use crate::outbox::{write_frames, Outbox};
use crate::sandbox::{EventSink, Launch, OutputPlan, Pause, StdinCmd, StdinPlan};
use crate::socket::{FrameReader, ReadEnd};
use crate::state::{Shared, Slot};

/// Requests of one connection in flight at once; the connection is not read further until one
/// ends.
const MAX_IN_FLIGHT: usize = 1024;

/// Connections open at once; one more is answered `busy` and closed.
const MAX_CONNECTIONS: usize = 4096;

/// Ended sandboxes a connection can still `wait` on.
const KEPT_ENDED: usize = 256;

/// How long a closing connection waits for its sandboxes to be gone and its last frames to be
/// written.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

type Outcome = Option<Result<RunResult, ApiError>>;

struct Entry {
    request: u64,
    stdin: Option<mpsc::Sender<StdinCmd>>,
    done: watch::Receiver<Outcome>,
    pause: Arc<Pause>,
}

#[derive(Default)]
struct ConnState {
    /// The cancel switch of each `run` / `start` in flight, by request id.
    requests: HashMap<u64, watch::Sender<bool>>,
    sandboxes: HashMap<String, Entry>,
    ended: VecDeque<String>,
}

struct Conn {
    shared: Arc<Shared>,
    peer: Peer,
    number: u64,
    out: Outbox,
    state: Mutex<ConnState>,
    /// The workers this connection opened (`open_worker`); they end with it.
    workers: crate::eval::Sessions,
}

fn lock(m: &Mutex<ConnState>) -> std::sync::MutexGuard<'_, ConnState> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn protocol_error(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::ProtocolError, message)
}

fn not_found(what: &str, name: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no {what} {name} on this connection"),
    )
}

/// Serves one accepted connection to its end.
pub async fn serve(stream: UnixStream, shared: Arc<Shared>, number: u64) {
    let peer = match stream.peer_cred() {
        Ok(cred) => Peer {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        },
        Err(e) => {
            tracing::warn!(conn = number, error = %e, "SO_PEERCRED failed; connection dropped");
            return;
        }
    };
    let opened = Instant::now();
    let open_before = shared.connections.fetch_add(1, Ordering::SeqCst);
    let (read, write) = stream.into_split();
    let (out, frames) = Outbox::new();
    let writer = tokio::spawn(write_frames(write, frames));
    let config = shared.config();
    let conn = Arc::new(Conn {
        shared: shared.clone(),
        peer,
        number,
        out,
        state: Mutex::new(ConnState::default()),
        workers: crate::eval::Sessions::default(),
    });
    let admitted = if open_before >= MAX_CONNECTIONS as u64 {
        Err(ApiError::new(
            ErrorCode::Busy,
            format!("the daemon has {MAX_CONNECTIONS} connections open already"),
        ))
    } else {
        auth::may_connect(&config, &peer, shared.daemon_uid)
    };
    let (end, mut tasks) = match admitted {
        Err(e) => {
            let code = e.code;
            tracing::warn!(conn = number, uid = peer.uid, gid = peer.gid, error = %e, "connection refused");
            conn.out.send(&Reply::error(None, e)).await;
            (code.as_str().to_string(), JoinSet::new())
        }
        Ok(()) => {
            let mut reader = FrameReader::new(config.max_frame, config.frame_timeout);
            conn.clone().read_requests(&read, &mut reader).await
        }
    };
    // The connection is over: nothing it started outlives it.
    conn.cancel_all();
    let drained = tokio::time::timeout(CLOSE_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.shutdown().await;
    }
    drop(conn);
    let _ = tokio::time::timeout(CLOSE_GRACE, writer).await;
    shared.connections.fetch_sub(1, Ordering::SeqCst);
    tracing::info!(
        conn = number,
        uid = peer.uid,
        gid = peer.gid,
        pid = peer.pid.unwrap_or(0),
        end = %end,
        ms = opened.elapsed().as_millis() as u64,
        "connection closed"
    );
}

impl Conn {
    /// The handshake, then requests until the connection ends; returns how it ended (for the
    /// log) and the request tasks still running.
    async fn read_requests(
        self: Arc<Self>,
        read: &tokio::net::unix::OwnedReadHalf,
        reader: &mut FrameReader,
    ) -> (String, JoinSet<()>) {
        tracing::info!(
            conn = self.number,
            uid = self.peer.uid,
            gid = self.peer.gid,
            pid = self.peer.pid.unwrap_or(0),
            "connection opened"
        );
        let hello = match reader.next(read).await {
            Ok(frame) => serde_json::from_str::<Hello>(&frame.payload).map_err(|e| {
                protocol_error(format!(
                    "the first frame must be {{\"op\":\"hello\",\"version\":{VERSION}}}: {e}"
                ))
            }),
            Err(end) => return (self.ended(end).await, JoinSet::new()),
        };
        match hello {
            Ok(Hello::Hello { version }) if version == VERSION => {
                let ok = ReplyOk::Hello(HelloOk {
                    version: VERSION,
                    server: self.shared.server.clone(),
                });
                self.out.send(&Reply::ok(None, ok)).await;
            }
            Ok(Hello::Hello { version }) => {
                self.out
                    .send(&Reply::error(
                        None,
                        protocol_error(format!(
                            "protocol version {version} is not supported (this server speaks {VERSION})"
                        )),
                    ))
                    .await;
                return ("protocol_error".into(), JoinSet::new());
            }
            Err(e) => {
                self.out.send(&Reply::error(None, e)).await;
                return ("protocol_error".into(), JoinSet::new());
            }
        }
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut tasks = JoinSet::new();
        let mut shutdown = self.shared.shutdown.subscribe();
        let end = loop {
            // Reading a frame is cancel-safe: bytes are only taken into the reader's buffer
            // once received, never lost between the awaits.
            let next = tokio::select! {
                next = reader.next(read) => next,
                _ = shutdown.wait_for(|s| *s) => break "daemon stopped".to_string(),
            };
            let frame = match next {
                Ok(frame) => frame,
                Err(end) => break self.ended(end).await,
            };
            let request: Request = match serde_json::from_str(&frame.payload) {
                Ok(request) => request,
                Err(e) => {
                    let e = protocol_error(format!("not a request: {e}"));
                    self.out.send(&Reply::error(None, e)).await;
                    break "protocol_error".to_string();
                }
            };
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break "internal_error".to_string();
            };
            let conn = self.clone();
            tasks.spawn(async move {
                conn.handle(request, frame.fds).await;
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        };
        (end, tasks)
    }

    async fn ended(&self, end: ReadEnd) -> String {
        match end {
            ReadEnd::Closed => "closed".into(),
            ReadEnd::Io(e) => format!("error: {e}"),
            ReadEnd::Protocol(message) => {
                tracing::warn!(conn = self.number, uid = self.peer.uid, %message, "protocol error");
                self.out
                    .send(&Reply::error(None, protocol_error(message)))
                    .await;
                "protocol_error".into()
            }
        }
    }

    /// Kills every sandbox of the connection and takes its queued requests out of the queue.
    fn cancel_all(&self) {
        let state = lock(&self.state);
        for cancel in state.requests.values() {
            let _ = cancel.send(true);
        }
    }

    /// Serves one request and sends its reply (a `start` sends its reply itself, before its
    /// events), with one log line.
    async fn handle(self: Arc<Self>, request: Request, fds: Vec<OwnedFd>) {
        let started = Instant::now();
        let id = request.id;
        let op = request.op.name();
        let result = match request.op {
            Operation::Run { spec } => self.run(id, spec, fds).await,
            Operation::Start { spec } => self.start(id, spec, fds).await,
            Operation::Eval { spec } if fds.is_empty() => self.eval(id, *spec).await.map(Some),
            Operation::OpenWorker { spec } if fds.is_empty() => {
                self.open_worker(id, *spec).await.map(Some)
            }
            Operation::CloseWorker { worker } if fds.is_empty() => self
                .workers
                .close(&worker)
                .await
                .map(|()| Some(ReplyOk::Done(Done {}))),
            other => {
                if !fds.is_empty() {
                    Err(ApiError::new(
                        ErrorCode::RequestInvalid,
                        format!("`{op}` takes no descriptors; {} were sent", fds.len()),
                    ))
                } else {
                    self.simple(other).await.map(Some)
                }
            }
        };
        // A run's outcome is how it ended: its error code, else its status.
        let outcome = match &result {
            Ok(Some(ReplyOk::Result(r))) => r.error_code.map_or_else(
                || {
                    serde_json::to_value(r.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                },
                |code| code.as_str().to_string(),
            ),
            Ok(Some(ReplyOk::Eval(r))) => r
                .error
                .as_ref()
                .map_or("ok", |e| e.kind.as_str())
                .to_string(),
            Ok(_) => "ok".to_string(),
            Err(e) => e.code.as_str().to_string(),
        };
        tracing::info!(
            conn = self.number,
            id,
            op,
            uid = self.peer.uid,
            outcome,
            ms = started.elapsed().as_millis() as u64,
            "request"
        );
        match result {
            Ok(Some(ok)) => self.out.send(&Reply::ok(Some(id), ok)).await,
            Ok(None) => {}
            Err(e) => self.out.send(&Reply::error(Some(id), e)).await,
        }
    }

    fn entry<T>(&self, sandbox: &str, f: impl FnOnce(&Entry) -> T) -> Result<T, ApiError> {
        lock(&self.state)
            .sandboxes
            .get(sandbox)
            .map(f)
            .ok_or_else(|| not_found("sandbox", sandbox))
    }

    async fn simple(&self, op: Operation) -> Result<ReplyOk, ApiError> {
        let name = op.name();
        let done = || ReplyOk::Done(Done {});
        match op {
            Operation::Run { .. }
            | Operation::Start { .. }
            | Operation::Eval { .. }
            | Operation::OpenWorker { .. }
            | Operation::CloseWorker { .. } => Err(ApiError::new(
                ErrorCode::InternalError,
                format!("{name} is not a simple operation"),
            )),
            Operation::Stdin { sandbox, data } => {
                let stdin = self.entry(&sandbox, |e| e.stdin.clone())?;
                let stdin = stdin.ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::RequestInvalid,
                        format!("sandbox {sandbox} was not started with stdin \"stream\" (or its stdin is closed)"),
                    )
                })?;
                let bytes = data.to_bytes().ok_or_else(|| {
                    ApiError::new(ErrorCode::RequestInvalid, "data: not valid base64")
                })?;
                let (tx, rx) = tokio::sync::oneshot::channel();
                let closed = || {
                    ApiError::new(
                        ErrorCode::RequestInvalid,
                        format!("the stdin of sandbox {sandbox} is closed"),
                    )
                };
                stdin
                    .send(StdinCmd::Write(bytes, tx))
                    .await
                    .map_err(|_| closed())?;
                rx.await.map_err(|_| closed())??;
                Ok(done())
            }
            Operation::CloseStdin { sandbox } => {
                let stdin = {
                    let mut state = lock(&self.state);
                    let entry = state
                        .sandboxes
                        .get_mut(&sandbox)
                        .ok_or_else(|| not_found("sandbox", &sandbox))?;
                    entry.stdin.take()
                };
                if let Some(stdin) = stdin {
                    let _ = stdin.send(StdinCmd::Close).await;
                }
                Ok(done())
            }
            Operation::Kill { sandbox } => {
                let (request, mut outcome) =
                    self.entry(&sandbox, |e| (e.request, e.done.clone()))?;
                if let Some(cancel) = lock(&self.state).requests.get(&request) {
                    let _ = cancel.send(true);
                }
                let _ = outcome.wait_for(Option::is_some).await;
                Ok(done())
            }
            Operation::Wait { sandbox } => {
                let mut outcome = self.entry(&sandbox, |e| e.done.clone())?;
                let ended = outcome
                    .wait_for(Option::is_some)
                    .await
                    .map_err(|_| ApiError::new(ErrorCode::InternalError, "the sandbox was lost"))?
                    .clone();
                match ended {
                    Some(Ok(result)) => Ok(ReplyOk::Result(Box::new(result))),
                    Some(Err(e)) => Err(e),
                    None => Err(ApiError::new(
                        ErrorCode::InternalError,
                        "the sandbox was lost",
                    )),
                }
            }
            Operation::Pause { sandbox } => {
                let pause = self.entry(&sandbox, |e| e.pause.clone())?;
                pause.pause().await?;
                Ok(done())
            }
            Operation::Resume { sandbox } => {
                let pause = self.entry(&sandbox, |e| e.pause.clone())?;
                pause.resume()?;
                Ok(done())
            }
            Operation::Cancel { request } => {
                let state = lock(&self.state);
                let cancel = state
                    .requests
                    .get(&request)
                    .ok_or_else(|| not_found("run or start in flight with id", request))?;
                let _ = cancel.send(true);
                Ok(done())
            }
            Operation::Stats => Ok(ReplyOk::Stats(self.shared.stats())),
            Operation::Health => Ok(ReplyOk::Health(Health {
                status: if self.shared.is_draining() {
                    HealthStatus::Draining
                } else {
                    HealthStatus::Serving
                },
                server: self.shared.server.clone(),
            })),
        }
    }

    /// Registers a `run` / `start` under its id (its cancel switch), refusing a duplicate.
    fn register(&self, id: u64) -> Result<Registration<'_>, ApiError> {
        let mut state = lock(&self.state);
        if state.requests.contains_key(&id) {
            return Err(ApiError::new(
                ErrorCode::RequestInvalid,
                format!("id {id} is already in flight on this connection"),
            ));
        }
        let (tx, rx) = watch::channel(false);
        state.requests.insert(id, tx);
        Ok(Registration {
            conn: self,
            id,
            cancel: rx,
        })
    }

    /// Checks a spec against the caller's rights and takes a slot: everything up to the launch.
    async fn prepare(
        &self,
        spec: RunSpec,
        fds: Vec<OwnedFd>,
        cancel: &mut watch::Receiver<bool>,
        sandbox: &str,
    ) -> Result<(Launch, Slot), ApiError> {
        let config = self.shared.config();
        let invalid = |m: String| ApiError::new(ErrorCode::RequestInvalid, m);
        if spec.argv.is_empty() {
            return Err(invalid("argv: empty (no program to run)".into()));
        }
        if spec.argv.iter().any(|a| a.contains('\0')) {
            return Err(invalid("argv: an argument contains a NUL byte".into()));
        }
        let mut policy = auth::resolve(&config, &spec.policy)?;
        auth::permit(&config, &self.peer, self.shared.daemon_uid, &policy)?;
        if let Some(name) = spec
            .env
            .keys()
            .find(|name| !policy.allow.env.iter().any(|allowed| allowed == *name))
        {
            return Err(ApiError::new(
                ErrorCode::PolicyNotPermitted,
                format!("env: {name} is not in the policy's allow.env"),
            ));
        }
        let wants_stdin_fd = spec.stdin == StdinSource::Fd;
        let wants_output_fds = spec.options.output == OutputMode::Fds;
        let expected = usize::from(wants_stdin_fd) + 2 * usize::from(wants_output_fds);
        if fds.len() != expected {
            return Err(invalid(format!(
                "the request names {expected} descriptors (stdin \"fd\": 1, output \"fds\": 2) but {} came with it",
                fds.len()
            )));
        }
        let mut fds = fds.into_iter();
        let mut next_fd = || {
            fds.next()
                .ok_or_else(|| invalid("missing descriptor".into()))
        };
        let stdin = match spec.stdin {
            StdinSource::Null => StdinPlan::Null,
            StdinSource::Data(data) => StdinPlan::Data(
                data.to_bytes()
                    .ok_or_else(|| invalid("stdin.data: not valid base64".into()))?,
            ),
            StdinSource::Stream => StdinPlan::Stream,
            StdinSource::Fd => StdinPlan::Fd(next_fd()?),
        };
        let output = match spec.options.output {
            OutputMode::Capture => OutputPlan::Capture,
            OutputMode::Events => OutputPlan::Events,
            OutputMode::Fds => OutputPlan::Fds(next_fd()?, next_fd()?),
        };
        // A request's timeout can only shorten the policy's.
        if let Some(requested) = spec.options.timeout_ms.map(Duration::from_millis) {
            if policy.limits.timeout.is_none_or(|t| requested < t) {
                policy.limits.timeout = Some(requested);
            }
        }
        // A ready pooled sandbox when one fits, else a slot for a cold one.
        let (slot, warm) = match self.shared.take_warm(&policy) {
            Some((slot, warm)) => (slot, Some(warm)),
            None => (self.shared.admit(cancel).await?, None),
        };
        let launch = Launch {
            warm,
            policy,
            argv: spec.argv,
            cwd: spec.cwd.unwrap_or_else(|| "/tmp".into()),
            env: spec.env.into_iter().collect(),
            stdin,
            output,
            freezer_name: format!(
                "bunker-{}-{}",
                std::process::id(),
                sandbox.trim_start_matches("s-")
            ),
        };
        Ok((launch, slot))
    }

    async fn run(
        self: &Arc<Self>,
        id: u64,
        spec: RunSpec,
        fds: Vec<OwnedFd>,
    ) -> Result<Option<ReplyOk>, ApiError> {
        let mut registration = self.register(id)?;
        let sandbox = self.shared.sandbox_id();
        let events = spec.options.output == OutputMode::Events;
        let (launch, slot) = self
            .prepare(spec, fds, &mut registration.cancel, &sandbox)
            .await?;
        let running = self.shared.launch(launch).await?;
        let sink = events.then(|| EventSink {
            out: self.out.clone(),
            id,
            sandbox: sandbox.clone(),
        });
        let result = running.drive(registration.cancel.clone(), None, sink).await;
        drop(slot);
        let result = refused_as_error(result)?;
        self.shared.count_result(&result);
        Ok(Some(ReplyOk::Result(Box::new(result))))
    }

    async fn start(
        self: &Arc<Self>,
        id: u64,
        spec: RunSpec,
        fds: Vec<OwnedFd>,
    ) -> Result<Option<ReplyOk>, ApiError> {
        let mut registration = self.register(id)?;
        let sandbox = self.shared.sandbox_id();
        let stream_stdin = spec.stdin == StdinSource::Stream;
        let events = spec.options.output != OutputMode::Fds;
        let (launch, slot) = self
            .prepare(spec, fds, &mut registration.cancel, &sandbox)
            .await?;
        let running = self.shared.launch(launch).await?;
        let (stdin_tx, stdin_rx) = if stream_stdin {
            let (tx, rx) = mpsc::channel(1);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let (done_tx, done_rx) = watch::channel(None);
        lock(&self.state).sandboxes.insert(
            sandbox.clone(),
            Entry {
                request: id,
                stdin: stdin_tx,
                done: done_rx,
                pause: running.pause.clone(),
            },
        );
        self.out
            .send(&Reply::ok(
                Some(id),
                ReplyOk::Started(Started {
                    sandbox: sandbox.clone(),
                }),
            ))
            .await;
        let sink = EventSink {
            out: self.out.clone(),
            id,
            sandbox: sandbox.clone(),
        };
        let result = running
            .drive(
                registration.cancel.clone(),
                stdin_rx,
                events.then(|| EventSink {
                    out: self.out.clone(),
                    id,
                    sandbox: sandbox.clone(),
                }),
            )
            .await;
        drop(slot);
        let result = refused_as_error(result);
        if let Ok(result) = &result {
            self.shared.count_result(result);
        }
        let last = match &result {
            Ok(result) => RunEvent::Exit {
                result: Box::new(result.clone()),
            },
            Err(e) => RunEvent::Error { error: e.clone() },
        };
        sink.out
            .send(&bunker_api::protocol::EventFrame {
                id: sink.id,
                sandbox: sink.sandbox.clone(),
                event: last,
            })
            .await;
        let _ = done_tx.send(Some(result));
        let mut state = lock(&self.state);
        state.ended.push_back(sandbox);
        while state.ended.len() > KEPT_ENDED {
            if let Some(old) = state.ended.pop_front() {
                state.sandboxes.remove(&old);
            }
        }
        Ok(None)
    }
}

impl Conn {
    /// `eval`: in the opened worker the spec names, else in a worker of its own (pre-started
    /// when one fits: eval.rs).
    async fn eval(self: &Arc<Self>, id: u64, spec: EvalSpec) -> Result<ReplyOk, ApiError> {
        let mut registration = self.register(id)?;
        let cancel = &mut registration.cancel;
        let result = match &spec.worker {
            Some(worker) => self.workers.eval(worker, &spec, cancel).await?,
            None => {
                let config = self.shared.config();
                let policy = crate::eval::effective_policy(
                    &config,
                    spec.engine,
                    spec.policy.as_ref(),
                    spec.http.as_ref(),
                    &spec.limits,
                )?;
                auth::permit(&config, &self.peer, self.shared.daemon_uid, &policy)?;
                // Only the profile itself, narrowed, fits a pool of pre-started workers.
                let pooled = spec.http.is_none() && spec.policy.is_none();
                let hired = self
                    .shared
                    .hire(spec.engine, &policy, pooled, cancel)
                    .await?;
                crate::eval::eval_once(&self.shared, hired, policy, &spec, cancel).await?
            }
        };
        Ok(ReplyOk::Eval(Box::new(result)))
    }

    /// `open_worker`: a worker of this connection's own (eval.rs, `Sessions`).
    async fn open_worker(self: &Arc<Self>, id: u64, spec: WorkerSpec) -> Result<ReplyOk, ApiError> {
        let mut registration = self.register(id)?;
        let config = self.shared.config();
        let permit = |policy: &bunker_policy::Policy| {
            auth::permit(&config, &self.peer, self.shared.daemon_uid, policy)
        };
        let worker = self
            .workers
            .open(
                &self.shared,
                &config,
                spec,
                permit,
                &mut registration.cancel,
            )
            .await?;
        Ok(ReplyOk::WorkerOpened(WorkerOpened { worker }))
    }
}

/// A run that could not start (its policy or a setup step refused it) is an error, not a
/// result.
fn refused_as_error(result: Result<RunResult, ApiError>) -> Result<RunResult, ApiError> {
    let result = result?;
    if matches!(result.status, Status::SetupError | Status::PolicyError) {
        let code = result.error_code.unwrap_or(ErrorCode::SetupFailed);
        let mut error = ApiError::new(code, result.error.clone().unwrap_or_default());
        error.step = result.error_step.clone();
        return Err(error);
    }
    Ok(result)
}

/// A `run` / `start` in flight: unregistered when it ends.
struct Registration<'a> {
    conn: &'a Conn,
    id: u64,
    cancel: watch::Receiver<bool>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock(&self.conn.state).requests.remove(&self.id);
    }
}
