//! Telling a program that does not fit in its memory limit from one that merely fills page cache.
//!
//! At its limit, a cgroup without swap is reclaimed rather than OOM-killed for as long as
//! reclaim frees anything. When the program's own mapped pages (a runtime's code, read back from
//! disk) are what gets freed, it refaults them at once, evicts them again, and the kernel calls
//! that progress: Bun allocating past a 50 MB limit with a cold page cache spun seconds (up to
//! 41 s) at 100% CPU before the OOM killer came. A program that writes or reads files through
//! the page cache is also at its limit, but it refaults nothing (writing) or hardly ever waits on
//! a major fault (reading: its own code stays resident).
//!
//! So the sandbox is over its limit when, at the limit, either
//! - reclaim has next to nothing left to free: what it cannot free (usage minus the page cache
//!   on the LRU lists: anonymous, shmem and kernel memory, which without swap only the OOM
//!   killer frees) is within a [`NOTHING_LEFT_DIVISOR`]th of the limit; the kernel gets to its
//!   OOM kill only after evicting the program's last code pages, or
//! - on consecutive accounting ticks at the limit it both refaulted pages it had before
//!   ([`REFAULT_PAGES`]) and kept waiting on major faults ([`MAJOR_FAULTS`] over
//!   [`MAJOR_FAULT_TICKS`] ticks): its working set does not fit.
//!
//! The kernel's OOM kill is counted beside this ([`crate::MemoryStats::oom_kills`]).

use crate::group::MemorySample;

/// How close to the limit usage must be to count as "at the limit": a sixteenth of it, at least
/// 2 MiB. cgroup v1's usage is read through per-CPU charge caches and reclaim frees in batches,
/// so a cgroup pinned at its limit reads up to a few MiB below it.
const AT_LIMIT_MIN_SLACK: u64 = 2 << 20;
/// Refaults (pages evicted and faulted back while their shadow entry survived) within the ticks
/// at the limit: 1 MiB of 4 KiB pages. Loading a program for the first time faults without
/// refaulting; a program at its limit that needs what it lost refaults thousands per tick.
pub const REFAULT_PAGES: u64 = 256;
/// Major faults (waits on disk for a mapped page) within the ticks at the limit, spread over at
/// least [`MAJOR_FAULT_TICKS`] of them. Measured here: Bun thrashing at 50 MB with cold caches
/// takes 70 to 1000 a second, on most ticks; a program streaming 300 MB of files through the same
/// limit, twice, refaulting as fast, takes one now and then as its own code is evicted, at most 3
/// in 80 ms, in bursts of one or two ticks; writing files, none.
pub const MAJOR_FAULTS: u64 = 6;
/// Ticks of the window with at least one major fault.
pub const MAJOR_FAULT_TICKS: usize = 3;
/// When what reclaim cannot free is within limit / this of the limit, nothing the program could
/// use is left to reclaim: a 50 MB limit leaves 780 KB, less than any runtime's code.
pub const NOTHING_LEFT_DIVISOR: u64 = 64;
/// How many ticks at the limit the counts may be spread over.
pub const WINDOW_TICKS: usize = 8;

/// Why the sandbox is over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// What reclaim cannot free fills the limit: the kernel's OOM kill is only some evictions
    /// of the program's last code pages away.
    NothingToReclaim,
    /// It keeps faulting back in what it lost: its working set does not fit in the limit.
    WorkingSetDoesNotFit,
}

/// Per-tick state of the watch.
#[derive(Debug, Default)]
pub struct ThrashWatch {
    /// Counters of the consecutive ticks at the limit so far (oldest first), at most
    /// `WINDOW_TICKS + 1`.
    window: Vec<MemorySample>,
}

impl ThrashWatch {
    pub fn new() -> ThrashWatch {
        ThrashWatch::default()
    }

    /// Whether usage is close enough to `limit` to be at it.
    pub fn at_limit(usage: u64, limit: u64) -> bool {
        let slack = (limit / 16).max(AT_LIMIT_MIN_SLACK);
        usage.saturating_add(slack) >= limit
    }

    /// A tick that found usage below the limit: the window starts over.
    pub fn below_limit(&mut self) {
        self.window.clear();
    }

