//! Terminals and the caller's stdin: what kind of file fd 0 is, termios and raw mode, window
//! size, job control, and a pseudo-terminal pair of bunker's own.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::error::{SysError, SysResult};

/// What the caller's stdin is, as far as handing it to a sandboxed program goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinKind {
    /// Not open, or `/dev/null`: the program gets its own `/dev/null`.
    Nothing,
    /// A pipe, or a regular file or FIFO, open read-only, whose inode the sandbox cannot change
    /// either: nothing written to it can reach anyone, so the program may read it directly
    /// (seeking and `fstat` keep working).
    ReadOnlyData,
    /// A terminal.
    Terminal,
    /// Anything else (a socket, a character device, a file open for writing, a file the
    /// sandbox's host uid owns or may write): the program could write through it, or change
    /// the host file's mode, times or extended attributes with `fchmod`, `futimens` or
    /// `fsetxattr` on a read-only descriptor, so it only gets the bytes.
    Other,
}

/// `f_type` of the filesystem that holds the pipes `pipe(2)` makes (no host file behind them).
const PIPEFS_MAGIC: libc::c_long = 0x5049_5045;

/// Whether a process running as host uid `uid` could change the inode of `fd` without opening
/// it again: as its owner (`fchmod`, `futimens`, `fsetxattr` need no write access), or through
/// a write permission for its group, for others or in an ACL (user extended attributes and
/// times then). Conservative: any group or other write bit counts, whatever the groups.
fn inode_changeable_by(fd: RawFd, st: &libc::stat, uid: u32) -> bool {
    // SAFETY: an all-zero statfs is a valid value for the kernel to overwrite.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fs` is a valid out pointer.
    if unsafe { libc::fstatfs(fd, &mut fs) } == 0 && fs.f_type == PIPEFS_MAGIC {
        return false;
    }
    let name = c"system.posix_acl_access";
    // SAFETY: a size query (null buffer, size 0) writes nothing.
    let acl = unsafe { libc::fgetxattr(fd, name.as_ptr(), std::ptr::null_mut(), 0) } >= 0;
    st.st_uid == uid || st.st_mode & 0o022 != 0 || acl
}

/// Classifies `fd` (fstat and its access mode) for a sandbox that runs as host uid
/// `sandbox_uid`.
pub fn stdin_kind(fd: BorrowedFd<'_>, sandbox_uid: u32) -> StdinKind {
    let raw = fd.as_raw_fd();
    // SAFETY: an all-zero stat is a valid value for the kernel to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out pointer.
    if unsafe { libc::fstat(raw, &mut st) } < 0 {
        return StdinKind::Nothing;
    }
    // SAFETY: F_GETFL on a valid fd has no memory effects.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    let read_only = flags >= 0 && flags & libc::O_ACCMODE == libc::O_RDONLY;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFIFO
            if read_only && !inode_changeable_by(raw, &st, sandbox_uid) =>
        {
            StdinKind::ReadOnlyData
        }
        libc::S_IFCHR if st.st_rdev == libc::makedev(1, 3) => StdinKind::Nothing,
        libc::S_IFCHR if is_terminal(fd) => StdinKind::Terminal,
        _ => StdinKind::Other,
    }
}

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: isatty only issues TCGETS into its own buffer.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// `tcgetattr(fd)`.
pub fn termios(fd: BorrowedFd<'_>) -> SysResult<libc::termios> {
    let raw = fd.as_raw_fd();
    // SAFETY: an all-zero termios is a valid value for the kernel to overwrite.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid out pointer.
    if unsafe { libc::tcgetattr(raw, &mut t) } < 0 {
        return Err(SysError::last(format!("tcgetattr({raw})")));
    }
    Ok(t)
}

/// `tcsetattr(fd, TCSANOW, t)`.
pub fn set_termios(fd: BorrowedFd<'_>, t: &libc::termios) -> SysResult<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: `t` is a valid termios for the call.
    if unsafe { libc::tcsetattr(raw, libc::TCSANOW, t) } < 0 {
        return Err(SysError::last(format!("tcsetattr({raw}, TCSANOW)")));
    }
    Ok(())
}

