//! bunker's seccomp profile, written as data, and its installation.
//! (being written by the filter engineer — signatures are the contract with spawn.rs)

use bunker_policy::Policy;

use crate::error::SandboxError;
use crate::result::LayerStatus;

/// Runs inside the sandbox as the very last step before exec (after no_new_privs).
pub fn install(policy: &Policy) -> Result<LayerStatus, SandboxError> {
    let _ = policy;
    todo!("filter engineer")
}
