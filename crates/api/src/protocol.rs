//! The wire protocol of `bunker serve` (docs/protocol.md): frames on a Unix stream socket, a
//! version handshake, then requests answered by replies and event frames.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON
//! ([`encode_frame`], [`parse_frame`]). The first frame each way is the handshake: the client's
//! [`Hello`], the server's [`Reply`] with no id whose `ok` is a [`HelloOk`]. After it the client
//! sends [`Request`]s; the server answers each with one [`Reply`] echoing its id, and streams
//! [`EventFrame`]s for the sandboxes it started.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::data::Data;
use crate::error::ApiError;
use crate::eval::{Engine, EvalLimits, EvalResult, EvalSpec, HttpOptions};
use crate::event::RunEvent;
use crate::request::{PolicyChoice, RunSpec};
use crate::result::RunResult;

/// The protocol version this crate speaks.
pub const VERSION: u32 = 1;

/// The size of a frame's length prefix, in bytes.
pub const LENGTH_PREFIX: usize = 4;

/// The default bound on a frame's payload (1 MiB); the service's `max_frame` changes it.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// The most descriptors one frame carries (stdin, stdout, stderr).
pub const MAX_FDS: usize = 3;

/// The client's first frame: `{"op":"hello","version":1}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Hello {
    /// The protocol version the client speaks.
    Hello {
        /// Must be a version the server supports ([`VERSION`]); otherwise the server answers
        /// with a `protocol_error` and closes the connection.
        version: u32,
    },
}

/// The server's answer to the handshake, inside the reply's `ok`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HelloOk {
    /// The protocol version the connection speaks from now on.
    pub version: u32,
    /// The server's name and version (`bunker 0.1.0`), for people and logs.
    pub server: String,
}

/// A request: `{"id": N, "op": "...", ...operands}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Request {
    /// Chosen by the client and echoed in the reply and in the events of the sandbox the request
    /// starts. Unique among the connection's requests still in flight.
    pub id: u64,
    /// What to do.
    #[serde(flatten)]
    pub op: Operation,
}

/// What a request asks for, tagged by `op`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// Run a program and reply with its `RunResult` when it ends. With output mode `events`,
    /// event frames carrying this request's id come before the reply.
    Run {
        /// What to run.
        spec: RunSpec,
    },
    /// Start a program and reply at once with `{"sandbox": "<id>"}`; its events then stream on
    /// this connection, ending with `exit` (or `error`).
    Start {
        /// What to run.
        spec: RunSpec,
    },
    /// Write bytes to the stdin of a sandbox started with stdin `stream`. The reply comes once
    /// they are written into the program's stdin pipe.
    Stdin {
        /// The sandbox, as `start` named it.
        sandbox: String,
        /// The bytes to write.
        data: Data,
    },
    /// Close a streamed stdin: the program reads end of file.
    CloseStdin {
        /// The sandbox, as `start` named it.
        sandbox: String,
    },
    /// Kill a started sandbox; its result carries error code `cancelled`.
    Kill {
        /// The sandbox, as `start` named it.
        sandbox: String,
    },
    /// Reply with the `RunResult` of a started sandbox once it ends.
    Wait {
        /// The sandbox, as `start` named it.
        sandbox: String,
    },
    /// Freeze every process of a started sandbox (cgroup freezer).
    Pause {
        /// The sandbox, as `start` named it.
        sandbox: String,
    },
    /// Thaw a paused sandbox.
    Resume {
        /// The sandbox, as `start` named it.
        sandbox: String,
    },
    /// Cancel an earlier `run` or `start` of this connection, whether still queued or running.
    /// A queued one is answered with a `cancelled` error; a running one is killed and its result
    /// carries error code `cancelled`.
    Cancel {
        /// The id of the request to cancel.
        request: u64,
    },
    /// Evaluate code in a worker (Bun or Python) and reply with its `EvalResult`: in a
    /// pre-started worker of an `eval:ENGINE` pool when the spec fits it, else in one started
    /// now; in the opened worker `spec.worker` names when it does.
    Eval {
        /// What to evaluate.
        spec: Box<EvalSpec>,
    },
    /// Open a worker of this connection's own that serves evals one at a time, its globals
    /// kept between them (the opt-in multi-request mode, off by default); reply
    /// `{"worker": "<id>"}`.
    OpenWorker {
        /// Its engine, limits, network and policy, for every eval it serves.
        spec: Box<WorkerSpec>,
    },
    /// End an opened worker.
    CloseWorker {
        /// The worker, as `open_worker` named it.
        worker: String,
    },
    /// The service's counters.
    Stats,
    /// Whether the service is serving.
    Health,
}

/// What an opened worker is (`open_worker`): an `EvalSpec` without the code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerSpec {
    /// Its runtime.
    pub engine: Engine,
    /// The limits of each eval it serves; a timeout or memory kill ends the worker.
    #[serde(default)]
    pub limits: EvalLimits,
    /// Network access through the egress proxy; absent: no network at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpOptions>,
    /// A policy extending the engine's profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyChoice>,
}

