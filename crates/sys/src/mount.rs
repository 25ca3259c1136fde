//! Mounts: the classic `mount(2)`, the fd-based mount API (`open_tree`, `mount_setattr`,
//! `move_mount`) that lets a bind be made read-only *before* it is attached, and `pivot_root`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::error::{SysError, SysResult};
use crate::fd::cstr;

/// `MOUNT_ATTR_*` flags of `mount_setattr`.
pub const MOUNT_ATTR_RDONLY: u64 = 0x01;
pub const MOUNT_ATTR_NOSUID: u64 = 0x02;
pub const MOUNT_ATTR_NODEV: u64 = 0x04;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x08;
/// The mount shows the filesystem's ids through a user namespace's id map
/// ([`idmap_tree`]).
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount(source, target, fstype, flags, data)`. `what` names the step in the error
/// ("mount tmpfs on /tmp").
pub fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> SysResult<()> {
    let src = source.map(|s| cstr("mount", s)).transpose()?;
    let tgt = cstr("mount", target)?;
    let fs = fstype.map(|s| cstr("mount", s)).transpose()?;
    let dat = data.map(|s| cstr("mount", s)).transpose()?;
    // SAFETY: every pointer is either null or a NUL-terminated string that outlives the call.
    let r = unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            tgt.as_ptr(),
            fs.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            dat.as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr().cast::<libc::c_void>()),
        )
    };
    if r != 0 {
        return Err(SysError::last(format!(
            "mount({}, {target}, {}, {}{})",
            source.unwrap_or("none"),
            fstype.unwrap_or("none"),
            ms_flags_str(flags),
            data.map(|d| format!(", {d}")).unwrap_or_default()
        )));
    }
    Ok(())
}

/// Names of the `MS_*` flags in `flags`.
pub fn ms_flags_str(flags: libc::c_ulong) -> String {
    let names = [
        (libc::MS_RDONLY, "MS_RDONLY"),
        (libc::MS_NOSUID, "MS_NOSUID"),
        (libc::MS_NODEV, "MS_NODEV"),
        (libc::MS_NOEXEC, "MS_NOEXEC"),
        (libc::MS_REMOUNT, "MS_REMOUNT"),
        (libc::MS_BIND, "MS_BIND"),
        (libc::MS_REC, "MS_REC"),
        (libc::MS_PRIVATE, "MS_PRIVATE"),
        (libc::MS_SLAVE, "MS_SLAVE"),
    ];
    crate::error::flag_names(flags, &names)
}

/// The flags of every tree clone: a detached (`OPEN_TREE_CLONE`) recursive copy, so mounts
/// locked in a user namespace stay covered.
const CLONE_FLAGS: libc::c_uint = OPEN_TREE_CLONE
    | libc::O_CLOEXEC as libc::c_uint
    | libc::AT_RECURSIVE as libc::c_uint
    | libc::AT_EMPTY_PATH as libc::c_uint;

/// `open_tree(fd, "", OPEN_TREE_CLONE | AT_RECURSIVE | AT_EMPTY_PATH)`: a detached copy of the
/// mount tree at `fd`.
pub fn clone_tree(fd: RawFd, what: &Path) -> SysResult<OwnedFd> {
    let empty = c"";
    // SAFETY: `empty` is NUL-terminated; integer flags.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, fd, empty.as_ptr(), CLONE_FLAGS) };
    if r < 0 {
        return Err(SysError::last(format!(
            "open_tree({}, OPEN_TREE_CLONE|AT_RECURSIVE)",
            what.display()
        )));
    }
    // SAFETY: open_tree succeeded; the fd is ours.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// `open_tree_attr` (Linux 6.15), the syscall number on x86_64.
const SYS_OPEN_TREE_ATTR: libc::c_long = 467;

/// [`clone_tree`] with `set` added to every mount of the copy (nothing cleared): one
/// `open_tree_attr` where the kernel has it, else (ENOSYS) `open_tree` then [`set_tree_attrs`].
pub fn clone_tree_with_attrs(fd: RawFd, set: u64, what: &Path) -> SysResult<OwnedFd> {
    clone_tree_attr(fd, set, 0, what)
}

/// [`clone_tree_with_attrs`], and every mount of the copy made `MS_PRIVATE`: a copy made in a
/// namespace whose mounts are shared (the host's, where systemd makes `/` shared) would
/// otherwise join their peer groups, and a mount made on the copy once it is attached in the
/// sandbox would propagate back to the host.
pub fn clone_private_tree(fd: RawFd, set: u64, what: &Path) -> SysResult<OwnedFd> {
    clone_tree_attr(fd, set, libc::MS_PRIVATE, what)
}

fn clone_tree_attr(fd: RawFd, set: u64, propagation: u64, what: &Path) -> SysResult<OwnedFd> {
    let empty = c"";
    let mut attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation,
        userns_fd: 0,
    };
    // SAFETY: `empty` is NUL-terminated; `attr` is a valid mount_attr of the size passed.
    let r = unsafe {
        libc::syscall(
            SYS_OPEN_TREE_ATTR,
            fd,
            empty.as_ptr(),
            CLONE_FLAGS,
            &mut attr as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r >= 0 {
        // SAFETY: open_tree_attr succeeded; the fd is ours.
        return Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) });
    }
    let e = SysError::last(format!(
        "open_tree_attr({}, OPEN_TREE_CLONE|AT_RECURSIVE)",
        what.display()
    ));
    if e.errno != libc::ENOSYS {
        return Err(e);
    }
    let tree = clone_tree(fd, what)?;
    if set != 0 || propagation != 0 {
        setattr(tree.as_raw_fd(), &mut attr, what)?;
    }
    Ok(tree)
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, MOUNT_ATTR_IDMAP, userns)`: every mount
/// of the *detached* tree at `fd` shows its filesystem's ids through the id map of the user
/// namespace `userns` (an id `n` on disk appears as what `n` maps to, and a file created by that
/// id is stored as `n`). Needs `CAP_SYS_ADMIN` over the filesystems' user namespace (the initial
/// one for the host's disks), and a filesystem that supports it (EINVAL otherwise).
pub fn idmap_tree(fd: RawFd, userns: RawFd, what: &Path) -> SysResult<()> {
    let mut attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns as u64,
    };
    setattr(fd, &mut attr, what)
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, set, clear)`: changes the flags of
/// every mount in the tree at `fd`. Only adds or clears what is named, so flags the kernel
/// locked on mounts from a more privileged namespace are never touched.
pub fn set_tree_attrs(fd: RawFd, set: u64, clear: u64, what: &Path) -> SysResult<()> {
    let mut attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    setattr(fd, &mut attr, what)
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, attr)`.
fn setattr(fd: RawFd, attr: &mut MountAttr, what: &Path) -> SysResult<()> {
    let empty = c"";
    // SAFETY: `attr` is a valid mount_attr of the size passed; `empty` is NUL-terminated.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            empty.as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            attr as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(SysError::last(format!(
            "mount_setattr({}, set {:#x}, clear {:#x}, propagation {:#x}, userns fd {}, \
             AT_RECURSIVE)",
            what.display(),
            attr.attr_set,
            attr.attr_clr,
            attr.propagation,
            attr.userns_fd
        )));
    }
    Ok(())
}

