//! File descriptors: pipes, socket pairs, fd passing (SCM_RIGHTS), path resolution that never
//! follows a symlink, and the small read/write helpers sandbox setup needs.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{SysError, SysResult};

/// Converts a path to a C string; a NUL byte inside is reported as EINVAL naming the call.
pub fn cstr(call: &str, p: impl AsRef<OsStr>) -> SysResult<CString> {
    CString::new(p.as_ref().as_bytes()).map_err(|_| {
        SysError::from_errno(
            format!("{call}({:?}): path contains NUL", p.as_ref()),
            libc::EINVAL,
        )
    })
}

/// Retries a call returning -1/EINTR.
fn retry<F: FnMut() -> libc::c_long>(mut f: F) -> libc::c_long {
    loop {
        let r = f();
        if r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return r;
    }
}

/// `pipe2(O_CLOEXEC)`: (read end, write end).
pub fn pipe() -> SysResult<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if r != 0 {
        return Err(SysError::last("pipe2(O_CLOEXEC)"));
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `close(fd)`, for a descriptor held by number (one taken out of an `OwnedFd` with
/// `into_raw_fd`); an `OwnedFd` closes itself.
pub fn close(fd: RawFd) -> SysResult<()> {
    // SAFETY: integer argument only; the caller gave up every other use of `fd`.
    if unsafe { libc::close(fd) } != 0 {
        return Err(SysError::last(format!("close(fd {fd})")));
    }
    Ok(())
}

/// `socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`: message boundaries are kept.
pub fn seqpacket_pair() -> SysResult<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(SysError::last("socketpair(AF_UNIX, SOCK_SEQPACKET)"));
    }
    // SAFETY: socketpair succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads into `buf`, retrying on EINTR. Returns 0 at end of file.
pub fn read(fd: RawFd, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let r = retry(|| unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) as libc::c_long });
    if r < 0 {
        return Err(SysError::last(format!("read(fd {fd})")));
    }
    Ok(r as usize)
}

/// Writes all of `buf`, retrying on EINTR and short writes.
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> SysResult<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        let r =
            retry(|| unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) as libc::c_long });
        if r < 0 {
            return Err(SysError::last(format!("write(fd {fd})")));
        }
        buf = &buf[r as usize..];
    }
    Ok(())
}

/// `poll` of one fd for `events`, without blocking: the events that are ready.
fn poll_now(fd: RawFd, events: libc::c_short) -> SysResult<libc::c_short> {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd; timeout 0 never blocks.
    let r = retry(|| unsafe { libc::poll(&mut pfd, 1, 0) as libc::c_long });
    if r < 0 {
        return Err(SysError::last(format!("poll(fd {fd}, events {events:#x})")));
    }
    Ok(pfd.revents)
}

/// Whether data is waiting to be read on `fd`, without blocking.
pub fn readable(fd: RawFd) -> SysResult<bool> {
    Ok(poll_now(fd, libc::POLLIN)? & libc::POLLIN != 0)
}

/// Whether a pipe's write side is closed, without blocking: true when a non-blocking read sees
/// end of file. Data in the pipe (which the lifeline never carries) counts as "open".
pub fn pipe_closed(fd: RawFd) -> SysResult<bool> {
    Ok(poll_now(fd, libc::POLLIN)? & (libc::POLLHUP | libc::POLLERR) != 0)
}

/// Blocks until one of `fds` is readable or hung up (a signal ends the wait early: the caller
/// looks again).
pub fn wait_readable(fds: &[RawFd]) -> SysResult<()> {
    let mut raw: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `raw` points to `raw.len()` initialised pollfd structs the kernel may write
    // `revents` into; a negative timeout waits without a bound.
    let r = retry(|| unsafe {
        libc::poll(raw.as_mut_ptr(), raw.len() as libc::nfds_t, -1) as libc::c_long
    });
    if r < 0 {
        return Err(SysError::last(format!("poll({fds:?}, POLLIN)")));
    }
    Ok(())
}

/// `dup2(old, new)`; the new fd does not have FD_CLOEXEC.
pub fn dup2(old: RawFd, new: RawFd) -> SysResult<()> {
    // SAFETY: dup2 only manipulates the fd table; both are plain integers.
    let r = retry(|| unsafe { libc::dup2(old, new) as libc::c_long });
    if r < 0 {
        return Err(SysError::last(format!("dup2({old}, {new})")));
    }
    Ok(())
}

