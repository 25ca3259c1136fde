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
    let empty = c"";
    let mut attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
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
    if set != 0 {
        set_tree_attrs(tree.as_raw_fd(), set, 0, what)?;
    }
    Ok(tree)
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, set, clear)`: changes the flags of
/// every mount in the tree at `fd`. Only adds or clears what is named, so flags the kernel
/// locked on mounts from a more privileged namespace are never touched.
pub fn set_tree_attrs(fd: RawFd, set: u64, clear: u64, what: &Path) -> SysResult<()> {
    let empty = c"";
    let mut attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `attr` is a valid mount_attr of the size passed; `empty` is NUL-terminated.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            empty.as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &mut attr as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(SysError::last(format!(
            "mount_setattr({}, set {set:#x}, clear {clear:#x}, AT_RECURSIVE)",
            what.display()
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
