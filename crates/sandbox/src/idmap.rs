//! User and group id maps of the sandbox's user namespace, written by the supervisor, and the
//! host ids they map to.
//!
//! Inside, the program is uid/gid 0 of its own namespace (which gives no privilege outside it).
//! Outside, that id is:
//! - rootless: the caller's own uid/gid (the only ids an unprivileged process may map, and only
//!   after `setgroups` is denied, so the sandbox can never drop a group to gain access);
//! - as root: an unprivileged host id of its own, uid = gid, never host root and never shared
//!   with another live sandbox: it is leased ([`IdLease`]) from a range ([`IdRange`], by
//!   default [`IdRange::DEFAULT`], set with [`ID_RANGE_ENV`] or by a daemon's configuration).
//!   Two sandboxes as the same host uid could signal, ptrace-attach to or read each other's
//!   processes, and share every file that id may write.
//!
//! A lease is a lock (`flock`) on the file `LEASE_DIR/<id>`: the one place every bunker process
//! — one-shot CLI or daemon — asks, so no two live sandboxes get the same id. The lock belongs to
//! the open file, so it ends when its last descriptor closes: when the holder drops the lease or
//! dies, however. (Init is a fork of the holder's and keeps a copy of the descriptor: a lease
//! outlives its holder by at most the sandbox it was taken for.)
//!
//! As root, grants are also mapped to their owner with idmapped mounts (`grants.rs`), through
//! the sandbox's own namespace (owner root) or [`owner_namespace`].

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use bunker_sys::process::{self, Forked};
use bunker_sys::{fd, SysError};

use crate::error::SandboxError;

/// How the ids are mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IdMode {
    /// The caller is root: map to `uid`/`gid`, host ids leased for this sandbox ([`IdLease`]);
    /// setgroups stays allowed so init can clear the supplementary groups it inherited from
    /// root.
    Root { uid: u32, gid: u32 },
    /// The caller is unprivileged: map to its own ids; setgroups is denied.
    Rootless { uid: u32, gid: u32 },
}

impl IdMode {
    /// Whether the caller is root (the sandbox then runs as leased ids).
    pub fn is_root(self) -> bool {
        matches!(self, IdMode::Root { .. })
    }

    /// Contents of `uid_map`, `gid_map`, and `setgroups` (if it must be written first).
    pub fn files(self) -> (String, String, Option<&'static str>) {
        let (uid, gid) = self.host_ids();
        let setgroups = match self {
            IdMode::Root { .. } => None,
            IdMode::Rootless { .. } => Some("deny\n"),
        };
        (format!("0 {uid} 1\n"), format!("0 {gid} 1\n"), setgroups)
    }

    /// The host uid and gid the sandbox runs as.
    pub fn host_ids(self) -> (u32, u32) {
        match self {
            IdMode::Root { uid, gid } | IdMode::Rootless { uid, gid } => (uid, gid),
        }
    }

    /// The host uid the sandbox runs as.
    pub fn host_uid(self) -> u32 {
        self.host_ids().0
    }
}

/// Where the leases are: root's alone (`/run` is root's), gone at reboot with every sandbox.
pub const LEASE_DIR: &str = "/run/bunker/ids";

/// The environment variable that sets the range of host ids root's sandboxes get: `FIRST:COUNT`.
pub const ID_RANGE_ENV: &str = "BUNKER_ROOT_IDS";

/// A range of host ids sandboxes run as when bunker runs as root, each id its uid and gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdRange {
    pub first: u32,
    pub count: u32,
}

impl IdRange {
    /// 65,536 ids from 0x70000000 (1879048192): above the ranges systemd gives containers
    /// (0x80000–0x6FFFFFFF) and below its foreign-id range (0x7FFE0000) and the ids above 2^31
    /// that some tools mishandle; no distribution allocates users or subordinate ids there.
    pub const DEFAULT: IdRange = IdRange {
        first: 0x7000_0000,
        count: 65536,
    };

    /// Parses `FIRST:COUNT`; the range may not hold 0 (root) or the invalid ids 2^32−1 and
    /// 2^32−2 (`(uid_t)-1`, and `-2`, which some systems use for nobody).
    pub fn parse(text: &str) -> Result<IdRange, String> {
        let expected = "expected FIRST:COUNT (e.g. 1879048192:65536)";
        let (first, count) = text
            .split_once(':')
            .ok_or_else(|| format!("{expected}, found {text:?}"))?;
        let number = |n: &str| {
            n.trim()
                .parse::<u32>()
                .map_err(|_| format!("{expected}, found {text:?}"))
        };
        let range = IdRange {
            first: number(first)?,
            count: number(count)?,
        };
        if range.first == 0 || range.count == 0 {
            return Err(format!(
                "the range {text:?} must hold at least one id and not 0 (root)"
            ));
        }
        if u64::from(range.first) + u64::from(range.count) > u64::from(u32::MAX - 1) {
            return Err(format!(
                "the range {text:?} reaches past {}, the last valid id",
                u32::MAX - 2
            ));
        }
        Ok(range)
    }

