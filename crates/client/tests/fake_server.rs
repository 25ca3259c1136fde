//! The client against a scripted server on a temporary socket: the handshake, a `run` whose
//! events and reply come in order, descriptors passed with SCM_RIGHTS, and a server that goes
//! away. The real daemon is exercised by crates/cli/tests/connect.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};

use bunker_api::protocol::{self, ClientFrame, Request};
use bunker_api::{ErrorCode, OutputMode, RunEvent, RunSpec, StdinSource};
use bunker_client::{Client, StdioFds};

/// Reads one frame (and the descriptors on its first byte) from the client.
fn read_frame(stream: &UnixStream, buf: &mut Vec<u8>) -> (ClientFrame, Vec<OwnedFd>) {
    let mut fds = Vec::new();
    loop {
        if let Some(frame) = protocol::parse_frame(buf, protocol::DEFAULT_MAX_FRAME).unwrap() {
            let parsed = serde_json::from_str(frame.payload).unwrap();
            let consumed = frame.consumed;
            buf.drain(..consumed);
            return (parsed, fds);
        }
        let (bytes, got) = bunker_sys::fd::recv_with_fds(stream.as_raw_fd(), 4096).unwrap();
        assert!(!bytes.is_empty(), "the client closed the connection");
        buf.extend_from_slice(&bytes);
        fds.extend(got);
    }
}

fn write_frame(mut stream: &UnixStream, json: &str) {
    stream
        .write_all(&protocol::encode_frame(json.as_bytes()).unwrap())
        .unwrap();
}

fn handshake(stream: &UnixStream, buf: &mut Vec<u8>) {
    let (hello, _) = read_frame(stream, buf);
    assert!(matches!(hello, ClientFrame::Hello(_)), "{hello:?}");
    write_frame(stream, r#"{"ok":{"version":1,"server":"fake 0"}}"#);
}

const RESULT: &str = r#"{"status":"exit","exit_code":3,"wall_ms":1.0,"cpu_ms":1.0,
 "stdout":{"bytes":3,"kept":3,"truncated":false},"stderr":{"bytes":0,"kept":0,"truncated":false},
 "enforced":{"namespaces":"on","filesystem":"on","landlock":"on","landlock_abi":7,"seccomp":"on",
  "no_new_privs":"on","capabilities_dropped":"on","memory_limit":"on","pids_limit":"on",
  "cpu_limit":"off","cpu_time_limit":"off","rlimits":"on","network":"on","notes":[]},
 "http":{"requests":[],"truncated":false,"allowed":0,"denied":0,"denied_by":[],"limits_hit":[],
  "bytes_sent":0,"bytes_received":0}}"#;

fn spec(stdin: StdinSource, output: OutputMode) -> RunSpec {
    let mut spec: RunSpec =
        serde_json::from_str(r#"{"policy":{"name":"default"},"argv":["cat"]}"#).unwrap();
    spec.stdin = stdin;
    spec.options.output = output;
    spec
}

#[test]
fn a_run_gets_its_events_then_its_result_and_passes_its_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        handshake(&stream, &mut buf);
        let (request, fds) = read_frame(&stream, &mut buf);
        let ClientFrame::Request(Request { id, .. }) = request else {
            panic!("{request:?}")
        };
        // The three descriptors, in order: stdin (read "in"), stdout, stderr.
        assert_eq!(fds.len(), 3);
        let mut input = String::new();
        std::fs::File::from(fds[0].try_clone().unwrap())
            .read_to_string(&mut input)
            .unwrap();
        assert_eq!(input, "in");
        std::fs::File::from(fds[1].try_clone().unwrap())
            .write_all(b"out")
            .unwrap();
        write_frame(
            &stream,
            &format!(
                r#"{{"id":{id},"sandbox":"s-1","event":{{"event":"stderr","data":{{"base64":"/w=="}}}}}}"#
            ),
        );
        write_frame(&stream, &format!(r#"{{"id":{id},"ok":{RESULT}}}"#));
    });
    let mut client = Client::connect(&path).unwrap();
    assert_eq!(client.server(), "fake 0");
    let (stdin_r, stdin_w) = bunker_sys::fd::pipe().unwrap();
    std::fs::File::from(stdin_w).write_all(b"in").unwrap();
    let (out_r, out_w) = bunker_sys::fd::pipe().unwrap();
    let mut events = Vec::new();
    let result = client
        .run_with(
            &spec(StdinSource::Fd, OutputMode::Fds),
            StdioFds {
                stdin: Some(stdin_r.as_fd()),
                output: Some((out_w.as_fd(), out_w.as_fd())),
            },
            |e| events.push(e.clone()),
        )
        .unwrap();
    server.join().unwrap();
    assert_eq!(result.exit_code, Some(3));
    assert!(
        matches!(&events[..], [RunEvent::Stderr { data }] if data.to_bytes().unwrap() == [0xff]),
        "{events:?}"
    );
    drop(out_w);
    let mut out = String::new();
    std::fs::File::from(out_r).read_to_string(&mut out).unwrap();
    assert_eq!(out, "out");
}

#[test]
fn an_error_reply_and_a_lost_connection_are_api_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        handshake(&stream, &mut buf);
        let (request, _) = read_frame(&stream, &mut buf);
        let ClientFrame::Request(Request { id, .. }) = request else {
            panic!("{request:?}")
        };
        write_frame(
            &stream,
            &format!(r#"{{"id":{id},"error":{{"code":"busy","message":"full"}}}}"#),
        );
        let _ = read_frame(&stream, &mut buf);
        // Gone without an answer.
    });
    let mut client = Client::connect(&path).unwrap();
    let spec = spec(StdinSource::Null, OutputMode::Capture);
    assert_eq!(client.run(&spec).unwrap_err().code, ErrorCode::Busy);
    let lost = client.health().unwrap_err();
    assert_eq!(lost.code, ErrorCode::Unavailable, "{lost}");
    assert!(lost.message.contains("closed the connection"), "{lost}");
    server.join().unwrap();
    // The socket file is still there, but nobody listens on it.
    let refused = Client::connect(&path).map(|_| ()).unwrap_err();
    assert_eq!(refused.code, ErrorCode::Unavailable);
    assert!(refused.message.contains("nobody listens"), "{refused}");
}
