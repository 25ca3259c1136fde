//! The policy's grants opened on the host, and (as root) mapped to their owner.
//!
//! **Who opens them.** A grant means "the sandbox may use this path": whether it can be
//! granted depends on the *caller's* rights, not the sandbox's. As root the supervisor opens
//! every grant with root's rights (a path under a 0700 directory opens), after the clone and
//! before the release, from inside init's new mount namespace (`setns`, then back): a copy of
//! the host's that init has not touched yet, whose mounts the kernel locked (`MNT_LOCKED`) when
//! it copied them for a less privileged user namespace, so the trees cloned there
//! (`open_tree(OPEN_TREE_CLONE)`) keep their sub-mounts locked — a tree cloned in the host's
//! namespace would not. The detached trees go to init on the control socket, right after the
//! release, and init attaches them with `move_mount` (a detached tree is bound to no namespace;
//! an O_PATH fd of a path is bound to the namespace it was opened in, and `open_tree` refuses
//! it from any other). Rootless, the caller and the sandbox are the same uid, and init opens
//! them itself (an unprivileged supervisor cannot clone mount trees). Either way:
//! `openat2(RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`, and the copies are made private, so
//! no mount event crosses between the host and the sandbox.
//!
//! **Idmapping (as root only).** The sandbox runs as host uid/gid 65534. A grant outside the
//! system trees ([`NOT_IDMAPPED`]) is an idmapped mount (`MOUNT_ATTR_IDMAP`) whose map sends its
//! owner's uid and gid to 65534: inside it, the sandbox is the owner (it reads and writes what
//! the owner may, and sees those files as its own uid 0), and what it creates is stored as
//! owned by the owner. For a grant owned by root the sandbox's own user namespace is that map
//! (0 → 65534); any other owner gets a small user namespace of its own, made by a short-lived
//! child ([`crate::idmap::owner_namespace`]). Setting an idmap needs `CAP_SYS_ADMIN` over the
//! filesystem's user namespace — the initial one — so the supervisor does it, on the detached
//! trees, after writing the sandbox's id maps and before releasing init. Rootless there is
//! nothing to map: the sandbox is the caller.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use bunker_sys::fd::{self, FileKind, Ownership, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS};
use bunker_sys::mount::{
    self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
};
use bunker_sys::{process, SysError};

use crate::error::SandboxError;
use crate::idmap::{self, IdMode};
use crate::mounts::{Grant, MountPlan};

/// Trees of the operating system that are never idmapped, nor is a grant of `/` itself: the
/// default and runtime profiles grant them, and idmapped they would show root's private files
/// (`/etc/shadow`, root-only keys and logs) as the sandbox's own. There the sandbox stays the
/// host's uid 65534 and sees what any unprivileged user sees.
pub const NOT_IDMAPPED: [&str; 9] = [
    "/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/boot", "/sys",
];

/// Prefix of the notes that are worth telling the caller on stderr (the CLI prints them).
pub const HINT: &str = "hint: ";

/// Whether a grant of `path` is mapped to its owner (as root).
pub fn idmapped_path(path: &Path) -> bool {
    path != Path::new("/") && !NOT_IDMAPPED.iter().any(|t| path.starts_with(t))
}

/// A directory anyone may create in and only owners may delete from (mode `o+w` and sticky:
/// /tmp, /var/tmp, /dev/shm): it is shared, not owned, and is never mapped to its owner (root),
/// which would make the sandbox the owner of every root file in it.
fn shared_scratch(owner: &Ownership) -> bool {
    owner.mode & 0o1002 == 0o1002
}

/// A policy path opened on the host.
#[derive(Debug)]
pub enum Source {
    /// A detached recursive copy of the mount tree at the path, with the grant's mount
    /// attributes set, what the path is, and who owns it.
    Tree {
        tree: OwnedFd,
        kind: FileKind,
        owner: Ownership,
    },
    /// The path is a symlink: it is recreated as the link.
    Symlink(PathBuf),
}

/// One opened grant.
#[derive(Debug)]
pub struct OpenedGrant {
    pub grant: Grant,
    pub source: Source,
    /// The owner's ids that the mount maps to the sandbox, when it is idmapped.
    pub mapped_owner: Option<(u32, u32)>,
}

/// Every grant of a plan that exists on the host, opened.
#[derive(Debug, Default)]
pub struct OpenedGrants {
    pub grants: Vec<OpenedGrant>,
    /// Grants skipped (missing, behind a symlink) or not mapped, and hints.
    pub notes: Vec<String>,
}

