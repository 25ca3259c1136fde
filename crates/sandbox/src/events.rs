//! Decisions the supervisor makes during a run, reported as they happen to an [`Observer`] the
//! caller plugs in (the CLI turns them into `-v` lines and best-effort warnings), as the API
//! contract's [`RunEvent`]s. The library itself prints nothing.
//!
//! Reported here today: [`RunEvent::Started`] (the sandbox is built, before any of the program's
//! output) and [`RunEvent::LimitHit`] with `limit_output` (a stream first went past
//! `limits.output`: the rest is counted, not delivered, or the run is killed with
//! `kill_on_output_overflow`).

pub use bunker_api::RunEvent;

/// Receives a run's [`RunEvent`]s, on the supervisor's thread, while the run goes on.
pub trait Observer: std::fmt::Debug + Send + Sync {
    fn event(&self, event: &RunEvent);
}
