//! Decisions the supervisor makes during a run, reported as they happen to an [`Observer`] the
//! caller plugs in (the CLI turns them into `-v` lines and best-effort warnings). The library
//! itself prints nothing.

use crate::result::Enforced;

/// One thing that happened during a run.
#[derive(Debug)]
pub enum Event<'a> {
    /// The sandbox is built and the program is about to start: what is enforced, and the notes
    /// on what is not (skipped grants among them). Comes before any of the program's output.
    Ready { enforced: &'a Enforced },
    /// A stream first went past `limits.output`: the rest is counted, not delivered (or the run
    /// is killed, with `kill_on_output_overflow`).
    OutputCut {
        /// `stdout` or `stderr`.
        stream: &'static str,
        /// The limit, in bytes (stdout and stderr share it).
        limit: u64,
    },
}

/// Receives a run's [`Event`]s, on the supervisor's thread, while the run goes on.
pub trait Observer: std::fmt::Debug + Send + Sync {
    fn event(&self, event: &Event<'_>);
}