/// The mount attributes of a grant's bind mount.
pub(crate) fn grant_attrs(g: &Grant) -> u64 {
    let write = if g.write { 0 } else { MOUNT_ATTR_RDONLY };
    let exec = if g.exec { 0 } else { MOUNT_ATTR_NOEXEC };
    MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | write | exec
}

fn label(g: &Grant) -> String {
    format!(
        "{} {}",
        if g.write { "allow.write" } else { "allow.read" },
        g.path.display()
    )
}

/// Opens every grant of `plan` with the calling process's rights, without following any
/// symlink, and clones its mount tree (private, with the grant's attributes). A missing or
/// symlink-parented read grant is skipped with a note; a missing write grant is an error.
pub fn open(plan: &MountPlan) -> Result<OpenedGrants, SandboxError> {
    let mut opened = OpenedGrants::default();
    for g in &plan.grants {
        match open_host(&g.path, grant_attrs(g)) {
            Ok(Some(source)) => opened.grants.push(OpenedGrant {
                grant: g.clone(),
                source,
                mapped_owner: None,
            }),
            Ok(None) if g.write => {
                return Err(SandboxError::Setup {
                    step: format!("bind mount {} → {}", g.path.display(), g.path.display()),
                    source: SysError::from_errno(
                        format!("allow.write path {} does not exist", g.path.display()),
                        libc::ENOENT,
                    ),
                });
            }
            Ok(None) => opened
                .notes
                .push(format!("{}: does not exist on the host; skipped", label(g))),
            Err(e) if e.errno == libc::ELOOP && !g.write => opened.notes.push(format!(
                "{}: a parent directory is a symlink; skipped (grant the real path)",
                label(g)
            )),
            Err(e) => {
                return Err(SandboxError::Setup {
                    step: format!("open {}", label(g)),
                    source: e,
                })
            }
        }
    }
    Ok(opened)
}

/// As root: [`open`] in the mount namespace of the sandbox's `init` (made by its clone, a copy
/// of the host's, untouched while init waits for its release), with the supervisor's rights.
/// Clones made there keep the locks the kernel put on the copy's mounts (`MNT_LOCKED`: a
/// sub-mount of a grant cannot be unmounted from inside to uncover what is under it), which a
/// clone made in the host's namespace would not have. `setns` moves the caller's root and
/// working directory to that namespace's root; both are back when this returns.
pub fn open_in_namespace_of(plan: &MountPlan, init: i32) -> Result<OpenedGrants, SandboxError> {
    let step = |what: &'static str| {
        move |source| SandboxError::Setup {
            step: format!("open the grants in the sandbox's mount namespace ({what})"),
            source,
        }
    };
    let dir = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    let ns = libc::O_RDONLY | libc::O_CLOEXEC;
    let own = fd::open(Path::new("/proc/self/ns/mnt"), ns, 0).map_err(step("open own"))?;
    let cwd = fd::open(Path::new("."), dir, 0).map_err(step("open the working directory"))?;
    let theirs =
        fd::open(Path::new(&format!("/proc/{init}/ns/mnt")), ns, 0).map_err(step("open init's"))?;
    process::setns(theirs.as_raw_fd(), libc::CLONE_NEWNS).map_err(step("enter"))?;
    let opened = open(plan);
    process::setns(own.as_raw_fd(), libc::CLONE_NEWNS).map_err(step("leave"))?;
    process::fchdir(cwd.as_raw_fd()).map_err(step("restore the working directory"))?;
    opened
}

/// One grant as the supervisor sends it to init (`init::protocol::SupervisorMessage::Grants`;
/// the tree travels as an fd beside it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum SentGrant {
    Tree {
        path: PathBuf,
        write: bool,
        exec: bool,
        dir: bool,
    },
    Symlink {
        path: PathBuf,
        write: bool,
        exec: bool,
        target: PathBuf,
    },
}