/// `t` in raw mode (cfmakeraw: bytes pass one by one, no echo, no signals from keys).
pub fn raw_mode(t: &libc::termios) -> libc::termios {
    let mut raw = *t;
    // SAFETY: `raw` is a valid termios to modify in place.
    unsafe { libc::cfmakeraw(&mut raw) };
    raw
}

/// `ioctl(fd, TIOCGWINSZ)`.
pub fn window_size(fd: BorrowedFd<'_>) -> SysResult<libc::winsize> {
    let raw = fd.as_raw_fd();
    // SAFETY: an all-zero winsize is a valid value for the kernel to overwrite.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the valid out pointer.
    if unsafe { libc::ioctl(raw, libc::TIOCGWINSZ, &mut ws) } < 0 {
        return Err(SysError::last(format!("ioctl({raw}, TIOCGWINSZ)")));
    }
    Ok(ws)
}

/// `ioctl(fd, TIOCSWINSZ, ws)`.
pub fn set_window_size(fd: BorrowedFd<'_>, ws: &libc::winsize) -> SysResult<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: TIOCSWINSZ reads a winsize from the valid pointer.
    if unsafe { libc::ioctl(raw, libc::TIOCSWINSZ, ws) } < 0 {
        return Err(SysError::last(format!("ioctl({raw}, TIOCSWINSZ)")));
    }
    Ok(())
}

/// Whether reading the terminal `fd` now would stop the calling process (SIGTTIN): it is the
/// caller's controlling terminal and another process group is in its foreground.
pub fn read_would_stop(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: tcgetpgrp and getpgrp take integers and have no memory effects.
    let (foreground, own) = unsafe { (libc::tcgetpgrp(fd.as_raw_fd()), libc::getpgrp()) };
    // tcgetpgrp fails (ENOTTY) on a terminal that is not the caller's controlling one.
    foreground >= 0 && foreground != own
}

/// Bytes that can be read from `fd` without blocking (`ioctl(FIONREAD)`): for a terminal in
/// canonical mode, those of complete lines.
pub fn readable_bytes(fd: BorrowedFd<'_>) -> SysResult<usize> {
    let raw = fd.as_raw_fd();
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes an int into the valid out pointer.
    if unsafe { libc::ioctl(raw, libc::FIONREAD, &mut n) } < 0 {
        return Err(SysError::last(format!("ioctl({raw}, FIONREAD)")));
    }
    Ok(n.max(0) as usize)
}

