//! The syscall layer: every `unsafe` block in bunker lives in this crate.
//!
//! Each wrapper takes and returns owned Rust types, and every failure is a [`SysError`] naming the
//! syscall and its arguments, so the layers above can report *which* step of sandbox setup failed.

pub mod bpf;
pub mod cache;
pub mod error;
pub mod event;
pub mod fd;
pub mod landlock;
pub mod mount;
pub mod net;
pub mod process;
#[cfg(feature = "tokio")]
pub mod reactor;
pub mod rlimit;
pub mod seccomp;
pub mod shm;
#[cfg(test)]
#[path = "../../test-support/skip.rs"]
mod skip;
pub mod tty;

pub use error::{SysError, SysResult};
