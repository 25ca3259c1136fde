//! The program's output: one budget (`limits.output`) shared by stdout and stderr, and where the
//! kept bytes go ([`OutputMode`]): captured into the result, streamed to this process's own
//! stdout and stderr with bunker's own lines (the console's relay) put in among the program's at
//! line starts, or sent to the observer as `RunEvent::Stdout` / `RunEvent::Stderr` chunks.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use bunker_api::Data;
use bunker_policy::Limits;

use crate::console::Console;
use crate::events::{Observer, RunEvent};
use crate::result::StreamResult;

/// Where the program's kept output goes (what is past `limits.output` is only counted, in
/// every mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Into the result: `stdout.data` and `stderr.data`.
    Capture,
    /// Copied to this process's own stdout and stderr as it arrives, with the console's lines
    /// (the CLI). The result carries the counts, no data.
    Stream,
    /// To the observer, as `RunEvent::Stdout` / `RunEvent::Stderr` chunks in the order they were
    /// read (a daemon's client). The result carries the counts, no data.
    Events,
}

impl OutputMode {
    /// `Stream` when `stream`, else `Capture`: the two modes of a local run.
    pub fn streamed_if(stream: bool) -> OutputMode {
        if stream {
            OutputMode::Stream
        } else {
            OutputMode::Capture
        }
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
    mode: OutputMode,
    /// Receives the chunks in `OutputMode::Events`.
    observer: Option<Arc<dyn Observer>>,
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
    pub fn new(
        limits: &Limits,
        mode: OutputMode,
        console: Option<Console>,
        observer: Option<Arc<dyn Observer>>,
    ) -> Output {
        let stream = mode == OutputMode::Stream;
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
            mode,
            observer: observer.filter(|_| mode == OutputMode::Events),
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
    pub(super) fn relay(&self) -> Option<BorrowedFd<'_>> {
        self.console.as_ref().map(Console::relay_fd)
    }

    /// Moves bunker's relayed lines into the stderr stream, each starting on a fresh line.
    /// They are not the program's output: not counted in its bytes, not under its limit.
    pub(super) fn take_relay(&mut self) {
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
    pub(super) fn truncated(&self, index: usize) -> bool {
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
        if keep > 0 {
            let kept = &data[..keep];
            if let Some(observer) = &self.observer {
                let data = Data::from_bytes(kept.to_vec());
                observer.event(&if index == 0 {
                    RunEvent::Stdout { data }
                } else {
                    RunEvent::Stderr { data }
                });
            } else if self.mode != OutputMode::Events && !s.sink_broken {
                s.buffer.extend_from_slice(kept);
                s.mid_line = kept[keep - 1] != b'\n';
            }
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
    pub(super) fn waiting(&self, index: usize) -> Option<BorrowedFd<'_>> {
        let s = &self.streams[index];
        match &s.sink {
            Some(sink)
                if self.mode == OutputMode::Stream
                    && !s.sink_broken
                    && s.written < s.buffer.len() =>
            {
                Some(sink.as_fd())
            }
            _ => None,
        }
    }

    /// Writes what the writable sink of stream `index` takes without blocking.
    pub(super) fn write_waiting(&mut self, index: usize) {
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
    pub fn finish(&mut self) -> (StreamResult, StreamResult) {
        self.take_relay();
        let mode = self.mode;
        let ends_mid_line =
            self.streams[1].mid_line || (self.shared_sink && self.streams[0].mid_line);
        let console = self.console.take();
        let [out, err] = std::mem::take(&mut self.streams);
        let done = |mut s: StreamState| {
            match mode {
                OutputMode::Stream => {
                    if let (Some(sink), false) = (s.sink.as_mut(), s.sink_broken) {
                        let _ = sink.write_all(&s.buffer[s.written..]);
                    }
                }
                OutputMode::Capture => {
                    s.result.data = Some(Data::from_bytes(std::mem::take(&mut s.buffer)));
                }
                OutputMode::Events => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            output: 10,
            ..Limits::default()
        }
    }

    #[test]
    fn output_is_capped_across_both_streams_and_counted_past_the_cap() {
        let mut out = Output::new(&limits(), OutputMode::Capture, None, None);
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
    fn events_mode_sends_the_kept_bytes_to_the_observer_and_keeps_no_data() {
        let recorder = Arc::new(super::super::stand_in::Recorder::default());
        let observer: Arc<dyn Observer> = recorder.clone();
        let mut out = Output::new(&limits(), OutputMode::Events, None, Some(observer));
        assert!(!out.accept(0, b"123456"));
        assert!(out.accept(1, b"ab\xffdefgh"));
        assert!(out.accept(0, b"more"));
        assert_eq!(
            recorder.events(),
            vec![
                RunEvent::Stdout {
                    data: Data::Utf8("123456".into())
                },
                RunEvent::Stderr {
                    data: Data::from_bytes(b"ab\xffd".to_vec())
                },
            ]
        );
        let (o, e) = out.finish();
        assert_eq!((o.bytes, o.kept, o.truncated, o.data), (10, 6, true, None));
        assert_eq!((e.bytes, e.kept, e.truncated, e.data), (8, 4, true, None));
    }
}