impl Operation {
    /// The `op` name, as on the wire (`close_stdin`), for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Run { .. } => "run",
            Operation::Start { .. } => "start",
            Operation::Stdin { .. } => "stdin",
            Operation::CloseStdin { .. } => "close_stdin",
            Operation::Kill { .. } => "kill",
            Operation::Wait { .. } => "wait",
            Operation::Pause { .. } => "pause",
            Operation::Resume { .. } => "resume",
            Operation::Cancel { .. } => "cancel",
            Operation::Eval { .. } => "eval",
            Operation::OpenWorker { .. } => "open_worker",
            Operation::CloseWorker { .. } => "close_worker",
            Operation::Stats => "stats",
            Operation::Health => "health",
        }
    }
}

/// The answer to a request (or, with no `id`, to the handshake): exactly one of `ok` and
/// `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// The request's id; absent in the handshake's reply and in an error about a frame that
    /// could not be read as a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// What the request produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<ReplyOk>,
    /// Why the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

impl Reply {
    /// A successful reply.
    pub fn ok(id: Option<u64>, ok: ReplyOk) -> Reply {
        Reply {
            id,
            ok: Some(ok),
            error: None,
        }
    }

    /// A failed reply.
    pub fn error(id: Option<u64>, error: ApiError) -> Reply {
        Reply {
            id,
            ok: None,
            error: Some(error),
        }
    }
}

/// What a successful reply carries; which one follows from the request's `op`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ReplyOk {
    /// The handshake's answer.
    Hello(HelloOk),
    /// `start`: the new sandbox's id.
    Started(Started),
    /// `open_worker`: the new worker's id.
    WorkerOpened(WorkerOpened),
    /// `stats`.
    Stats(Stats),
    /// `health`.
    Health(Health),
    /// `eval`: what came of the code (before `Result`: a `RunResult` has no
    /// `console_output`, so it never reads as one).
    Eval(Box<EvalResult>),
    /// `run` and `wait`: how the run ended.
    Result(Box<RunResult>),
    /// `stdin`, `close_stdin`, `kill`, `pause`, `resume`, `cancel`, `close_worker`: done
    /// (`{}`).
    Done(Done),
}

/// `start`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Started {
    /// The sandbox's id, for `stdin`, `kill`, `wait`, `pause`, `resume`, and in its events.
    pub sandbox: String,
}

/// `open_worker`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerOpened {
    /// The worker's id, for `eval`'s `spec.worker` and `close_worker`.
    pub worker: String,
}

/// An empty answer: the operation was carried out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Done {}

/// The service's counters (`stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    /// Sandboxes running now.
    pub live: u64,
    /// Requests waiting for a free slot.
    pub queued: u64,
    /// Connections open now.
    pub connections: u64,
    /// The most sandboxes that run at once (`max_sandboxes`).
    pub max_sandboxes: u64,
    /// The most requests that wait (`max_queue`).
    pub max_queue: u64,
    /// Finished runs since the service started, by `status` (`ok`, `exit`, `timeout`, ...).
    pub totals: BTreeMap<String, u64>,
    /// Requests refused with `busy` since the service started.
    pub refused_busy: u64,
    /// Milliseconds since the service started.
    pub uptime_ms: u64,
    /// The warm pools, by policy name (absent without any).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pools: BTreeMap<String, PoolStats>,
}

/// One warm pool (`stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolStats {
    /// How many ready sandboxes the pool keeps.
    pub size: u64,
    /// Ready sandboxes now, waiting for a request.
    pub ready: u64,
    /// Runs served from the pool since the service started (or the config was reloaded).
    pub taken: u64,
    /// The memory the ready sandboxes' cgroups use now, summed (absent where no cgroup
    /// accounts for it, e.g. rootless without delegation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_memory_bytes: Option<u64>,
}

/// The service's state (`health`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// `serving`, or `draining` once SIGTERM arrived (new `run`/`start` are refused).
    pub status: HealthStatus,
    /// The server's name and version.
    pub server: String,
}

/// Whether the service takes new sandboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Taking requests.
    Serving,
    /// Stopping: finishing the sandboxes it has, taking no new ones.
    Draining,
}

/// An event of a sandbox, sent to the connection that started it:
/// `{"id": N, "sandbox": "<id>", "event": {"event": "stdout", ...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventFrame {
    /// The id of the `run` or `start` request that made the sandbox.
    pub id: u64,
    /// The sandbox.
    pub sandbox: String,
    /// What happened.
    pub event: RunEvent,
}

/// Any frame the server sends: an event (it has an `event` key) or a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ServerFrame {
    /// An event of a sandbox.
    Event(EventFrame),
    /// The answer to a request or to the handshake.
    Reply(Reply),
}

/// Any frame a client sends: the handshake or a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ClientFrame {
    /// The first frame.
    Hello(Hello),
    /// Every later frame.
    Request(Request),
}

