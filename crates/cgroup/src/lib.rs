//! cgroups for sandboxes, v2 and v1: detection, creation under the supervisor's own cgroup,
//! limits, accounting and removal. No unsafe code: this is file I/O on cgroupfs, and every function
//! takes the cgroup filesystem root as a path so tests run against a fake tree.
//!
//! - [`Layout`] finds, per controller, the hierarchy (v1 or v2) that holds it and the
//!   supervisor's own cgroup there, from `/proc/self/cgroup` and `/proc/self/mountinfo`.
//! - [`SandboxGroup`] is one sandbox's cgroup, spread over the hierarchies it needs
//!   (`bunker-<supervisor pid>-<n>` in each), with its limits and counters. Dropping it kills
//!   what is left inside and removes the directories.
//! - [`ThrashWatch`] tells a sandbox thrashing at its memory limit from one filling page cache.
//! - [`Freezer`] pauses a sandbox (v2 `cgroup.freeze`, or a group of the v1 freezer).
//! - [`clean_stale`] and [`clean_stale_freezers`] remove what a SIGKILLed supervisor left behind.
#![forbid(unsafe_code)]

mod error;
mod freezer;
mod group;
mod layout;
#[cfg(test)]
#[path = "../../test-support/skip.rs"]
mod skip;
mod stale;
mod thrash;

pub use error::CgroupError;
pub use freezer::{clean_stale_freezers, Freezer};
pub use group::{
    join_self, name_groups_after, GroupDirParts, MemoryLimitOutcome, MemorySample, MemoryStats,
    SandboxGroup,
};
pub use layout::{Controller, Hierarchy, Layout, Version};
pub use stale::{clean_stale, clean_stale_in, parse_group_name, CleanReport};
pub use thrash::{Over, ThrashWatch};