/// A duplicate of `fd` numbered 3 or above, close-on-exec (`fcntl(F_DUPFD_CLOEXEC, 3)`): it
/// cannot collide with a standard descriptor being replaced.
pub fn dup_above_stdio(fd: RawFd) -> SysResult<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC takes integers and returns a new fd.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(SysError::last(format!("fcntl({fd}, F_DUPFD_CLOEXEC, 3)")));
    }
    // SAFETY: the kernel returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Marks every fd from `first` upward close-on-exec (`close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`).
pub fn cloexec_from(first: u32) -> SysResult<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on the fd table.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(SysError::last(format!(
            "close_range({first}, ~0, CLOSE_RANGE_CLOEXEC)"
        )));
    }
    Ok(())
}

/// Clears FD_CLOEXEC on `fd` (used for the fds init keeps across nothing but needs by number).
pub fn set_cloexec(fd: RawFd, on: bool) -> SysResult<()> {
    // SAFETY: fcntl(F_SETFD) only changes the fd's flags.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFD, if on { libc::FD_CLOEXEC } else { 0 }) };
    if r < 0 {
        return Err(SysError::last(format!("fcntl({fd}, F_SETFD)")));
    }
    Ok(())
}

/// Opens `/dev/null` read-only (a program's stdin when it gets none).
pub fn open_dev_null() -> SysResult<OwnedFd> {
    open(Path::new("/dev/null"), libc::O_RDONLY | libc::O_CLOEXEC, 0)
}

/// `open(path, flags, mode)`.
pub fn open(path: &Path, flags: libc::c_int, mode: libc::mode_t) -> SysResult<OwnedFd> {
    let c = cstr("open", path)?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let fd =
        retry(|| unsafe { libc::open(c.as_ptr(), flags, mode as libc::c_uint) as libc::c_long });
    if fd < 0 {
        return Err(SysError::last(format!("open({})", path.display())));
    }
    // SAFETY: open succeeded; the fd is ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Creates or truncates `path` for writing (mode 0666 less the umask, like `File::create`) but
/// never through a symlink as its last component (`O_NOFOLLOW`: ELOOP).
pub fn create_no_follow(path: &Path) -> SysResult<OwnedFd> {
    open(
        path,
        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        0o666,
    )
}

/// `RESOLVE_*` flags of openat2.
pub const RESOLVE_NO_XDEV: u64 = 0x01;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

/// `openat2(dirfd, path, flags, resolve)`. `dirfd` None means the cwd (absolute paths start at /).
pub fn openat2(
    dirfd: Option<RawFd>,
    path: &Path,
    flags: libc::c_int,
    mode: u64,
    resolve: u64,
) -> SysResult<OwnedFd> {
    let c = cstr("openat2", path)?;
    // open_how is non-exhaustive in libc: build it from zeroes.
    // SAFETY: an all-zero open_how is valid (no flags, no mode, no resolve restrictions).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.mode = mode;
    how.resolve = resolve;
    let dir = dirfd.unwrap_or(libc::AT_FDCWD);
    // SAFETY: `c` is NUL-terminated and `how` is a valid open_how of the size passed.
    let fd = retry(|| unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            c.as_ptr(),
            &mut how as *mut libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    });
    if fd < 0 {
        return Err(SysError::last(format!(
            "openat2({}, RESOLVE_NO_SYMLINKS)",
            path.display()
        )));
    }
    // SAFETY: openat2 succeeded; the fd is ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The type of the file an fd refers to (without following anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File,
    Symlink,
    Other,
}

/// `fstat(fd)`: the file's kind.
pub fn fd_kind(fd: RawFd) -> SysResult<FileKind> {
    // SAFETY: an all-zero stat is a valid value for the kernel to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out pointer.
    let r = unsafe { libc::fstat(fd, &mut st) };
    if r < 0 {
        return Err(SysError::last(format!("fstat(fd {fd})")));
    }
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => FileKind::Dir,
        libc::S_IFLNK => FileKind::Symlink,
        libc::S_IFREG => FileKind::File,
        _ => FileKind::Other,
    })
}

/// Who owns a file, and its permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    pub uid: u32,
    pub gid: u32,
    /// The permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// `fstat(fd)`: the file's owner, group and permission bits, as the caller's namespaces see them.
pub fn ownership(fd: RawFd) -> SysResult<Ownership> {
    // SAFETY: an all-zero stat is a valid value for the kernel to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out pointer.
    let r = unsafe { libc::fstat(fd, &mut st) };
    if r < 0 {
        return Err(SysError::last(format!("fstat(fd {fd})")));
    }
    Ok(Ownership {
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode & 0o7777,
    })
}