/// `move_mount(tree, "", target, "", F_EMPTY_PATH | T_EMPTY_PATH)`: attaches a detached tree
/// on the directory or file that the O_PATH fd `target` holds (no path lookup, so no symlink).
pub fn attach_tree(tree: &OwnedFd, target: &OwnedFd, what: &Path) -> SysResult<()> {
    let empty = c"";
    // SAFETY: both fds are valid; `empty` is NUL-terminated.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(SysError::last(format!("move_mount(→ {})", what.display())));
    }
    Ok(())
}

/// `pivot_root(".", ".")` from inside the new root, then `umount2(".", MNT_DETACH)`: the old
/// root is stacked under the new one and detached, without needing a directory for it.
pub fn pivot_root_here() -> SysResult<()> {
    let dot = c".";
    // SAFETY: NUL-terminated strings.
    let r = unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) };
    if r != 0 {
        return Err(SysError::last("pivot_root(., .)"));
    }
    // SAFETY: NUL-terminated string.
    if unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(SysError::last("umount2(old root, MNT_DETACH)"));
    }
    Ok(())
}

/// `statx` mask bit for the 64-bit mount id that `statmount` takes (Linux 6.8).
const STATX_MNT_ID_UNIQUE: libc::c_uint = 0x4000;
const SYS_STATMOUNT: libc::c_long = 457;
/// `struct mnt_id_req`, first version (no namespace id).
const MNT_ID_REQ_SIZE_VER0: u32 = 24;
const STATMOUNT_MNT_ROOT: u64 = 0x08;
const STATMOUNT_FS_TYPE: u64 = 0x20;
const STATMOUNT_MNT_OPTS: u64 = 0x80;
/// Offsets in `struct statmount` (include/uapi/linux/mount.h); its strings follow the 512-byte
/// fixed part, each field holding an offset into them.
const SM_MASK: usize = 8;
const SM_MNT_OPTS: usize = 4;
const SM_FS_TYPE: usize = 36;
const SM_MNT_ROOT: usize = 104;
const SM_STRINGS: usize = 512;