/// What hands init the grants the supervisor opened, and its fds (the trees, in order). Fails
/// when there are more trees than one datagram carries.
pub fn message(opened: &OpenedGrants) -> Result<(Vec<SentGrant>, Vec<RawFd>), SandboxError> {
    let mut fds = Vec::new();
    let sent: Vec<SentGrant> = opened
        .grants
        .iter()
        .map(|og| match &og.source {
            Source::Tree { tree, kind, .. } => {
                fds.push(tree.as_raw_fd());
                SentGrant::Tree {
                    path: og.grant.path.clone(),
                    write: og.grant.write,
                    exec: og.grant.exec,
                    dir: *kind == FileKind::Dir,
                }
            }
            Source::Symlink(target) => SentGrant::Symlink {
                path: og.grant.path.clone(),
                write: og.grant.write,
                exec: og.grant.exec,
                target: target.clone(),
            },
        })
        .collect();
    if fds.len() > fd::MAX_FDS_PER_MESSAGE {
        return Err(SandboxError::Init {
            step: "hand the grants to init".into(),
            detail: format!(
                "{} granted trees; at most {} can be bound (grant fewer, wider directories)",
                fds.len(),
                fd::MAX_FDS_PER_MESSAGE
            ),
        });
    }
    Ok((sent, fds))
}

/// Init's side of [`message`]: the grants, their trees from `fds`. (The owners are the
/// supervisor's business: init only attaches.)
pub fn from_message(sent: Vec<SentGrant>, fds: Vec<OwnedFd>) -> Result<OpenedGrants, SandboxError> {
    let bad = |detail: String| SandboxError::Init {
        step: "receive the grants from the supervisor".into(),
        detail,
    };
    let announced = sent
        .iter()
        .filter(|g| matches!(g, SentGrant::Tree { .. }))
        .count();
    if announced != fds.len() {
        return Err(bad(format!(
            "{announced} trees announced, {} fds received",
            fds.len()
        )));
    }
    let mut trees = fds.into_iter();
    let mut opened = OpenedGrants::default();
    for g in sent {
        let (grant, source) = match g {
            SentGrant::Tree {
                path,
                write,
                exec,
                dir,
            } => {
                let Some(tree) = trees.next() else {
                    return Err(bad("fewer fds than trees".into()));
                };
                let source = Source::Tree {
                    tree,
                    kind: if dir { FileKind::Dir } else { FileKind::File },
                    // Not sent: init only attaches.
                    owner: Ownership {
                        uid: u32::MAX,
                        gid: u32::MAX,
                        mode: 0,
                    },
                };
                (Grant { path, write, exec }, source)
            }
            SentGrant::Symlink {
                path,
                write,
                exec,
                target,
            } => (Grant { path, write, exec }, Source::Symlink(target)),
        };
        opened.grants.push(OpenedGrant {
            grant,
            source,
            mapped_owner: None,
        });
    }
    Ok(opened)
}

/// Opens a host path without following any symlink and clones its mount tree with `attrs`
/// set. Ok(None): it does not exist.
fn open_host(path: &Path, attrs: u64) -> Result<Option<Source>, SysError> {
    let f = match fd::openat2(
        None,
        path,
        libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        0,
        RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(f) => f,
        Err(e) if e.errno == libc::ENOENT => return Ok(None),
        Err(e) => return Err(e),
    };
    let kind = fd::fd_kind(f.as_raw_fd())?;
    if kind == FileKind::Symlink {
        return Ok(Some(Source::Symlink(fd::readlinkat(
            f.as_raw_fd(),
            Path::new(""),
        )?)));
    }
    let owner = fd::ownership(f.as_raw_fd())?;
    // Cloned now, while nothing of the new root exists: a tree cloned later in init would
    // include the staging tmpfs if the grant contains it (a grant of / or /tmp).
    let tree = mount::clone_private_tree(f.as_raw_fd(), attrs, path)?;
    Ok(Some(Source::Tree { tree, kind, owner }))
}