/// `readlinkat(dirfd, name)`: the target of a symlink (an O_PATH|O_NOFOLLOW fd with "" works).
pub fn readlinkat(dirfd: RawFd, name: &Path) -> SysResult<std::path::PathBuf> {
    let c = cstr("readlinkat", name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `buf` is valid for `buf.len()` bytes; `c` is NUL-terminated.
    let n = unsafe { libc::readlinkat(dirfd, c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(SysError::last(format!(
            "readlinkat(fd {dirfd}, {})",
            name.display()
        )));
    }
    buf.truncate(n as usize);
    let os: std::ffi::OsString = std::os::unix::ffi::OsStringExt::from_vec(buf);
    Ok(std::path::PathBuf::from(os))
}

/// `mkdirat(dirfd, name, mode)`; EEXIST is success.
pub fn mkdirat(dirfd: RawFd, name: &Path, mode: libc::mode_t) -> SysResult<()> {
    let c = cstr("mkdirat", name)?;
    // SAFETY: `c` is NUL-terminated.
    let r = unsafe { libc::mkdirat(dirfd, c.as_ptr(), mode) };
    if r < 0 {
        let e = SysError::last(format!("mkdirat({})", name.display()));
        if e.errno != libc::EEXIST {
            return Err(e);
        }
    }
    Ok(())
}

/// Creates an empty regular file `name` in `dirfd`; an existing entry is fine (EEXIST is
/// success, even on a read-only mount). One `mknodat`, no file opened.
pub fn touchat(dirfd: RawFd, name: &Path, mode: libc::mode_t) -> SysResult<()> {
    let c = cstr("mknodat", name)?;
    // SAFETY: `c` is NUL-terminated; a regular file needs no device number.
    let r = unsafe { libc::mknodat(dirfd, c.as_ptr(), libc::S_IFREG | mode, 0) };
    if r != 0 {
        let e = SysError::last(format!("mknodat({}, S_IFREG)", name.display()));
        if e.errno != libc::EEXIST {
            return Err(e);
        }
    }
    Ok(())
}

/// `symlinkat(target, dirfd, name)`; EEXIST is success.
pub fn symlinkat(target: &Path, dirfd: RawFd, name: &Path) -> SysResult<()> {
    let t = cstr("symlinkat", target)?;
    let n = cstr("symlinkat", name)?;
    // SAFETY: both strings are NUL-terminated.
    let r = unsafe { libc::symlinkat(t.as_ptr(), dirfd, n.as_ptr()) };
    if r < 0 {
        let e = SysError::last(format!(
            "symlinkat({} → {})",
            name.display(),
            target.display()
        ));
        if e.errno != libc::EEXIST {
            return Err(e);
        }
    }
    Ok(())
}

/// `unlinkat(dirfd, name, 0)`.
pub fn unlinkat(dirfd: RawFd, name: &Path) -> SysResult<()> {
    let c = cstr("unlinkat", name)?;
    // SAFETY: `c` is NUL-terminated.
    let r = unsafe { libc::unlinkat(dirfd, c.as_ptr(), 0) };
    if r < 0 {
        return Err(SysError::last(format!("unlinkat({})", name.display())));
    }
    Ok(())
}

/// `/proc/self/fd/N`: names the exact file an fd holds, for calls that only take paths.
pub fn proc_fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Sends `data` as one datagram with `fds` attached (SCM_RIGHTS).
pub fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> SysResult<()> {
    sendmsg_with_fds(sock, data, fds).map(|_| ())
}

/// Sends all of `data` on a stream socket, with `fds` attached (SCM_RIGHTS) to its first byte:
/// a stream `sendmsg` may take only part of the bytes (the fds always travel with that part),
/// so the rest follows with plain writes. Blocks until everything is sent.
pub fn send_all_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> SysResult<()> {
    let sent = sendmsg_with_fds(sock, data, fds)?;
    let mut rest = &data[sent.min(data.len())..];
    while !rest.is_empty() {
        // SAFETY: sends from a live buffer of `rest.len()` bytes.
        let r = retry(|| unsafe {
            libc::send(sock, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) as libc::c_long
        });
        if r < 0 {
            return Err(SysError::last(format!(
                "send(fd {sock}, {} bytes)",
                rest.len()
            )));
        }
        rest = &rest[(r as usize).min(rest.len())..];
    }
    Ok(())
}

/// One `sendmsg` of `data` with `fds` attached; returns how many bytes it took (all of them on
/// a datagram socket, possibly fewer on a stream one).
fn sendmsg_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> SysResult<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let fd_bytes = std::mem::size_of_val(fds) as libc::c_uint;
    let space = if fds.is_empty() {
        0
    } else {
        // SAFETY: CMSG_SPACE is a pure computation.
        let s = unsafe { libc::CMSG_SPACE(fd_bytes) };
        s as usize
    };
    // u64 storage keeps the control buffer aligned for cmsghdr.
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is valid; pointers are filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` bytes, enough for one cmsg holding the fds
        // (CMSG_SPACE), so CMSG_FIRSTHDR is non-null and CMSG_DATA has room for them.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(fd_bytes) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(c),
                fd_bytes as usize,
            );
        }
    }
    // SAFETY: `msg` points at live buffers for the duration of the call.
    let r = retry(|| unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) as libc::c_long });
    if r < 0 {
        return Err(SysError::last(format!(
            "sendmsg(fd {sock}, {} fds)",
            fds.len()
        )));
    }
    Ok(r as usize)
}

/// Most fds one datagram carries (the kernel's `SCM_MAX_FD`); [`recv_with_fds`] has room for
/// them all.
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// Receives one datagram (up to `max` bytes) and the fds attached to it (all made CLOEXEC).
/// An empty Vec of bytes with no fds means the peer closed the socket.
pub fn recv_with_fds(sock: RawFd, max: usize) -> SysResult<(Vec<u8>, Vec<OwnedFd>)> {
    // Not zeroed first: `max` is often far beyond the message (128 KiB for the spawner's), and
    // zeroing touches every page, where the kernel writes only the message's.
    let mut data: Vec<u8> = Vec::with_capacity(max);
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: max,
    };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe {
        libc::CMSG_SPACE((MAX_FDS_PER_MESSAGE * std::mem::size_of::<RawFd>()) as libc::c_uint)
    } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is valid; pointers are filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: `msg` points at live buffers for the duration of the call.
    let n =
        retry(|| unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) as libc::c_long });
    if n < 0 {
        return Err(SysError::last(format!("recvmsg(fd {sock})")));
    }
    // SAFETY: recvmsg wrote the first `n` bytes, and `n` is at most `max`, the capacity.
    unsafe { data.set_len(n as usize) };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with valid cmsg headers up to msg_controllen; the
    // CMSG_* macros walk exactly that buffer, and each SCM_RIGHTS payload holds whole fds.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let payload = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let count = payload / std::mem::size_of::<RawFd>();
                let p = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(p.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((data, fds))
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, 3)`: a close-on-exec duplicate of a descriptor the caller
/// was handed by number (e.g. `--report-fd N`), owned from here on. EBADF when `fd` is not open.
pub fn dup_cloexec(fd: RawFd) -> SysResult<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only manipulates the fd table; `fd` is a plain integer.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        return Err(SysError::last(format!("fcntl({fd}, F_DUPFD_CLOEXEC, 3)")));
    }
    // SAFETY: fcntl returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// `d_type` values of directory entries (each is the `S_IFMT` bits of the mode shifted right by
/// 12, so [`fstatat_type`] returns the same numbers).
pub const DT_UNKNOWN: u8 = 0;
pub const DT_DIR: u8 = 4;
pub const DT_REG: u8 = 8;
pub const DT_SOCK: u8 = 12;

/// `getdents64(fd, buf)`: fills `buf` with directory records; Ok(0) at the end of the directory.
/// Read them with [`dirents`].
pub fn getdents64(fd: RawFd, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let n =
        retry(|| unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) });
    if n < 0 {
        return Err(SysError::last(format!(
            "getdents64(fd {fd}, {} bytes)",
            buf.len()
        )));
    }
    Ok(n as usize)
}