    /// The range [`ID_RANGE_ENV`] sets in this process's environment, else [`IdRange::DEFAULT`].
    pub fn from_env() -> Result<IdRange, String> {
        match std::env::var(ID_RANGE_ENV) {
            Ok(text) => IdRange::parse(&text).map_err(|e| format!("{ID_RANGE_ENV}: {e}")),
            Err(std::env::VarError::NotPresent) => Ok(IdRange::DEFAULT),
            Err(std::env::VarError::NotUnicode(v)) => {
                Err(format!("{ID_RANGE_ENV}: not UTF-8: {v:?}"))
            }
        }
    }
}

/// A host id of an [`IdRange`] that no other live sandbox has, for as long as this lives.
#[derive(Debug)]
pub struct IdLease {
    id: u32,
    /// The locked lease file.
    _lock: OwnedFd,
}

impl IdLease {
    /// Takes the first free id of `range`, looking from a place that depends on this process's
    /// pid (so concurrent callers rarely try the same ids first). Fails when all are leased.
    pub fn acquire(range: IdRange) -> Result<IdLease, SandboxError> {
        let step = "lease a host id for the sandbox";
        let io = |e: std::io::Error, what: String| SandboxError::Setup {
            step: step.into(),
            source: SysError::from_errno(format!("{what}: {e}"), e.raw_os_error().unwrap_or(0)),
        };
        let dir = Path::new(LEASE_DIR);
        if !dir.is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io(e, format!("mkdir {LEASE_DIR}")))?;
        }
        let start = std::process::id() % range.count;
        for n in 0..range.count {
            let id = range.first + (start + n) % range.count;
            let lock = fd::open(
                &dir.join(id.to_string()),
                libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            )
            .map_err(|source| SandboxError::Setup {
                step: step.into(),
                source,
            })?;
            if fd::try_lock_exclusive(lock.as_raw_fd()).map_err(|source| SandboxError::Setup {
                step: step.into(),
                source,
            })? {
                return Ok(IdLease { id, _lock: lock });
            }
        }
        Err(SandboxError::Init {
            step: step.into(),
            detail: format!(
                "all {} host ids from {} are leased to live sandboxes (widen the range with                  {ID_RANGE_ENV}=FIRST:COUNT)",
                range.count, range.first
            ),
        })
    }

    /// The leased id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The sandbox's ids: uid and gid both the leased id.
    pub fn id_mode(&self) -> IdMode {
        IdMode::Root {
            uid: self.id,
            gid: self.id,
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
/// ids `host` (its leased ids) — the map of an idmapped grant owned by `uid:gid`. The maps of a
/// namespace can only be written from outside it, and no process can leave a user namespace
/// it entered, so a child makes it (`clone(CLONE_NEWUSER)`), waits on a pipe while its maps
/// are written and the namespace is opened, and exits at the pipe's end of file (also when the
/// supervisor dies).
pub fn owner_namespace(uid: u32, gid: u32, host: (u32, u32)) -> Result<OwnedFd, SysError> {
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
        &format!("{uid} {} 1\n", host.0),
        &format!("{gid} {} 1\n", host.1),
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
    fn root_maps_to_its_leased_ids_never_root() {
        let m = IdMode::Root {
            uid: 1879048200,
            gid: 1879048200,
        };
        let (u, g, s) = m.files();
        assert_eq!(u, "0 1879048200 1\n");
        assert_eq!(g, "0 1879048200 1\n");
        assert_eq!(s, None);
        assert_eq!(m.host_uid(), 1879048200);
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

    #[test]
    fn id_ranges_parse_and_refuse_root_and_the_invalid_ids() {
        assert_eq!(
            IdRange::parse("100000:10"),
            Ok(IdRange {
                first: 100000,
                count: 10
            })
        );
        for bad in ["", "5", "0:10", "10:0", "x:1", "4294967290:10", "1:-1"] {
            assert!(IdRange::parse(bad).is_err(), "{bad}");
        }
        assert!(IdRange::parse("4294967200:94").is_ok());
        assert!(IdRange::parse("4294967200:95").is_err());
    }

    #[test]
    fn a_leased_id_is_not_leased_again_until_dropped() {
        if process::euid() != 0 {
            return crate::skip::skip("leases live in /run/bunker, root's");
        }
        // A range of its own, so that no other test's lease is in it.
        let range = IdRange {
            first: 0x7100_0000 + std::process::id() % 1000 * 2,
            count: 2,
        };
        let a = IdLease::acquire(range).unwrap();
        let b = IdLease::acquire(range).unwrap();
        assert_ne!(a.id(), b.id());
        assert!(
            IdLease::acquire(range).is_err(),
            "a third id from a range of two"
        );
        let freed = a.id();
        drop(a);
        assert_eq!(IdLease::acquire(range).unwrap().id(), freed);
    }
}