/// What `statmount` says about one mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountFacts {
    /// `cgroup`, `cgroup2`, `tmpfs`…
    pub fs_type: String,
    /// The part of the filesystem mounted (`/` for all of it).
    pub root: String,
    /// The filesystem's own options, comma-separated (for a v1 cgroup hierarchy: its
    /// controllers, among others).
    pub options: String,
}

/// The mount whose root `path` is (symlinks followed), from `statx` and `statmount` — one mount
/// looked up, where `/proc/self/mountinfo` formats every mount of the namespace. `Ok(None)`
/// when `path` is not the root of a mount. Needs Linux 6.8 (the options: 6.11); older kernels
/// give an error (ENOSYS, or EINVAL for the statx mask).
pub fn mount_facts(path: &Path) -> SysResult<Option<MountFacts>> {
    let c = cstr("statx", path)?;
    // SAFETY: an all-zero statx is a valid output buffer.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path, `stx` a statx buffer.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_STATX_SYNC_AS_STAT,
            STATX_MNT_ID_UNIQUE,
            &mut stx,
        )
    };
    if r != 0 {
        return Err(SysError::last(format!("statx({})", path.display())));
    }
    if stx.stx_mask & STATX_MNT_ID_UNIQUE == 0 {
        return Err(SysError::from_errno(
            format!("statx({}): no unique mount id", path.display()),
            libc::ENOSYS,
        ));
    }
    let mount_root = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if stx.stx_attributes_mask & mount_root == 0 {
        return Err(SysError::from_errno(
            format!("statx({}): no mount-root attribute", path.display()),
            libc::ENOSYS,
        ));
    }
    if stx.stx_attributes & mount_root == 0 {
        return Ok(None);
    }
    let wanted = STATMOUNT_MNT_ROOT | STATMOUNT_FS_TYPE | STATMOUNT_MNT_OPTS;
    // struct mnt_id_req { u32 size; u32 spare; u64 mnt_id; u64 param; }
    let req: [u64; 3] = [u64::from(MNT_ID_REQ_SIZE_VER0), stx.stx_mnt_id, wanted];
    let mut buf = vec![0u64; 1024];
    let len = buf.len() * 8;
    // SAFETY: `req` is a mnt_id_req of the size it states (on little-endian x86_64 its first
    // word is `size` then `spare`); `buf` is a writable, 8-aligned buffer of `len` bytes.
    let r = unsafe {
        libc::syscall(
            SYS_STATMOUNT,
            req.as_ptr(),
            buf.as_mut_ptr(),
            len,
            0 as libc::c_uint,
        )
    };
    if r != 0 {
        return Err(SysError::last(format!(
            "statmount(mount {} of {})",
            stx.stx_mnt_id,
            path.display()
        )));
    }
    // SAFETY: the u64 buffer viewed as its `len` bytes, read-only while `buf` lives.
    let bytes: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
    let u32_at =
        |at: usize| u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let mask = u64::from(u32_at(SM_MASK)) | (u64::from(u32_at(SM_MASK + 4)) << 32);
    let string = |field: usize, bit: u64| -> String {
        if mask & bit == 0 {
            return String::new();
        }
        let start = SM_STRINGS + u32_at(field) as usize;
        let tail = bytes.get(start..).unwrap_or_default();
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        String::from_utf8_lossy(&tail[..end]).into_owned()
    };
    if mask & (STATMOUNT_MNT_ROOT | STATMOUNT_FS_TYPE) != STATMOUNT_MNT_ROOT | STATMOUNT_FS_TYPE {
        return Err(SysError::from_errno(
            format!("statmount({}): root or type missing", path.display()),
            libc::ENOSYS,
        ));
    }
    Ok(Some(MountFacts {
        fs_type: string(SM_FS_TYPE, STATMOUNT_FS_TYPE),
        root: string(SM_MNT_ROOT, STATMOUNT_MNT_ROOT),
        options: string(SM_MNT_OPTS, STATMOUNT_MNT_OPTS),
    }))
}

#[cfg(test)]
mod statmount_tests {
    use super::*;

    #[test]
    fn mount_facts_of_the_root_and_of_a_plain_directory() {
        let root = mount_facts(Path::new("/")).expect("statmount on Linux ≥ 6.8");
        let root = root.expect("/ is a mount root");
        assert_eq!(root.root, "/");
        assert!(!root.fs_type.is_empty());
        // /proc is always its own mount; a directory inside it is not a mount root.
        assert_eq!(
            mount_facts(Path::new("/proc")).unwrap().unwrap().fs_type,
            "proc"
        );
        assert_eq!(mount_facts(Path::new("/proc/self/fd")).unwrap(), None);
    }
}
