//! Limits: the sandbox's cgroup (memory, pids, CPU) and its rlimits.
//! (being written by the limits engineer — signatures are the contract with spawn.rs)

use bunker_policy::{Limits, Policy};

use crate::error::SandboxError;
use crate::result::Enforced;

/// The sandbox's cgroup, created before the clone and removed on drop.
#[derive(Debug)]
pub struct SandboxCgroup {}

impl SandboxCgroup {
    /// Runs in the supervisor before forking. Creates the cgroup under the supervisor's own
    /// cgroup and writes the limits; records what is enforced into `enforced`. Fails closed when
    /// a limit cannot be enforced and is not marked best-effort.
    pub fn prepare(policy: &Policy, enforced: &mut Enforced) -> Result<SandboxCgroup, SandboxError> {
        let _ = (policy, enforced);
        todo!("limits engineer")
    }

    /// Moves `pid` (the sandbox's init, still waiting before setup) into the cgroup.
    pub fn add_process(&self, pid: i32) -> Result<(), SandboxError> {
        let _ = pid;
        todo!("limits engineer")
    }
}

/// Runs inside the sandbox before exec: file size, open files, stack, core dumps off.
pub fn apply_rlimits(limits: &Limits) -> Result<(), SandboxError> {
    let _ = limits;
    todo!("limits engineer")
}
