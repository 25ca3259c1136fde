//! bunker's seccomp profile, written as data, and its installation.
//!
//! - [`profile`]: the table. [`profile::PROFILE`] lists every x86-64 syscall the kernel knows,
//!   each with what the filter does with it and why.
//! - [`compiler`]: the table as a classic BPF program (built with `bunker_sys::seccomp`):
//!   1. `arch != AUDIT_ARCH_X86_64` (e.g. `int 0x80` i386 calls) → kill the process;
//!   2. `nr & __X32_SYSCALL_BIT` (the x32 ABI) → EPERM;
//!   3. a binary search over the syscall number → the entry's action; numbers the table does
//!      not name (syscalls newer than it, or holes) → ENOSYS, so libc falls back to older calls.
//! - [`doc`]: the table in words. docs/seccomp.md is generated from it
//!   (`cargo test -p bunker-sandbox seccomp` checks it; `BUNKER_BLESS=1` rewrites it).
//!
//! Argument checks read only the low 32 bits of an argument, and only for arguments the kernel
//! itself truncates to 32 bits or fewer (`clone` flags, `ioctl` cmd, `personality`, socket
//! family, `open` flags, the `umode_t` modes), so the high half cannot smuggle a value past the
//! check.

pub mod compiler;
pub mod doc;
pub mod profile;

use bunker_policy::{Policy, SeccompProfile};
use bunker_sys::seccomp::Insn;

use crate::error::SandboxError;
use crate::result::LayerStatus;

/// Installs the policy's seccomp profile on the calling thread: the last step before exec.
/// Sets no_new_privs first (idempotent), which an unprivileged filter needs.
pub fn install(policy: &Policy) -> Result<LayerStatus, SandboxError> {
    install_prepared(prepare(policy)?)
}

/// The filter `policy` asks for, compiled (`None`: seccomp is off). Pure: init compiles it
/// while its namespace thread may still run, and installs it last.
pub fn prepare(policy: &Policy) -> Result<Option<Vec<Insn>>, SandboxError> {
    match policy.kernel.seccomp {
        SeccompProfile::Off => Ok(None),
        // kernel.audit = seccomp-unotify is a later issue: the filter answers by itself for now.
        SeccompProfile::Default => {
            compiler::compile()
                .map(Some)
                .map_err(|e| SandboxError::Unsupported {
                    layer: "seccomp".into(),
                    reason: e.to_string(),
                })
        }
    }
}

/// Installs a filter from `prepare`.
pub fn install_prepared(program: Option<Vec<Insn>>) -> Result<LayerStatus, SandboxError> {
    let Some(program) = program else {
        return Ok(LayerStatus::Off);
    };
    bunker_sys::seccomp::set_no_new_privs().map_err(|source| SandboxError::Setup {
        step: "seccomp: no_new_privs".into(),
        source,
    })?;
    bunker_sys::seccomp::install_filter(&program).map_err(|source| SandboxError::Setup {
        step: "seccomp: install the default profile".into(),
        source,
    })?;
    Ok(LayerStatus::On)
}
