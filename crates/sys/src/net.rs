//! Network namespace set-up: bringing the loopback interface up.

use std::os::fd::{FromRawFd, OwnedFd};

use crate::error::{SysError, SysResult};

/// Sets `lo` up (a new network namespace starts with it down), like `ip link set lo up`.
pub fn loopback_up() -> SysResult<()> {
    // SAFETY: plain socket creation.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(SysError::last("socket(AF_INET, SOCK_DGRAM)"));
    }
    // SAFETY: socket succeeded; the fd is ours and closed on drop.
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: an all-zero ifreq is valid; the name and flags are filled in below.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq; SIOCGIFFLAGS fills ifru_flags.
    if unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SIOCGIFFLAGS,
            &mut req,
        )
    } < 0
    {
        return Err(SysError::last("ioctl(lo, SIOCGIFFLAGS)"));
    }
    // SAFETY: the flags member of the union was just written by the kernel.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: `req` is a valid ifreq holding the new flags.
    if unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SIOCSIFFLAGS,
            &req,
        )
    } < 0
    {
        return Err(SysError::last("ioctl(lo, SIOCSIFFLAGS, IFF_UP)"));
    }
    Ok(())
}