/// A new pseudo-terminal from the host's `/dev/ptmx`: (master, slave), both close-on-exec and
/// neither a controlling terminal of the caller. The slave is opened through the master
/// (TIOCGPTPEER), not by path.
pub fn open_pty() -> SysResult<(OwnedFd, OwnedFd)> {
    let master = crate::fd::open(
        std::path::Path::new("/dev/ptmx"),
        libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        0,
    )?;
    let raw = master.as_raw_fd();
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int from the valid pointer.
    if unsafe { libc::ioctl(raw, libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(SysError::last(format!("ioctl({raw}, TIOCSPTLCK, 0)")));
    }
    // SAFETY: TIOCGPTPEER takes open flags as an integer and returns a new fd.
    let slave = unsafe {
        libc::ioctl(
            raw,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(SysError::last(format!(
            "ioctl({raw}, TIOCGPTPEER, O_RDWR|O_NOCTTY)"
        )));
    }
    // SAFETY: the kernel returned a fresh fd that nothing else owns.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave as RawFd) }))
}

/// Which inode a pty slave is: its devpts instance and inode, and its number there
/// (`/dev/pts/<number>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaveId {
    pub dev: u64,
    pub ino: u64,
    pub number: u32,
}

/// Major device number of Unix 98 pty slaves; the minor is the slave's number in its devpts.
const PTY_SLAVE_MAJOR: u32 = 136;

/// The [`SlaveId`] of `fd`, or None when it is no pty slave.
pub fn slave_id(raw: RawFd) -> SysResult<Option<SlaveId>> {
    // SAFETY: an all-zero stat is a valid value for the kernel to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out pointer.
    if unsafe { libc::fstat(raw, &mut st) } < 0 {
        return Err(SysError::last(format!("fstat({raw})")));
    }
    let is_slave =
        st.st_mode & libc::S_IFMT == libc::S_IFCHR && libc::major(st.st_rdev) == PTY_SLAVE_MAJOR;
    Ok(is_slave.then(|| SlaveId {
        dev: st.st_dev,
        ino: st.st_ino,
        number: libc::minor(st.st_rdev),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_pty_is_a_terminal_in_the_foreground_of_nobody() {
        let (master, slave) = open_pty().unwrap();
        assert!(is_terminal(slave.as_fd()));
        assert_eq!(stdin_kind(slave.as_fd(), NOBODY), StdinKind::Terminal);
        let t = termios(slave.as_fd()).unwrap();
        let raw = raw_mode(&t);
        assert_eq!(raw.c_lflag & libc::ECHO, 0);
        set_termios(slave.as_fd(), &raw).unwrap();
        assert_eq!(termios(slave.as_fd()).unwrap().c_lflag & libc::ECHO, 0);
        let ws = libc::winsize {
            ws_row: 33,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        set_window_size(master.as_fd(), &ws).unwrap();
        assert_eq!(window_size(slave.as_fd()).unwrap().ws_col, 101);
        assert_eq!(readable_bytes(slave.as_fd()).unwrap(), 0);
        let id = slave_id(slave.as_raw_fd()).unwrap().unwrap();
        let by_path = std::fs::File::open(format!("/dev/pts/{}", id.number)).unwrap();
        assert_eq!(slave_id(by_path.as_raw_fd()).unwrap(), Some(id));
        assert_eq!(slave_id(master.as_raw_fd()).unwrap(), None);
    }

    /// A uid that owns none of the files these tests open.
    const NOBODY: u32 = 65534;

    #[test]
    fn stdin_kinds() {
        let (r, w) = std::io::pipe().unwrap();
        assert_eq!(stdin_kind(r.as_fd(), NOBODY), StdinKind::ReadOnlyData);
        // An anonymous pipe has no host file behind it, whoever owns it.
        let me = crate::process::euid();
        assert_eq!(stdin_kind(r.as_fd(), me), StdinKind::ReadOnlyData);
        // The write end of a pipe is something the program could write through.
        assert_eq!(stdin_kind(w.as_fd(), NOBODY), StdinKind::Other);
        let null = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(stdin_kind(null.as_fd(), NOBODY), StdinKind::Nothing);
        let file = std::fs::File::open("/etc/passwd").unwrap();
        assert_eq!(stdin_kind(file.as_fd(), NOBODY), StdinKind::ReadOnlyData);
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(stdin_kind(a.as_fd(), NOBODY), StdinKind::Other);
        let zero = std::fs::File::open("/dev/zero").unwrap();
        assert_eq!(stdin_kind(zero.as_fd(), NOBODY), StdinKind::Other);
    }

    #[test]
    fn a_file_the_sandbox_could_change_is_relayed() {
        let path = std::env::temp_dir().join(format!("bunker-stdin-kind-{}", std::process::id()));
        std::fs::write(&path, "x").unwrap();
        let mode = |m| {
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(m))
                .unwrap()
        };
        let me = crate::process::euid();
        mode(0o644);
        let file = std::fs::File::open(&path).unwrap();
        // Its owner may fchmod it through a read-only descriptor.
        assert_eq!(stdin_kind(file.as_fd(), me), StdinKind::Other);
        assert_eq!(stdin_kind(file.as_fd(), me + 1), StdinKind::ReadOnlyData);
        // Anyone may set user xattrs and times of a file they may write.
        for writable in [0o664, 0o646] {
            mode(writable);
            assert_eq!(stdin_kind(file.as_fd(), me + 1), StdinKind::Other);
        }
        std::fs::remove_file(&path).unwrap();
    }
}