/// As root: maps every grant outside [`NOT_IDMAPPED`] to its owner (see the module's doc).
/// `sandbox_userns` is the sandbox's user namespace, its maps written (0 → 65534): the map for
/// grants owned by root. A filesystem that refuses idmapped mounts leaves its grant as it was,
/// with a note. Returns the notes (and hints for write grants the sandbox still cannot write).
pub fn map_to_owners(
    opened: &mut OpenedGrants,
    sandbox_userns: &OwnedFd,
    sandbox_ids: (u32, u32),
) -> Result<Vec<String>, SandboxError> {
    let mut notes = Vec::new();
    // One user namespace per distinct owner, made only when needed.
    let mut owner_namespaces: Vec<((u32, u32), OwnedFd)> = Vec::new();
    for og in &mut opened.grants {
        let Source::Tree { tree, owner, .. } = &og.source else {
            continue;
        };
        let ids = (owner.uid, owner.gid);
        if !idmapped_path(&og.grant.path) || ids == sandbox_ids || shared_scratch(owner) {
            continue;
        }
        let userns =
            if ids == (0, 0) {
                sandbox_userns.as_raw_fd()
            } else {
                match owner_namespaces.iter().find(|(k, _)| *k == ids) {
                    Some((_, ns)) => ns.as_raw_fd(),
                    None => {
                        let ns = idmap::owner_namespace(owner.uid, owner.gid, sandbox_ids)
                            .map_err(|e| SandboxError::Setup {
                                step: format!(
                                    "map {} to its owner {}:{}",
                                    label(&og.grant),
                                    owner.uid,
                                    owner.gid
                                ),
                                source: e,
                            })?;
                        let raw = ns.as_raw_fd();
                        owner_namespaces.push((ids, ns));
                        raw
                    }
                }
            };
        match mount::idmap_tree(tree.as_raw_fd(), userns, &og.grant.path) {
            Ok(()) => og.mapped_owner = Some(ids),
            // The filesystem (or one mounted inside the grant) does not support idmapped
            // mounts, or is not the initial namespace's: the grant stays as it was.
            Err(e) if matches!(e.errno, libc::EINVAL | libc::EPERM | libc::EOPNOTSUPP) => notes
                .push(format!(
                    "{}: not mapped to its owner {}:{} ({e}); the sandbox uses it as host uid \
                     {}",
                    label(&og.grant),
                    owner.uid,
                    owner.gid,
                    sandbox_ids.0
                )),
            Err(e) => {
                return Err(SandboxError::Setup {
                    step: format!("map {} to its owner", label(&og.grant)),
                    source: e,
                })
            }
        }
    }
    Ok(notes)
}

