//! Limits: the sandbox's cgroup (memory, pids, CPU) and its rlimits.
//!
//! The cgroup is created by the supervisor under its own cgroup in each hierarchy a limit needs
//! (`bunker-<supervisor pid>-<n>`), and init moves itself into it before it may fork the program
//! (spawn.rs prepares this while init builds its root; see [`SandboxCgroup::prepare_join`]).
//! Every requested limit is enforced by the kernel or the run is refused (fail closed), unless
//! the policy lists it in `limits.best_effort`: then the result says `off` (or `partial`) with a
//! note. The rlimits are applied inside the sandbox by init, before it forks the program.
//!
//! - `cgroup`: [`SandboxCgroup`], the sandbox's cgroup from creation to removal, and the
//!   cleanup of cgroups that killed supervisors left behind ([`clean_stale`]);
//! - `controllers`: which limits need which cgroup controller, and how each one is written;
//! - `rlimits`: [`apply_rlimits`], the per-process limits init sets on itself.

mod cgroup;
mod controllers;
mod rlimits;

pub use cgroup::{clean_stale, SandboxCgroup};
pub use rlimits::apply_rlimits;
