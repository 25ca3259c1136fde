//! bunker's own lines on the caller's stderr (`bunker: ...`), kept apart from the program's.
//!
//! While a run streams the program's output, the supervisor is the only writer of the caller's
//! stderr: a line from anywhere else (the proxy's thread, the CLI) goes into a relay pipe
//! without blocking, and the supervisor's loop copies it into the stderr stream at the next
//! line start — on a fresh line even when the program's last line is unfinished, and never
//! blocking the loop (a caller that stops reading stderr cannot hold the timeout off). Outside a
//! run a line is written at once, after a newline when the program's stderr ended mid-line.
//!
//! A line keeps its place among the program's output: a thread other than the supervisor's
//! waits until the supervisor has taken its line, and the supervisor first reads what the
//! program wrote so far. What the program printed before a line was said comes before it, and
//! what the line's cause (a proxy refusal) made it print after — whatever the scheduler does
//! with the supervisor meanwhile.
//! `-q` / `-v` are the console's [`Verbosity`].

use std::fmt;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};
use std::time::Duration;

use bunker_sys::{event, fd, SysError};

/// How much of its own bunker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Nothing (`-q`): only what the caller asked for explicitly (the report).
    Quiet,
    /// Why a run was ended or refused, warnings, and an end-of-run summary of denials and cuts.
    Normal,
    /// Also each decision as it happens (`-v`): proxy requests, skipped grants, layers.
    Verbose,
}

/// Longest line the relay carries whole: a pipe write up to `PIPE_BUF` is atomic, so lines
/// from several threads never interleave. Longer lines are cut.
const MAX_LINE: usize = libc::PIPE_BUF;

/// Longest a thread waits for the supervisor to take its line: a backstop only (the supervisor
/// polls the relay), so that nothing can hang on a supervisor that stopped coming round.
const HANDOVER_BACKSTOP: Duration = Duration::from_secs(1);

/// A handle on bunker's console; clones share it.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    verbosity: Verbosity,
    state: Mutex<State>,
    /// Signalled when the supervisor has taken lines from the relay, or the relay ended.
    taken: Condvar,
    relay_read: File,
    relay_write: File,
    /// Lines lost because the relay (or the supervisor's backlog) was full.
    dropped: AtomicU64,
}

#[derive(Default)]
struct State {
    /// A run is streaming: lines go through the relay.
    relaying: bool,
    /// The caller's stderr ends in an unfinished line (the program's).
    mid_line: bool,
    /// The thread that runs the supervisor's loop: its own lines need no hand-over.
    supervisor: Option<ThreadId>,
    /// Lines put into the relay, and lines the supervisor has taken out of it, this run.
    relayed: u64,
    taken: u64,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("verbosity", &self.inner.verbosity)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// A console on this process's stderr.
    pub fn new(verbosity: Verbosity) -> Result<Console, SysError> {
        let (read, write) = fd::pipe()?;
        event::set_nonblocking(read.as_fd())?;
        event::set_nonblocking(write.as_fd())?;
        Ok(Console {
            inner: Arc::new(Inner {
                verbosity,
                state: Mutex::new(State::default()),
                taken: Condvar::new(),
                relay_read: File::from(read),
                relay_write: File::from(write),
                dropped: AtomicU64::new(0),
            }),
        })
    }

    pub fn verbosity(&self) -> Verbosity {
        self.inner.verbosity
    }

    /// A line shown unless `-q`.
    pub fn notice(&self, text: &str) {
        if self.inner.verbosity >= Verbosity::Normal {
            self.emit(text);
        }
    }

    /// A line shown only with `-v`.
    pub fn verbose(&self, text: &str) {
        if self.inner.verbosity >= Verbosity::Verbose {
            self.emit(text);
        }
    }

    /// Writes `text` as one line whatever the verbosity (the report the caller asked for on
    /// stderr), blocking, on a fresh line. Only outside a run.
    pub fn write_line(&self, text: &str) -> io::Result<()> {
        let mut state = self.lock();
        write_direct(&mut state, &as_line(text))
    }

    /// The program's stderr was written to the caller's stderr by someone else than the
    /// supervisor (a daemon's events, `bunker run --connect`): whether it now ends in an
    /// unfinished line, so that bunker's next line starts on a fresh one. Outside a run only.
    pub fn program_wrote(&self, mid_line: bool) {
        let mut state = self.lock();
        if !state.relaying {
            state.mid_line = mid_line;
        }
    }