/// Every frame of the protocol, either way (the root of docs/protocol.schema.json).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ProtocolFrame {
    /// Client to server.
    Client(ClientFrame),
    /// Server to client.
    Server(ServerFrame),
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announces more than the bound.
    TooLarge {
        /// The announced payload length.
        length: u64,
        /// The bound.
        max: usize,
    },
    /// A frame of length zero (no JSON document is empty).
    Empty,
    /// The payload is not UTF-8; `valid_up_to` bytes of it are.
    NotUtf8 {
        /// How many leading bytes of the payload are valid UTF-8.
        valid_up_to: usize,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { length, max } => {
                write!(
                    f,
                    "frame of {length} bytes exceeds the limit of {max} bytes"
                )
            }
            FrameError::Empty => f.write_str("frame of length 0"),
            FrameError::NotUtf8 { valid_up_to } => {
                write!(
                    f,
                    "frame is not UTF-8 (invalid byte at offset {valid_up_to})"
                )
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// One complete frame found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The payload: UTF-8 text (JSON, not parsed yet).
    pub payload: &'a str,
    /// How many bytes of the buffer the frame took (prefix + payload).
    pub consumed: usize,
}

/// The frame at the start of `buf`, if all of it is there: `Ok(None)` asks for more bytes.
/// Refuses a frame whose announced length exceeds `max` as soon as the prefix is in, so a
/// reader never buffers more than `LENGTH_PREFIX + max` bytes.
pub fn parse_frame(buf: &[u8], max: usize) -> Result<Option<Frame<'_>>, FrameError> {
    let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX>() else {
        return Ok(None);
    };
    let length = u32::from_be_bytes(*prefix);
    if u64::from(length) > max as u64 {
        return Err(FrameError::TooLarge {
            length: u64::from(length),
            max,
        });
    }
    if length == 0 {
        return Err(FrameError::Empty);
    }
    let length = length as usize;
    let Some(payload) = buf.get(LENGTH_PREFIX..LENGTH_PREFIX + length) else {
        return Ok(None);
    };
    let payload = std::str::from_utf8(payload).map_err(|e| FrameError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    Ok(Some(Frame {
        payload,
        consumed: LENGTH_PREFIX + length,
    }))
}

/// `payload` as a frame: its length as 4 bytes big-endian, then the payload. `None` when the
/// payload is longer than a frame can announce (4 GiB).
pub fn encode_frame(payload: &[u8]) -> Option<Vec<u8>> {
    let length = u32::try_from(payload.len()).ok()?;
    let mut frame = Vec::with_capacity(LENGTH_PREFIX + payload.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(payload);
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_parsed_once_complete() {
        let frame = encode_frame(br#"{"op":"hello","version":1}"#).unwrap_or_default();
        for cut in 0..frame.len() {
            assert_eq!(parse_frame(&frame[..cut], 1024), Ok(None), "cut at {cut}");
        }
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        let parsed = parse_frame(&two, 1024).ok().flatten();
        assert_eq!(
            parsed,
            Some(Frame {
                payload: r#"{"op":"hello","version":1}"#,
                consumed: frame.len()
            })
        );
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_prefix_alone() {
        let prefix = 1025u32.to_be_bytes();
        assert_eq!(
            parse_frame(&prefix, 1024),
            Err(FrameError::TooLarge {
                length: 1025,
                max: 1024
            })
        );
        assert_eq!(parse_frame(&[0, 0, 0, 0], 1024), Err(FrameError::Empty));
        assert_eq!(
            parse_frame(&[0, 0, 0, 2, b'a', 0xff], 1024),
            Err(FrameError::NotUtf8 { valid_up_to: 1 })
        );
    }

    #[test]
    fn requests_and_replies_have_their_documented_shape() {
        let request: Request = serde_json::from_str(r#"{"id":7,"op":"kill","sandbox":"s1"}"#)
            .unwrap_or(Request {
                id: 0,
                op: Operation::Health,
            });
        assert_eq!(
            request,
            Request {
                id: 7,
                op: Operation::Kill {
                    sandbox: "s1".into()
                }
            }
        );
        let hello: Result<Hello, _> = serde_json::from_str(r#"{"op":"hello","version":1}"#);
        assert_eq!(hello.ok(), Some(Hello::Hello { version: 1 }));
        let reply = Reply::ok(Some(3), ReplyOk::Done(Done {}));
        assert_eq!(
            serde_json::to_string(&reply).unwrap_or_default(),
            r#"{"id":3,"ok":{}}"#
        );
        let frame: Result<ServerFrame, _> = serde_json::from_str(
            r#"{"id":3,"sandbox":"s1","event":{"event":"stdout","data":{"utf8":"hi"}}}"#,
        );
        assert!(matches!(frame, Ok(ServerFrame::Event(_))), "{frame:?}");
        let frame: Result<ServerFrame, _> =
            serde_json::from_str(r#"{"id":3,"ok":{"sandbox":"s1"}}"#);
        assert!(
            matches!(
                &frame,
                Ok(ServerFrame::Reply(Reply {
                    ok: Some(ReplyOk::Started(_)),
                    ..
                }))
            ),
            "{frame:?}"
        );
    }
}
