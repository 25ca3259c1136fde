//! Landlock rules mirroring the policy's read, write and exec grants.
//! (being written by the filter engineer — signatures are the contract with spawn.rs)

use bunker_policy::Policy;

use crate::error::SandboxError;
use crate::result::LayerStatus;

/// What the kernel enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandlockOutcome {
    pub status: LayerStatus,
    pub abi: u32,
    pub notes: Vec<String>,
}

/// Paths of the sandbox's own root that are not in the policy but must stay usable.
#[derive(Debug, Clone, Default)]
pub struct SandboxPaths {
    /// Writable: /tmp, /dev/shm, and the device nodes (/dev/null, ...).
    pub writable: Vec<std::path::PathBuf>,
    /// Read-only: /proc, /dev, and the root itself for directory traversal.
    pub readable: Vec<std::path::PathBuf>,
    /// Loopback TCP ports the program may connect to (the proxy's).
    pub connect_ports: Vec<u16>,
}

/// Runs in the supervisor before forking: the landlock ABI this kernel offers, or an error when
/// the policy requires landlock and the kernel cannot enforce it.
pub fn probe(policy: &Policy) -> Result<u32, SandboxError> {
    let _ = policy;
    todo!("filter engineer")
}

/// Runs inside the sandbox after pivot_root and before seccomp; restricts this process and its
/// future children.
pub fn apply(policy: &Policy, paths: &SandboxPaths) -> Result<LandlockOutcome, SandboxError> {
    let _ = (policy, paths);
    todo!("filter engineer")
}
