//! Landlock: the three syscalls and the rights of each ABI version (linux/landlock.h).
//!
//! A ruleset names the rights it *handles*; after `restrict_self` every handled right is denied
//! except where a rule grants it beneath a path (or on a TCP port). Rights the ruleset does not
//! handle stay unrestricted, so the caller must handle every right its ABI knows.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{SysError, SysResult};

// Filesystem rights (`LANDLOCK_ACCESS_FS_*`), with the ABI that introduced them.
/// ABI 1: execute a file.
pub const FS_EXECUTE: u64 = 1 << 0;
/// ABI 1: open a file for writing.
pub const FS_WRITE_FILE: u64 = 1 << 1;
/// ABI 1: open a file for reading.
pub const FS_READ_FILE: u64 = 1 << 2;
/// ABI 1: list a directory.
pub const FS_READ_DIR: u64 = 1 << 3;
/// ABI 1: remove a directory.
pub const FS_REMOVE_DIR: u64 = 1 << 4;
/// ABI 1: remove (unlink) a file.
pub const FS_REMOVE_FILE: u64 = 1 << 5;
/// ABI 1: create a character device.
pub const FS_MAKE_CHAR: u64 = 1 << 6;
/// ABI 1: create a directory.
pub const FS_MAKE_DIR: u64 = 1 << 7;
/// ABI 1: create a regular file.
pub const FS_MAKE_REG: u64 = 1 << 8;
/// ABI 1: create a unix socket.
pub const FS_MAKE_SOCK: u64 = 1 << 9;
/// ABI 1: create a named pipe.
pub const FS_MAKE_FIFO: u64 = 1 << 10;
/// ABI 1: create a block device.
pub const FS_MAKE_BLOCK: u64 = 1 << 11;
/// ABI 1: create a symbolic link.
pub const FS_MAKE_SYM: u64 = 1 << 12;
/// ABI 2: link or rename a file into another directory.
pub const FS_REFER: u64 = 1 << 13;
/// ABI 3: truncate a file.
pub const FS_TRUNCATE: u64 = 1 << 14;
/// ABI 5: ioctl on a character or block device.
pub const FS_IOCTL_DEV: u64 = 1 << 15;

/// ABI 4: bind a TCP socket to a port.
pub const NET_BIND_TCP: u64 = 1 << 0;
/// ABI 4: connect a TCP socket to a port.
pub const NET_CONNECT_TCP: u64 = 1 << 1;

/// ABI 6: no connecting to abstract unix sockets created outside the domain.
pub const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
/// ABI 6: no signals to processes outside the domain.
pub const SCOPE_SIGNAL: u64 = 1 << 1;

/// The rights that apply to a non-directory (the kernel refuses directory rights on a file).
pub const FS_FILE_RIGHTS: u64 =
    FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV;

const CREATE_RULESET_VERSION: u32 = 1 << 0;
const RULE_PATH_BENEATH: libc::c_int = 1;
const RULE_NET_PORT: libc::c_int = 2;

/// Every filesystem right landlock knows at `abi`.
pub fn fs_rights_for_abi(abi: u32) -> u64 {
    let mut rights = 0;
    if abi >= 1 {
        rights |= (1 << 13) - 1;
    }
    if abi >= 2 {
        rights |= FS_REFER;
    }
    if abi >= 3 {
        rights |= FS_TRUNCATE;
    }
    if abi >= 5 {
        rights |= FS_IOCTL_DEV;
    }
    rights
}

/// Every network right landlock knows at `abi`.
pub fn net_rights_for_abi(abi: u32) -> u64 {
    if abi >= 4 {
        NET_BIND_TCP | NET_CONNECT_TCP
    } else {
        0
    }
}

/// Every scope landlock knows at `abi`.
pub fn scopes_for_abi(abi: u32) -> u64 {
    if abi >= 6 {
        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
    } else {
        0
    }
}

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

#[repr(C)]
struct NetPortAttr {
    allowed_access: u64,
    port: u64,
}

/// The landlock ABI version of the running kernel; 0 when landlock is not built in or disabled
/// at boot.
pub fn abi_version() -> SysResult<u32> {
    // SAFETY: a NULL attribute with size 0 and the VERSION flag is the documented way to query
    // the ABI; the kernel reads no memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if rc < 0 {
        let err =
            SysError::last("landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)");
        return match err.errno {
            libc::ENOSYS | libc::EOPNOTSUPP => Ok(0),
            _ => Err(err),
        };
    }
    Ok(rc as u32)
}

/// A landlock ruleset being filled.
#[derive(Debug)]
pub struct Ruleset {
    fd: OwnedFd,
}

