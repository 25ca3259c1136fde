//! Owned fds on tokio's reactor. tokio's constructors are `unsafe` (they cannot know that an
//! arbitrary `AsRawFd` keeps its fd open); an [`OwnedFd`] does, so this is the safe one.

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Registers `fd` with the current runtime's reactor for `interest`. Fails with the kernel's
/// answer for an fd epoll refuses (EPERM for a regular file), and outside a tokio runtime
/// (where tokio would panic).
pub fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    // SAFETY: an OwnedFd is open until dropped, and its as_raw_fd is the same fd for its whole
    // life; the AsyncFd owns it (nothing else can close it) and hands out only references.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}
