//! User and group id maps of the sandbox's user namespace, written by the supervisor.
//!
//! Inside, the program is uid/gid 0 of its own namespace (which gives no privilege outside it).
//! Outside, that id is:
//! - rootless: the caller's own uid/gid (the only ids an unprivileged process may map, and only
//!   after `setgroups` is denied, so the sandbox can never drop a group to gain access);
//! - as root: 65534/65534 (an unprivileged host id), never host root.
//!
//! As root, grants are also mapped to their owner with idmapped mounts (`grants.rs`), through
//! the sandbox's own namespace (owner root) or [`owner_namespace`].

use std::os::fd::{AsRawFd, OwnedFd};

use bunker_sys::process::{self, Forked};
use bunker_sys::{fd, SysError};

/// The host uid/gid the sandbox's root maps to when bunker runs as root.
pub const UNPRIVILEGED_ID: u32 = 65534;

/// How the ids are mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IdMode {
    /// The caller is root: map to [`UNPRIVILEGED_ID`]; setgroups stays allowed so init can clear
    /// the supplementary groups it inherited from root.
    Root,
    /// The caller is unprivileged: map to its own ids; setgroups is denied.
    Rootless { uid: u32, gid: u32 },
}

impl IdMode {
    /// The mode for the calling process.
    pub fn current() -> IdMode {
        let (uid, gid) = bunker_sys::process::ids();
        if bunker_sys::process::euid() == 0 {
            IdMode::Root
        } else {
            IdMode::Rootless { uid, gid }
        }
    }

    /// Contents of `uid_map`, `gid_map`, and `setgroups` (if it must be written first).
    pub fn files(self) -> (String, String, Option<&'static str>) {
        match self {
            IdMode::Root => (
                format!("0 {UNPRIVILEGED_ID} 1\n"),
                format!("0 {UNPRIVILEGED_ID} 1\n"),
                None,
            ),
            IdMode::Rootless { uid, gid } => (
                format!("0 {uid} 1\n"),
                format!("0 {gid} 1\n"),
                Some("deny\n"),
            ),
        }
    }

    /// The host uid the sandbox runs as.
    pub fn host_uid(self) -> u32 {
        match self {
            IdMode::Root => UNPRIVILEGED_ID,
            IdMode::Rootless { uid, .. } => uid,
        }
    }
}

/// Writes the maps of the user namespace of process `pid` (setgroups first when needed).
pub fn write_maps(pid: i32, mode: IdMode) -> Result<(), SysError> {
    let (uid_map, gid_map, setgroups) = mode.files();
    write_map_files(pid, &uid_map, &gid_map, setgroups)
}

fn write_map_files(
    pid: i32,
    uid_map: &str,
    gid_map: &str,
    setgroups: Option<&str>,
) -> Result<(), SysError> {
    let write = |name: &str, text: &str| -> Result<(), SysError> {
        let path = format!("/proc/{pid}/{name}");
        let f = fd::open(
            std::path::Path::new(&path),
            libc::O_WRONLY | libc::O_CLOEXEC,
            0,
        )?;
        fd::write_all(std::os::fd::AsRawFd::as_raw_fd(&f), text.as_bytes()).map_err(|e| {
            SysError::from_errno(format!("write {path} {:?}", text.trim_end()), e.errno)
        })
    };
    if let Some(s) = setgroups {
        write("setgroups", s)?;
    }
    write("uid_map", uid_map)?;
    write("gid_map", gid_map)
}

/// As root: a user namespace whose only ids are `uid` and `gid`, mapped to the sandbox's host
/// ids ([`UNPRIVILEGED_ID`]) — the map of an idmapped grant owned by `uid:gid`. The maps of a
/// namespace can only be written from outside it, and no process can leave a user namespace
/// it entered, so a child makes it (`clone(CLONE_NEWUSER)`), waits on a pipe while its maps
/// are written and the namespace is opened, and exits at the pipe's end of file (also when the
/// supervisor dies).
pub fn owner_namespace(uid: u32, gid: u32) -> Result<OwnedFd, SysError> {
    let (hold_r, hold_w) = fd::pipe()?;
    let (pid, _pidfd) = match process::clone_fork(libc::CLONE_NEWUSER)? {
        Forked::Child => {
            drop(hold_w);
            let mut byte = [0u8; 1];
            let _ = fd::read(hold_r.as_raw_fd(), &mut byte);
            process::exit_now(0)
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(hold_r);
    let opened = write_map_files(
        pid,
        &format!("{uid} {UNPRIVILEGED_ID} 1\n"),
        &format!("{gid} {UNPRIVILEGED_ID} 1\n"),
        None,
    )
    .and_then(|()| namespace_of(pid));
    drop(hold_w);
    let _ = process::waitpid(pid, false);
    opened
}

/// The user namespace of process `pid` (the sandbox's init: the map of grants owned by root).
pub fn namespace_of(pid: i32) -> Result<OwnedFd, SysError> {
    let path = format!("/proc/{pid}/ns/user");
    fd::open(
        std::path::Path::new(&path),
        libc::O_RDONLY | libc::O_CLOEXEC,
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_maps_to_nobody_never_root() {
        let (u, g, s) = IdMode::Root.files();
        assert_eq!(u, "0 65534 1\n");
        assert_eq!(g, "0 65534 1\n");
        assert_eq!(s, None);
        assert_eq!(IdMode::Root.host_uid(), 65534);
    }

    #[test]
    fn rootless_maps_to_the_caller_and_denies_setgroups() {
        let m = IdMode::Rootless {
            uid: 1000,
            gid: 100,
        };
        let (u, g, s) = m.files();
        assert_eq!(u, "0 1000 1\n");
        assert_eq!(g, "0 100 1\n");
        assert_eq!(s, Some("deny\n"));
    }
}