/// Hints for write grants the sandbox cannot write at their top (which is what a user who
/// granted a directory expects to do). As root the grants were opened by the supervisor: their
/// owners are host ids, and the sandbox is host uid 65534, or the owner inside an idmapped
/// grant. Rootless they were opened by init, inside the sandbox's user namespace: the caller's
/// own files show as 0:0 (the sandbox's ids there), anyone else's as unmapped.
pub fn write_hints(opened: &OpenedGrants, mode: IdMode) -> Vec<String> {
    let (uid, gid) = match mode {
        IdMode::Root { uid, gid } => (uid, gid),
        IdMode::Rootless { .. } => (0, 0),
    };
    let mut hints = Vec::new();
    for og in opened.grants.iter().filter(|og| og.grant.write) {
        let Source::Tree { kind, owner, .. } = &og.source else {
            continue;
        };
        let (as_uid, as_gid) = og.mapped_owner.unwrap_or((uid, gid));
        let bits = if owner.uid == as_uid {
            owner.mode >> 6
        } else if owner.gid == as_gid {
            owner.mode >> 3
        } else {
            owner.mode
        } & 0o7;
        // A directory needs write and search to create in it; a file, write.
        let needed = if *kind == FileKind::Dir { 0o3 } else { 0o2 };
        if bits & needed == needed {
            continue;
        }
        let why = match (og.mapped_owner, mode) {
            (Some(_), _) => format!(
                "even its owner may not (mode {:04o}); the sandbox acts as its owner {}:{} there",
                owner.mode, owner.uid, owner.gid
            ),
            (None, IdMode::Rootless { .. }) if owner.uid == 0 => format!(
                "it is yours, but its mode ({:04o}) does not let you write it",
                owner.mode
            ),
            (None, IdMode::Rootless { .. }) => format!(
                "it belongs to another user (mode {:04o}), and the sandbox has only your rights",
                owner.mode
            ),
            (None, IdMode::Root { .. }) if !idmapped_path(&og.grant.path) => format!(
                "it is owned by {}:{} with mode {:04o}, and in a system tree ({}, or / itself) \
                 the sandbox is host uid {uid}, not mapped to the owner",
                owner.uid,
                owner.gid,
                owner.mode,
                NOT_IDMAPPED.join(", ")
            ),
            (None, IdMode::Root { .. }) => format!(
                "it is owned by {}:{} with mode {:04o}, and the sandbox is host uid {uid} there \
                 (it could not be mapped to its owner: see the notes)",
                owner.uid, owner.gid, owner.mode
            ),
        };
        hints.push(format!(
            "{HINT}{} is not writable by the sandbox: {why}",
            label(&og.grant)
        ));
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_trees_and_the_root_are_not_idmapped() {
        for p in [
            "/",
            "/usr",
            "/usr/lib/x",
            "/etc",
            "/etc/ssl/certs",
            "/lib64",
            "/bin",
        ] {
            assert!(!idmapped_path(Path::new(p)), "{p}");
        }
        for p in [
            "/root/proj",
            "/home/u/app",
            "/tmp/x",
            "/opt/python",
            "/var/lib/ci",
            "/usrx",
        ] {
            assert!(idmapped_path(Path::new(p)), "{p}");
        }
    }

    fn opened(write: bool, owner: Ownership, mapped: bool) -> OpenedGrants {
        let tree = fd::open_dev_null().unwrap();
        OpenedGrants {
            grants: vec![OpenedGrant {
                grant: Grant {
                    path: "/srv/out".into(),
                    write,
                    exec: false,
                },
                source: Source::Tree {
                    tree,
                    kind: FileKind::Dir,
                    owner,
                },
                mapped_owner: mapped.then_some((owner.uid, owner.gid)),
            }],
            notes: Vec::new(),
        }
    }

    #[test]
    fn grants_cross_to_init_in_order_with_one_fd_per_tree() {
        let mut sent = opened(
            true,
            Ownership {
                uid: 0,
                gid: 0,
                mode: 0o755,
            },
            true,
        );
        sent.grants.push(OpenedGrant {
            grant: Grant {
                path: "/srv/link".into(),
                write: false,
                exec: true,
            },
            source: Source::Symlink("target".into()),
            mapped_owner: None,
        });
        let (data, fds) = message(&sent).unwrap();
        assert_eq!(fds.len(), 1);
        let dup = |fd: RawFd| {
            let path = format!("/proc/self/fd/{fd}");
            fd::open(Path::new(&path), libc::O_RDONLY | libc::O_CLOEXEC, 0).unwrap()
        };
        let got = from_message(data.clone(), fds.iter().map(|f| dup(*f)).collect()).unwrap();
        let shape: Vec<_> = got
            .grants
            .iter()
            .map(|g| {
                let what = match &g.source {
                    Source::Tree { kind, .. } => format!("tree {kind:?}"),
                    Source::Symlink(t) => format!("link {}", t.display()),
                };
                (g.grant.path.display().to_string(), g.grant.write, what)
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("/srv/out".to_string(), true, "tree Dir".to_string()),
                ("/srv/link".to_string(), false, "link target".to_string()),
            ]
        );
        // A message whose fds do not match its trees is refused.
        assert!(from_message(data, Vec::new()).is_err());
    }

    /// The ids of a sandbox of root's.
    const ROOT: IdMode = IdMode::Root {
        uid: 1879048192,
        gid: 1879048192,
    };

    #[test]
    fn a_hint_names_a_write_grant_the_sandbox_cannot_write() {
        let root_0755 = Ownership {
            uid: 0,
            gid: 0,
            mode: 0o755,
        };
        // Mapped to its owner: root may write a 0755 directory.
        assert!(write_hints(&opened(true, root_0755, true), ROOT).is_empty());
        // Not mapped: host uid 65534 may not.
        let h = write_hints(&opened(true, root_0755, false), ROOT);
        assert_eq!(h.len(), 1);
        assert!(
            h[0].starts_with("hint: allow.write /srv/out is not writable"),
            "{h:?}"
        );
        // Read grants get no hint.
        assert!(write_hints(&opened(false, root_0755, false), ROOT).is_empty());
        // Owner without write permission, mapped or not.
        let ro = Ownership {
            mode: 0o555,
            ..root_0755
        };
        assert_eq!(write_hints(&opened(true, ro, true), ROOT).len(), 1);
        // Rootless (owners as init sees them: the caller is 0, anyone else unmapped): the
        // caller's own directory is writable; another's 0755 one is not.
        let me = IdMode::Rootless {
            uid: 1000,
            gid: 1000,
        };
        assert!(write_hints(&opened(true, root_0755, false), me).is_empty());
        let others = Ownership {
            uid: 65534,
            gid: 65534,
            mode: 0o755,
        };
        assert_eq!(write_hints(&opened(true, others, false), me).len(), 1);
        let world = Ownership {
            mode: 0o1777,
            ..others
        };
        assert!(write_hints(&opened(true, world, false), me).is_empty());
    }
}
