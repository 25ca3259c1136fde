//! Pools for policies seen often (docs/protocol.md, "Warm pools": "frequently seen"), off
//! unless the config has `frequent`. A policy that ran cold (no pool fitted it) `after` times
//! within `within_ms` gets a pool of one sandbox of its own, named `seen:N`; at most
//! `max_pools` of them, the one taken from longest ago ended to make room for a new one. They
//! are the daemon's own guess, so a reload (SIGHUP or a changed file) forgets them all.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bunker_policy::Policy;

/// The config's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrequentRule {
    /// Cold runs of one policy that make it frequent.
    pub after: usize,
    /// Within how long.
    pub within: Duration,
    /// On-demand pools at most.
    pub max_pools: usize,
}

/// Policies remembered at most (each with at most `after` times): what a stream of distinct
/// policies can make the daemon keep.
const REMEMBERED: usize = 256;

/// The cold runs of the recent policies.
#[derive(Debug, Default)]
pub struct Sightings {
    seen: HashMap<String, VecDeque<Instant>>,
    /// Keys by first sighting, to forget the oldest.
    order: VecDeque<String>,
}

/// What identifies a policy: its document, where it came from left out (an inline policy and a
/// file with the same content are the same policy, as for `fits`).
pub fn key(policy: &Policy) -> Option<String> {
    let mut policy = policy.clone();
    policy.sources.clear();
    serde_json::to_string(&policy).ok()
}

impl Sightings {
    /// Counts a cold run of the policy `key` at `now`; true when that makes `rule.after` within
    /// `rule.within` (its count then starts again).
    pub fn cold_run(&mut self, rule: &FrequentRule, key: String, now: Instant) -> bool {
        if !self.seen.contains_key(&key) {
            if self.order.len() >= REMEMBERED {
                if let Some(oldest) = self.order.pop_front() {
                    self.seen.remove(&oldest);
                }
            }
            self.order.push_back(key.clone());
        }
        let times = self.seen.entry(key).or_default();
        times.push_back(now);
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) > rule.within)
        {
            times.pop_front();
        }
        while times.len() > rule.after {
            times.pop_front();
        }
        if times.len() >= rule.after {
            times.clear();
            return true;
        }
        false
    }

    /// Forgets every policy (a reload).
    pub fn clear(&mut self) {
        self.seen.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_is_frequent_after_k_cold_runs_within_the_window() {
        let rule = FrequentRule {
            after: 3,
            within: Duration::from_secs(10),
            max_pools: 1,
        };
        let mut s = Sightings::default();
        let t = Instant::now();
        assert!(!s.cold_run(&rule, "a".into(), t));
        assert!(!s.cold_run(&rule, "a".into(), t + Duration::from_secs(1)));
        // Another policy counts apart.
        assert!(!s.cold_run(&rule, "b".into(), t + Duration::from_secs(1)));
        assert!(s.cold_run(&rule, "a".into(), t + Duration::from_secs(2)));
        // Counted again from nothing.
        assert!(!s.cold_run(&rule, "a".into(), t + Duration::from_secs(3)));
        // Too far apart: the first falls out of the window.
        let mut s = Sightings::default();
        assert!(!s.cold_run(&rule, "a".into(), t));
        assert!(!s.cold_run(&rule, "a".into(), t + Duration::from_secs(8)));
        assert!(!s.cold_run(&rule, "a".into(), t + Duration::from_secs(15)));
        assert!(s.cold_run(&rule, "a".into(), t + Duration::from_secs(17)));
    }

    #[test]
    fn what_is_remembered_is_bounded() {
        let rule = FrequentRule {
            after: 2,
            within: Duration::from_secs(10),
            max_pools: 1,
        };
        let mut s = Sightings::default();
        let t = Instant::now();
        for n in 0..REMEMBERED + 10 {
            s.cold_run(&rule, n.to_string(), t);
        }
        assert_eq!(s.seen.len(), REMEMBERED);
        assert_eq!(s.order.len(), REMEMBERED);
        // The oldest were forgotten: its next run is a first one again.
        assert!(!s.cold_run(&rule, "0".into(), t));
    }
}