    /// Lines lost so far because stderr was not read fast enough during a run.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    fn emit(&self, text: &str) {
        let line = as_line(text);
        let mut state = self.lock();
        if state.relaying {
            let mut line = line;
            if line.len() > MAX_LINE {
                let mut cut = MAX_LINE - 4;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
                line.push_str("…\n");
            }
            // Non-blocking: a full relay loses the line (counted) rather than stall a thread.
            if (&self.inner.relay_write).write(line.as_bytes()).is_err() {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            state.relayed += count_lines(line.as_bytes());
            if state.supervisor != Some(thread::current().id()) {
                // Hand-over: return only once the supervisor has put the line in the stream,
                // so nothing this thread does next (answering the program) can overtake it.
                let mine = state.relayed;
                let _ = self
                    .inner
                    .taken
                    .wait_timeout_while(state, HANDOVER_BACKSTOP, |s| s.relaying && s.taken < mine);
            }
        } else {
            let _ = write_direct(&mut state, &line);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The supervisor takes the caller's stderr over: lines go through the relay from now on.
    /// Called on the thread that runs the supervisor's loop. Idempotent.
    pub(crate) fn start_relay(&self) {
        let mut state = self.lock();
        state.relaying = true;
        state.supervisor = Some(thread::current().id());
    }

    /// The relay's read end, for the supervisor's poll.
    pub(crate) fn relay_fd(&self) -> BorrowedFd<'_> {
        self.inner.relay_read.as_fd()
    }

    /// Appends what the relay holds to `into`, without blocking. The lines read count as taken
    /// (their threads go on): the caller puts them in the stream before it reads the program's
    /// output again.
    pub(crate) fn read_relay(&self, into: &mut Vec<u8>) {
        let lines = self.drain_relay(into);
        if lines > 0 {
            self.lock().taken += lines;
            self.inner.taken.notify_all();
        }
    }

    /// Appends what the relay holds to `into`; returns how many lines that was.
    fn drain_relay(&self, into: &mut Vec<u8>) -> u64 {
        let mut buf = [0u8; 16 * 1024];
        let mut lines = 0;
        loop {
            match (&self.inner.relay_read).read(&mut buf) {
                Ok(0) => return lines,
                Ok(n) => {
                    into.extend_from_slice(&buf[..n]);
                    lines += count_lines(&buf[..n]);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return lines,
            }
        }
    }

    /// Counts lines the supervisor could not keep.
    pub(crate) fn count_dropped(&self, lines: u64) {
        self.inner.dropped.fetch_add(lines, Ordering::Relaxed);
    }

    /// The run is over: whatever is still in the relay is written now, and later lines are
    /// written directly, after a newline if the stream ended mid-line. A no-op unless relaying
    /// (the supervisor ends it; a caller may too, after a run that failed).
    pub fn end_relay(&self, mid_line: bool) {
        let mut state = self.lock();
        if !state.relaying {
            return;
        }
        state.relaying = false;
        state.mid_line = mid_line;
        state.supervisor = None;
        state.relayed = 0;
        state.taken = 0;
        let mut rest = Vec::new();
        self.drain_relay(&mut rest);
        if !rest.is_empty() {
            let _ = write_direct(&mut state, &String::from_utf8_lossy(&rest));
        }
        // Threads still waiting for a hand-over go on: their lines are written.
        self.inner.taken.notify_all();
    }
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

fn as_line(text: &str) -> String {
    let mut line = text.trim_end_matches('\n').to_owned();
    line.push('\n');
    line
}

fn write_direct(state: &mut State, line: &str) -> io::Result<()> {
    let mut err = io::stderr().lock();
    if state.mid_line {
        err.write_all(b"\n")?;
        state.mid_line = false;
    }
    err.write_all(line.as_bytes())?;
    err.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relayed(console: &Console) -> String {
        let mut bytes = Vec::new();
        console.read_relay(&mut bytes);
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn during_a_run_lines_go_through_the_relay_whole() {
        let console = Console::new(Verbosity::Verbose).unwrap();
        console.start_relay();
        console.notice("bunker: one");
        console.verbose("bunker: two\n");
        assert_eq!(relayed(&console), "bunker: one\nbunker: two\n");
        // A line longer than an atomic pipe write is cut, never split.
        console.verbose(&"é".repeat(MAX_LINE));
        let long = relayed(&console);
        assert!(
            long.len() <= MAX_LINE && long.ends_with("…\n"),
            "{}",
            long.len()
        );
        assert_eq!(console.dropped(), 0);
    }

    #[test]
    fn a_full_relay_drops_and_counts_instead_of_blocking() {
        let console = Console::new(Verbosity::Normal).unwrap();
        console.start_relay();
        let line = "x".repeat(1000);
        for _ in 0..200 {
            console.notice(&line);
        }
        // 200 KB do not fit in a 64 KiB pipe: the writer went on.
        assert!(console.dropped() > 0);
        assert!(relayed(&console).len() < 200 * 1001);
    }

    #[test]
    fn verbosity_filters() {
        let quiet = Console::new(Verbosity::Quiet).unwrap();
        quiet.start_relay();
        quiet.notice("bunker: a");
        quiet.verbose("bunker: b");
        assert_eq!(relayed(&quiet), "");
        let normal = Console::new(Verbosity::Normal).unwrap();
        normal.start_relay();
        normal.notice("bunker: a");
        normal.verbose("bunker: b");
        assert_eq!(relayed(&normal), "bunker: a\n");
    }
}