/// The records [`getdents64`] filled into `buf`: `(d_type, name)`, without `.` and `..`.
/// A record that does not parse ends the iteration (the kernel writes none such).
pub fn dirents(buf: &[u8]) -> impl Iterator<Item = (u8, &std::ffi::CStr)> {
    // struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
    const RECLEN: usize = 16;
    const TYPE: usize = 18;
    const NAME: usize = 19;
    let mut rest = buf;
    std::iter::from_fn(move || loop {
        let reclen = usize::from(u16::from_ne_bytes([
            *rest.get(RECLEN)?,
            *rest.get(RECLEN + 1)?,
        ]));
        let record = rest.get(..reclen).filter(|_| reclen > NAME)?;
        rest = &rest[reclen..];
        let name = std::ffi::CStr::from_bytes_until_nul(&record[NAME..]).ok()?;
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        return Some((record[TYPE], name));
    })
}

/// The `st_mode` (type and permission bits) of `name` in `dirfd`, from
/// `fstatat(AT_SYMLINK_NOFOLLOW)`.
pub fn fstatat_mode(dirfd: RawFd, name: &std::ffi::CStr) -> SysResult<u32> {
    // SAFETY: an all-zero stat is a valid value for the kernel to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated and `st` a valid out pointer.
    let r = unsafe { libc::fstatat(dirfd, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if r < 0 {
        return Err(SysError::last(format!(
            "fstatat(fd {dirfd}, {name:?}, AT_SYMLINK_NOFOLLOW)"
        )));
    }
    Ok(st.st_mode)
}

/// The `d_type` of `name` in `dirfd`, from `fstatat(AT_SYMLINK_NOFOLLOW)`: for filesystems whose
/// directory records say [`DT_UNKNOWN`].
pub fn fstatat_type(dirfd: RawFd, name: &std::ffi::CStr) -> SysResult<u8> {
    Ok(((fstatat_mode(dirfd, name)? & libc::S_IFMT) >> 12) as u8)
}

/// Whether `name` in `dirfd` (itself, not a symlink's target) carries the extended attribute
/// `attr`: `lgetxattr("/proc/self/fd/<dirfd>/<name>", attr, NULL, 0)`. A value the caller may not
/// read in its user namespace (`EOVERFLOW`, a file capability of an unmapped root) exists; a
/// filesystem without extended attributes has none.
pub fn has_xattr(dirfd: RawFd, name: &std::ffi::CStr, attr: &std::ffi::CStr) -> SysResult<bool> {
    let mut path = format!("/proc/self/fd/{dirfd}/").into_bytes();
    path.extend_from_slice(name.to_bytes());
    let path = cstr("lgetxattr", OsStr::from_bytes(&path))?;
    // SAFETY: both strings are NUL-terminated; a NULL buffer of size 0 asks only for the size.
    let r = unsafe { libc::lgetxattr(path.as_ptr(), attr.as_ptr(), std::ptr::null_mut(), 0) };
    if r >= 0 {
        return Ok(true);
    }
    let err = SysError::last(format!("lgetxattr({path:?}, {attr:?}, NULL, 0)"));
    match err.errno {
        libc::ENODATA | libc::ENOTSUP => Ok(false),
        libc::EOVERFLOW | libc::ERANGE => Ok(true),
        _ => Err(err),
    }
}

/// Whether the calling thread's effective ids may search (`X_OK`) `path` in `dirfd`, without
/// following a symlink at its end: `faccessat(AT_EACCESS | AT_SYMLINK_NOFOLLOW)`.
pub fn can_search(dirfd: RawFd, path: &Path) -> bool {
    let Ok(c) = cstr("faccessat", path) else {
        return false;
    };
    // SAFETY: `c` is NUL-terminated.
    unsafe {
        libc::faccessat(
            dirfd,
            c.as_ptr(),
            libc::X_OK,
            libc::AT_EACCESS | libc::AT_SYMLINK_NOFOLLOW,
        ) == 0
    }
}

/// `flock(fd, LOCK_EX | LOCK_NB)`: `Ok(true)` when the lock is taken, `Ok(false)` when another
/// open file description holds it. The lock lasts until every descriptor of this open file
/// description is closed (the holder's exit included).
pub fn try_lock_exclusive(fd: RawFd) -> SysResult<bool> {
    // SAFETY: flock takes an fd and flags only.
    let r = retry(|| unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } as libc::c_long);
    if r == 0 {
        return Ok(true);
    }
    let e = SysError::last(format!("flock(fd {fd}, LOCK_EX|LOCK_NB)"));
    if e.errno == libc::EWOULDBLOCK {
        return Ok(false);
    }
    Err(e)
}

/// `F_SETSIG` (Linux; the libc crate does not name it).
const F_SETSIG: libc::c_int = 10;

/// Has the kernel send `signal` to the calling process whenever `fd` (a pipe's read end, say)
/// becomes readable, which includes its write side closing: `F_SETOWN` (self), `F_SETSIG`,
/// then `O_ASYNC`.
pub fn signal_when_readable(fd: RawFd, signal: libc::c_int) -> SysResult<()> {
    // SAFETY: getpid has no arguments and cannot fail.
    let me = unsafe { libc::getpid() };
    // SAFETY: fcntl with integer arguments only changes the fd's owner, signal and flags.
    unsafe {
        if libc::fcntl(fd, libc::F_SETOWN, me) < 0 {
            return Err(SysError::last(format!("fcntl({fd}, F_SETOWN, {me})")));
        }
        if libc::fcntl(fd, F_SETSIG, signal) < 0 {
            return Err(SysError::last(format!("fcntl({fd}, F_SETSIG, {signal})")));
        }
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_ASYNC) < 0 {
            return Err(SysError::last(format!("fcntl({fd}, F_SETFL, O_ASYNC)")));
        }
    }
    Ok(())
}