    /// A tick at `limit`, with its counters. `Some` when the sandbox is over it: nothing is
    /// left to reclaim, or over the ticks at the limit in the window it refaulted and kept
    /// waiting on major faults.
    pub fn at_limit_tick(&mut self, sample: MemorySample, limit: u64) -> Option<Over> {
        let unreclaimable = sample.usage.saturating_sub(sample.file_bytes);
        if unreclaimable.saturating_add(limit / NOTHING_LEFT_DIVISOR) >= limit {
            return Some(Over::NothingToReclaim);
        }
        if self.window.len() > WINDOW_TICKS {
            self.window.remove(0);
        }
        self.window.push(sample);
        let (Some(first), Some(last)) = (self.window.first(), self.window.last()) else {
            return None;
        };
        let refaults = last.refaults.saturating_sub(first.refaults);
        let major = last.major_faults.saturating_sub(first.major_faults);
        let ticks_with_major = self
            .window
            .windows(2)
            .filter(|pair| pair[1].major_faults > pair[0].major_faults)
            .count();
        (refaults >= REFAULT_PAGES
            && major >= MAJOR_FAULTS
            && ticks_with_major >= MAJOR_FAULT_TICKS)
            .then_some(Over::WorkingSetDoesNotFit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 50 << 20;

    /// At the limit with 10 MiB of page cache.
    fn s(refaults: u64, major_faults: u64) -> MemorySample {
        MemorySample {
            usage: LIMIT,
            refaults,
            major_faults,
            file_bytes: 10 << 20,
        }
    }

    #[test]
    fn nothing_left_to_reclaim_is_over_the_limit_at_once() {
        let mut w = ThrashWatch::new();
        let full = MemorySample {
            usage: LIMIT - (64 << 10),
            file_bytes: 256 << 10,
            ..s(0, 0)
        };
        assert_eq!(w.at_limit_tick(full, LIMIT), Some(Over::NothingToReclaim));
        // Room left, or cache left to reclaim: not over. (A warm cache may be charged to
        // another cgroup: no page cache of its own does not mean it is full.)
        let mut w = ThrashWatch::new();
        for (usage, file_bytes) in [(LIMIT - (2 << 20), 0), (LIMIT, 2 << 20)] {
            let sample = MemorySample {
                usage,
                file_bytes,
                ..s(0, 0)
            };
            assert!(
                w.at_limit_tick(sample, LIMIT).is_none(),
                "{usage} {file_bytes}"
            );
        }
    }

    #[test]
    fn refaults_with_major_faults_at_the_limit_are_thrashing() {
        let mut w = ThrashWatch::new();
        assert!(
            w.at_limit_tick(s(0, 0), LIMIT).is_none(),
            "one tick has no deltas"
        );
        assert!(w.at_limit_tick(s(3000, 2), LIMIT).is_none());
        assert!(w.at_limit_tick(s(6000, 4), LIMIT).is_none());
        assert_eq!(
            w.at_limit_tick(s(9000, 6), LIMIT),
            Some(Over::WorkingSetDoesNotFit)
        );
    }

    #[test]
    fn refaults_alone_are_a_re_read_not_thrashing() {
        // `cat big; cat big` at the limit: refaults at disk speed, its own code resident.
        let mut w = ThrashWatch::new();
        for i in 0..50 {
            assert!(
                w.at_limit_tick(s(i * 8000, i / 20), LIMIT).is_none(),
                "tick {i}"
            );
        }
    }

    #[test]
    fn a_burst_of_major_faults_while_streaming_files_is_not_thrashing() {
        // Its own code evicted once by the stream: three major faults in two ticks.
        let mut w = ThrashWatch::new();
        let majors = [0, 0, 0, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3];
        for (i, m) in majors.into_iter().enumerate() {
            assert!(
                w.at_limit_tick(s(i as u64 * 8000, m), LIMIT).is_none(),
                "tick {i}"
            );
        }
        // Six in one tick: still one tick.
        let mut w = ThrashWatch::new();
        for (i, m) in [0, 6, 6, 6].into_iter().enumerate() {
            assert!(
                w.at_limit_tick(s(i as u64 * 8000, m), LIMIT).is_none(),
                "tick {i}"
            );
        }
    }

    #[test]
    fn major_faults_without_refaults_are_a_first_load() {
        let mut w = ThrashWatch::new();
        for i in 0..50 {
            assert!(w.at_limit_tick(s(i, i * 10), LIMIT).is_none(), "tick {i}");
        }
    }

    #[test]
    fn the_window_is_bounded_and_starts_over_below_the_limit() {
        let mut w = ThrashWatch::new();
        // A few major faults long ago do not add up with later ones.
        for i in 0..100 {
            assert!(
                w.at_limit_tick(s(i * 1000, i / 3), LIMIT).is_none(),
                "tick {i}"
            );
        }
        let mut w = ThrashWatch::new();
        w.at_limit_tick(s(0, 0), LIMIT);
        w.at_limit_tick(s(5000, 3), LIMIT);
        w.below_limit();
        assert!(w.at_limit_tick(s(5000, 3), LIMIT).is_none());
        assert!(w.at_limit_tick(s(5100, 4), LIMIT).is_none());
    }
}