impl Ruleset {
    /// Creates a ruleset handling these rights. Pass only rights of the running ABI.
    pub fn create(handled_fs: u64, handled_net: u64, scoped: u64) -> SysResult<Ruleset> {
        let attr = RulesetAttr {
            handled_access_fs: handled_fs,
            handled_access_net: handled_net,
            scoped,
        };
        // Older kernels accept a shorter struct only: pass just the fields in use.
        let size = if scoped != 0 {
            24
        } else if handled_net != 0 {
            16
        } else {
            8
        };
        // SAFETY: `attr` is a live, properly aligned landlock_ruleset_attr and `size` is at most
        // its size; the kernel copies it and returns a new fd it owns no pointer into.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                size as usize,
                0u32,
            )
        };
        if rc < 0 {
            return Err(SysError::last(format!(
                "landlock_create_ruleset(fs={handled_fs:#x}, net={handled_net:#x}, scoped={scoped:#x})"
            )));
        }
        // SAFETY: the syscall returned a new file descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(rc as i32) };
        Ok(Ruleset { fd })
    }

    /// Grants `allowed` beneath the file or directory open at `parent` (an O_PATH fd); `path` is
    /// only used to name it in errors.
    pub fn add_path(&self, parent: &OwnedFd, allowed: u64, path: &Path) -> SysResult<()> {
        let attr = PathBeneathAttr {
            allowed_access: allowed,
            parent_fd: parent.as_raw_fd(),
        };
        // SAFETY: `attr` is a live landlock_path_beneath_attr (packed, as the kernel declares
        // it); both fds are open for the duration of the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.fd.as_raw_fd(),
                RULE_PATH_BENEATH,
                &attr as *const PathBeneathAttr,
                0u32,
            )
        };
        if rc < 0 {
            return Err(SysError::last(format!(
                "landlock_add_rule(PATH_BENEATH, {}, {allowed:#x})",
                path.display()
            )));
        }
        Ok(())
    }

    /// Grants `allowed` (network rights) for TCP port `port`.
    pub fn add_port(&self, port: u16, allowed: u64) -> SysResult<()> {
        let attr = NetPortAttr {
            allowed_access: allowed,
            port: u64::from(port),
        };
        // SAFETY: `attr` is a live landlock_net_port_attr; the ruleset fd is open.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.fd.as_raw_fd(),
                RULE_NET_PORT,
                &attr as *const NetPortAttr,
                0u32,
            )
        };
        if rc < 0 {
            return Err(SysError::last(format!(
                "landlock_add_rule(NET_PORT, {port}, {allowed:#x})"
            )));
        }
        Ok(())
    }

    /// Enforces the ruleset on the calling thread and its future children. Needs no_new_privs
    /// (or CAP_SYS_ADMIN in the current user namespace).
    pub fn restrict_self(self) -> SysResult<()> {
        // SAFETY: integer arguments only; the ruleset fd is open.
        let rc =
            unsafe { libc::syscall(libc::SYS_landlock_restrict_self, self.fd.as_raw_fd(), 0u32) };
        if rc < 0 {
            return Err(SysError::last("landlock_restrict_self(ruleset, 0)"));
        }
        Ok(())
    }
}

/// What [`open_path`] found.
#[derive(Debug)]
pub struct PathHandle {
    pub fd: OwnedFd,
    pub is_dir: bool,
    /// A symbolic link itself (only with `follow == false`).
    pub is_symlink: bool,
}

/// Opens `path` with O_PATH (no read permission needed) for [`Ruleset::add_path`], following a
/// final symlink only when `follow` is set.
pub fn open_path(path: &Path, follow: bool) -> SysResult<PathHandle> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        SysError::from_errno(format!("open({}, O_PATH)", path.display()), libc::EINVAL)
    })?;
    let mut flags = libc::O_PATH | libc::O_CLOEXEC;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    // SAFETY: `c_path` is a NUL-terminated string that lives across the call.
    let fd = unsafe { libc::open(c_path.as_ptr(), flags) };
    if fd < 0 {
        return Err(SysError::last(format!("open({}, O_PATH)", path.display())));
    }
    // SAFETY: open returned a new file descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` is a live, writable stat buffer.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) };
    if rc != 0 {
        return Err(SysError::last(format!("fstat({})", path.display())));
    }
    let kind = st.st_mode & libc::S_IFMT;
    Ok(PathHandle {
        fd,
        is_dir: kind == libc::S_IFDIR,
        is_symlink: kind == libc::S_IFLNK,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_grow_with_the_abi() {
        assert_eq!(fs_rights_for_abi(0), 0);
        assert_eq!(fs_rights_for_abi(1), 0x1fff);
        assert_eq!(fs_rights_for_abi(2), 0x3fff);
        assert_eq!(fs_rights_for_abi(3), 0x7fff);
        assert_eq!(fs_rights_for_abi(4), 0x7fff);
        assert_eq!(fs_rights_for_abi(5), 0xffff);
        assert_eq!(net_rights_for_abi(3), 0);
        assert_eq!(net_rights_for_abi(4), 3);
        assert_eq!(scopes_for_abi(5), 0);
        assert_eq!(scopes_for_abi(6), 3);
    }

    #[test]
    fn abi_version_is_queried_without_side_effects() {
        // The VM this project targets has landlock; elsewhere 0 is a valid answer.
        let abi = abi_version().unwrap();
        assert!(abi <= 64, "implausible ABI {abi}");
    }

    #[test]
    fn open_path_tells_files_dirs_and_links_apart() {
        let dir = tempfile_dir();
        let file = dir.join("f");
        std::fs::write(&file, "x").unwrap();
        let link = dir.join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(open_path(&dir, true).unwrap().is_dir);
        let f = open_path(&file, true).unwrap();
        assert!(!f.is_dir && !f.is_symlink);
        assert!(open_path(&link, false).unwrap().is_symlink);
        assert!(!open_path(&link, true).unwrap().is_symlink);
        let err = open_path(&dir.join("missing"), true).unwrap_err();
        assert_eq!(err.errno, libc::ENOENT);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("bunker-sys-landlock-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
