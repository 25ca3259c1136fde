//! The sandbox's new root: a tmpfs holding only bind mounts of what the policy grants, masks for
//! what it denies, a private /tmp, a minimal /dev and a fresh /proc; then pivot_root.
//!
//! [`plan`] is pure (it runs in the supervisor and is unit-tested); [`build_root`] runs in the
//! sandbox's init, in its own mount namespace, before pivot_root.
//!
//! Every policy path is opened with `openat2(RESOLVE_NO_SYMLINKS)` before anything is mounted
//! ([`crate::grants`]: as root by the supervisor, rootless here), and every mount target inside
//! the new root is opened the same way relative to the new root, so neither a bind source nor a
//! target can be redirected by a symlink. Binds are made with the fd-based mount API: the tree
//! is cloned recursively (sub-mounts stay covered; rootless, where init clones them in its own
//! user namespace, the kernel also locks them), made read-only/nosuid/nodev/noexec *while detached*
//! (`mount_setattr` only adds flags, so flags locked on the source are kept), then attached.
//!
//! Deny masks go on last: explicit paths, then what the walk of the granted trees finds
//! (`walk.rs`: deny-glob matches and unix sockets). Inside a writable grant the directories
//! between the grant and each mask are bound onto themselves first, so no mask can be renamed
//! away; a deny rule that cannot be held that way refuses the run (see [`build_root`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use bunker_policy::path::PathPattern;
use bunker_policy::{PathGlob, Policy};
use bunker_sys::fd::{self, FileKind, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS};
use bunker_sys::mount::{
    self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
};
use bunker_sys::SysError;

use crate::error::SandboxError;
use crate::grants::{self, OpenedGrants, Source};
use crate::idmap::IdMode;
use crate::walk;

/// Where the new root's tmpfs is mounted before pivot_root (in the sandbox's own mount
/// namespace, so the host's /tmp is not touched; policy paths are opened before it is hidden).
const STAGING: &str = "/tmp";

/// Directories that bunker itself provides; policy grants at or under them are skipped.
const RESERVED: [&str; 2] = ["/proc", "/dev"];

/// Files of the host's /dev bound into the sandbox's /dev.
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

/// /proc entries made read-only (writes there would reach the host kernel's settings).
const PROC_READ_ONLY: [&str; 4] = ["sys", "sysrq-trigger", "irq", "bus"];

/// /proc files that are the same in every pid namespace and identify the host: its kernel
/// command line (root device UUIDs), its disks and swap. Masked with an empty file.
const PROC_HOST_IDENTITY: [&str; 4] = ["cmdline", "partitions", "diskstats", "swaps"];

/// The host's boot id (the same in every namespace): replaced by one of the sandbox's own.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// One granted path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub path: PathBuf,
    pub write: bool,
    /// At or beneath an `allow.exec` path. Every other bind is `noexec`, so nothing there can
    /// be executed or mapped executable (the dynamic loader run on a copy only maps it).
    pub exec: bool,
}

/// What a deny entry takes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DenyKind {
    /// Masked: an empty read-only directory or file.
    Read,
    /// Re-mounted read-only.
    Write,
    /// Re-mounted noexec (landlock denies execute too).
    Exec,
}

impl DenyKind {
    /// The policy list this kind comes from.
    pub fn list(self) -> &'static str {
        match self {
            DenyKind::Read => "deny.read",
            DenyKind::Write => "deny.write",
            DenyKind::Exec => "deny.exec",
        }
    }
}

/// A deny glob, expanded inside the sandbox against what is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyGlob {
    pub kind: DenyKind,
    pub pattern: PathGlob,
    /// Listed in `deny.best_effort`: a walk that cannot finish, or a tree where the program can
    /// create matching names, is a note rather than a refusal.
    pub best_effort: bool,
}

/// The mounts to make, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct MountPlan {
    /// Granted paths, shallowest first (a deeper grant overrides a shallower one).
    pub grants: Vec<Grant>,
    /// Denied paths, shallowest first.
    pub denials: Vec<(DenyKind, PathBuf)>,
    /// Deny globs, expanded inside the sandbox against what is mounted.
    pub deny_globs: Vec<DenyGlob>,
    /// Deny paths listed in `deny.best_effort`.
    pub best_effort_paths: Vec<PathBuf>,
    pub tmp_size: u64,
    pub tty: bool,
    /// The sandbox has its own user namespace, whose per-user counters init bounds
    /// ([`crate::user_counters`]).
    pub user_namespace: bool,
    /// Notes for `enforced.notes` (paths skipped while planning).
    pub notes: Vec<String>,
}

fn depth(p: &Path) -> usize {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

fn reserved(p: &Path) -> bool {
    RESERVED.iter().any(|r| p.starts_with(r))
}

/// Turns the policy's grants and denials into a mount plan. Pure.
pub fn plan(policy: &Policy) -> MountPlan {
    let mut notes = Vec::new();
    let mut grants: Vec<Grant> = Vec::new();
    let mut add = |path: &PathBuf, write: bool, notes: &mut Vec<String>| {
        if !path.is_absolute() {
            notes.push(format!("skipped relative path {}", path.display()));
            return;
        }
        let path = normalize(path);
        if reserved(&path) {
            notes.push(format!(
                "{} is provided by bunker (fresh /proc, minimal /dev); the grant is ignored",
                path.display()
            ));
            return;
        }
        match grants.iter_mut().find(|g| g.path == path) {
            Some(g) => g.write |= write,
            None => grants.push(Grant {
                path,
                write,
                exec: false,
            }),
        }
    };
    for p in policy.allow.read.iter().chain(&policy.allow.exec) {
        add(p, false, &mut notes);
    }
    for p in &policy.allow.write {
        add(p, true, &mut notes);
    }
    // Execution is granted on a tree (as landlock's EXECUTE is): a read or write grant beneath
    // an exec grant may execute too.
    let exec_roots: Vec<PathBuf> = policy
        .allow
        .exec
        .iter()
        .filter(|p| p.is_absolute())
        .map(|p| normalize(p))
        .collect();
    for g in &mut grants {
        g.exec = exec_roots.iter().any(|e| g.path.starts_with(e));
    }
    grants.sort_by(|a, b| {
        depth(&a.path)
            .cmp(&depth(&b.path))
            .then(a.path.cmp(&b.path))
    });
    // A grant inside another of the same kind adds nothing in the system trees: the outer bind
    // is recursive and has the same flags. (Each bind costs a few syscalls at every start.)
    // Elsewhere it is kept: as root each grant is mapped to its own owner, and the inner path
    // may belong to another user than the outer one.
    let mut kept: Vec<Grant> = Vec::with_capacity(grants.len());
    for g in grants {
        let nearest = kept
            .iter()
            .filter(|k| g.path.starts_with(&k.path))
            .max_by_key(|k| depth(&k.path));
        if nearest.is_none_or(|k| {
            k.write != g.write || k.exec != g.exec || grants::idmapped_path(&g.path)
        }) {
            kept.push(g);
        }
    }
    let grants = kept;

    let mut denials = Vec::new();
    let mut deny_globs = Vec::new();
    let mut best_effort_paths = Vec::new();
    for (kind, list) in [
        (DenyKind::Read, &policy.deny.read),
        (DenyKind::Write, &policy.deny.write),
        (DenyKind::Exec, &policy.deny.exec),
    ] {
        for pat in list {
            let best_effort = policy.deny.is_best_effort(pat);
            match pat {
                PathPattern::Path(p) => {
                    denials.push((kind, normalize(p)));
                    if best_effort {
                        best_effort_paths.push(normalize(p));
                    }
                }
                PathPattern::Glob(g) => deny_globs.push(DenyGlob {
                    kind,
                    pattern: g.clone(),
                    best_effort,
                }),
            }
        }
    }
    denials.sort_by(|a, b| depth(&a.1).cmp(&depth(&b.1)).then(a.1.cmp(&b.1)));
    denials.dedup();
    MountPlan {
        grants,
        denials,
        deny_globs,
        best_effort_paths,
        tmp_size: policy.limits.tmp_size,
        tty: policy.kernel.tty,
        user_namespace: policy
            .kernel
            .namespaces
            .contains(&bunker_policy::Namespace::User),
        notes,
    }
}

/// Removes `.` and resolves `..` lexically (policy paths are absolute already).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// `path` relative to `/` (for lookups relative to the new root's fd).
fn rel(path: &Path) -> PathBuf {
    path.strip_prefix("/")
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}

fn setup(step: impl Into<String>) -> impl FnOnce(SysError) -> SandboxError {
    let step = step.into();
    move |source| SandboxError::Setup { step, source }
}

/// Opens `path` inside the new root (never following a symlink). Ok(None): it does not exist.
fn open_in(root: &OwnedFd, path: &Path) -> Result<Option<OwnedFd>, SysError> {
    let r = rel(path);
    let target = if r.as_os_str().is_empty() {
        Path::new(".")
    } else {
        r.as_path()
    };
    match fd::openat2(
        Some(root.as_raw_fd()),
        target,
        libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        0,
        RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | fd::RESOLVE_BENEATH,
    ) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.errno == libc::ENOENT => Ok(None),
        Err(e) => Err(e),
    }
}

/// What to create at a mount point that does not exist yet.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    File,
}

/// Creates the missing parents of `path` inside the new root (as directories of the root
/// tmpfs) and the path itself, then opens it. Each node is made and opened relative to its
/// parent's fd, so no path is walked from the root twice. Creating inside a read-only bind
/// fails (EROFS) rather than writing to the host.
fn make_node(root: &OwnedFd, path: &Path, node: Node) -> Result<OwnedFd, SysError> {
    if let Some(f) = open_in(root, path)? {
        return Ok(f);
    }
    // The root itself always opens, so a missing path has a parent and a name.
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(SysError::from_errno(
            format!("create {}", path.display()),
            libc::EINVAL,
        ));
    };
    let parent = make_node(root, parent, Node::Dir)?;
    let name = Path::new(name);
    match node {
        Node::File => fd::touchat(parent.as_raw_fd(), name, 0o644)?,
        Node::Dir => fd::mkdirat(parent.as_raw_fd(), name, 0o755)?,
    }
    fd::openat2(
        Some(parent.as_raw_fd()),
        name,
        libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        0,
        RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | fd::RESOLVE_BENEATH,
    )
}

/// Binds the tree held by `source` onto `target` with `attrs` set on every mount in it.
fn bind(source: &OwnedFd, target: &OwnedFd, attrs: u64, what: &Path) -> Result<(), SysError> {
    let tree = mount::clone_tree_with_attrs(source.as_raw_fd(), attrs, what)?;
    mount::attach_tree(&tree, target, what)
}

/// Mounts a tmpfs on the O_PATH fd `target`.
fn tmpfs(target: &OwnedFd, flags: libc::c_ulong, data: &str) -> Result<(), SysError> {
    mount::mount(
        Some("tmpfs"),
        &fd::proc_fd_path(target),
        Some("tmpfs"),
        flags,
        Some(data),
    )
}

/// The top of the mount stack at the staging directory (the new root's tmpfs, or what a
/// grant of `/` put on it).
fn open_staging() -> Result<OwnedFd, SandboxError> {
    fd::openat2(
        None,
        Path::new(STAGING),
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
        RESOLVE_NO_SYMLINKS,
    )
    .map_err(setup("open new root"))
}

const NOSUID_NODEV: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;

/// What building the root reports.
#[derive(Debug, Default)]
pub struct RootOutcome {
    /// Notes for `enforced.notes`.
    pub notes: Vec<String>,
    /// False when a deny glob could not be checked everywhere (the walk's budget ran out).
    pub complete: bool,
    /// The sandbox procfs's `sys/user` directory, opened before /proc/sys was made read-only
    /// (files opened from it are writable), when the sandbox has its own user namespace: init
    /// bounds the counters there once it has made its namespaces ([`crate::user_counters`]).
    pub user_counters: Option<OwnedFd>,
}

/// Builds the new root and pivots into it. `opened`: the grants the supervisor opened (as
/// root); `None` opens them here, as the sandbox (rootless: the caller's uid), whose ids
/// `id_mode` gives.
pub fn build_root(
    plan: &MountPlan,
    opened: Option<&OpenedGrants>,
    id_mode: IdMode,
) -> Result<RootOutcome, SandboxError> {
    let mut notes = Vec::new();
    refuse_creatable_globs(plan)?;
    // Mounts made from now on must not propagate back to the host's namespace.
    mount::mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(setup("make / private"))?;

    // Every granted path is opened on the host before anything is hidden by the staging
    // mount: as root by the supervisor already (with root's rights), rootless here.
    let opened_here;
    let opened = match opened {
        Some(o) => o,
        None => {
            opened_here = grants::open(plan)?;
            notes.extend(opened_here.notes.iter().cloned());
            notes.extend(grants::write_hints(&opened_here, id_mode));
            &opened_here
        }
    };
    let devices: Vec<(&str, OwnedFd)> = DEVICES
        .iter()
        .map(|d| {
            let p = format!("/dev/{d}");
            fd::openat2(
                None,
                Path::new(&p),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0,
                RESOLVE_NO_SYMLINKS,
            )
            .map(|f| (*d, f))
            .map_err(setup(format!("open host {p}")))
        })
        .collect::<Result<_, _>>()?;

    mount::mount(
        Some("tmpfs"),
        STAGING,
        Some("tmpfs"),
        NOSUID_NODEV,
        Some("size=4m,nr_inodes=16384,mode=0755"),
    )
    .map_err(setup("mount tmpfs (new root)"))?;
    let root = open_staging()?;

    // A grant of "/" itself goes first; bunker's own /tmp, /dev and /proc go on top of it;
    // every other grant after them, shallowest first.
    let (top, rest): (Vec<_>, Vec<_>) = opened
        .grants
        .iter()
        .partition(|og| og.grant.path == Path::new("/"));
    // The staging tmpfs itself, even once a grant of / covers it: the mask file lives there.
    let staging_root = open_staging()?;
    let mut root = root;
    for og in &top {
        grant(&root, &og.grant, &og.source)?;
        // The grant now covers the staging tmpfs: lookups from the old fd would go beneath it.
        root = open_staging()?;
    }
    if !plan.grants.iter().any(|g| g.path == Path::new("/tmp")) {
        let t = make_node(&root, Path::new("/tmp"), Node::Dir).map_err(setup("mkdir /tmp"))?;
        // noexec: landlock gives /tmp no EXECUTE, and noexec also refuses mapping a file there
        // executable (`ld.so /tmp/copy`).
        tmpfs(
            &t,
            NOSUID_NODEV | libc::MS_NOEXEC,
            &format!("size={},mode=1777", plan.tmp_size.max(4096)),
        )
        .map_err(setup("mount tmpfs on /tmp"))?;
    }
    build_dev(&root, &devices, plan.tty)?;
    let user_counters = build_proc(&root, &staging_root, plan.user_namespace)?;
    for og in &rest {
        grant(&root, &og.grant, &og.source)?;
    }

    // Deny lists: explicit paths, then globs expanded against what is now mounted.
    refuse_absent_denials(&root, plan)?;
    let mut denials = plan.denials.clone();
    // Sockets and deny globs found in the granted trees are masked too.
    let scan = walk::scan(&root, &plan.grants, &plan.deny_globs);
    notes.extend(scan.notes);
    let complete = check_walk(plan, &scan.unchecked, &mut notes)?;
    if !scan.found.is_empty() {
        denials.extend(scan.found);
        denials.sort_by(|a, b| depth(&a.1).cmp(&depth(&b.1)).then(a.1.cmp(&b.1)));
        denials.dedup();
    }
    pin_ancestors(&root, &plan.grants, &denials)?;
    let mut empty_file: Option<OwnedFd> = None;
    for (kind, path) in &denials {
        deny(&root, *kind, path, &staging_root, &mut empty_file)?;
    }
    if empty_file.is_some() {
        fd::unlinkat(staging_root.as_raw_fd(), Path::new(EMPTY_FILE))
            .map_err(setup("remove mask file"))?;
    }
    drop(empty_file);

    // pivot_root into the staging tmpfs; the old root is detached, not just hidden.
    bunker_sys::process::chdir(Path::new(STAGING)).map_err(setup("chdir new root"))?;
    mount::pivot_root_here().map_err(setup("pivot_root"))?;
    bunker_sys::process::chdir(Path::new("/")).map_err(setup("chdir /"))?;
    // The root tmpfs itself holds only mount points: read-only from here on.
    mount::mount(
        None,
        "/",
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | NOSUID_NODEV | libc::MS_NOEXEC,
        None,
    )
    .map_err(setup("remount / read-only"))?;
    Ok(RootOutcome {
        notes,
        complete,
        user_counters,
    })
}

/// A deny rule bunker cannot hold: the run is refused, naming the rule and why.
fn refused(rule: String, reason: String) -> SandboxError {
    SandboxError::Init {
        step: "deny masks".into(),
        detail: format!("cannot enforce {rule}: {reason}"),
    }
}

/// The grant whose bind mount holds `path`: the deepest one containing it.
pub(crate) fn holding_grant<'a>(grants: &'a [Grant], path: &Path) -> Option<&'a Grant> {
    grants
        .iter()
        .filter(|g| path.starts_with(&g.path))
        .max_by_key(|g| depth(&g.path))
}

/// A deny.write or deny.exec glob reaching a writable grant cannot hold: the program can create
/// a path it names after the walk (`mkdir -p .git/hooks`), and no mount can be put on a name
/// that does not exist yet. Refused unless best-effort. (deny.read globs are not refused: a
/// file the program creates holds only what it wrote itself.)
fn refuse_creatable_globs(plan: &MountPlan) -> Result<(), SandboxError> {
    for g in &plan.deny_globs {
        if g.kind == DenyKind::Read || g.best_effort {
            continue;
        }
        if let Some(w) = plan
            .grants
            .iter()
            .find(|w| w.write && g.pattern.reaches(&w.path))
        {
            return Err(refused(
                format!("{} glob {:?}", g.kind.list(), g.pattern.as_str()),
                format!(
                    "{} is writable (allow.write), so the program could create a path the glob \
                     names after the walk, which no mask can stop; mark it best-effort in \
                     deny.best_effort, name the existing paths instead, or narrow the grant",
                    w.path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Refuses the run when a part of a writable grant could not be checked for setuid/setgid
/// files, or a glob that is not best-effort could not be checked everywhere it reaches; notes
/// it for a best-effort one. Returns whether the walk was complete.
fn check_walk(
    plan: &MountPlan,
    unchecked: &[walk::Unchecked],
    notes: &mut Vec<String>,
) -> Result<bool, SandboxError> {
    if let Some(u) = unchecked.iter().find(|u| u.writable) {
        return Err(SandboxError::Init {
            step: "setuid/setgid files".into(),
            detail: format!(
                "cannot check the writable grant {} for setuid/setgid files (which the program \
                 could rewrite keeping their bits, so each is made read-only): {} ({}); grant a \
                 smaller tree, or grant it read-only",
                u.tree.display(),
                u.dir.display(),
                u.why
            ),
        });
    }
    for u in unchecked {
        for g in &plan.deny_globs {
            if !g.pattern.reaches(&u.dir) {
                continue;
            }
            if !g.best_effort {
                return Err(refused(
                    format!("{} glob {:?}", g.kind.list(), g.pattern.as_str()),
                    format!(
                        "the walk of {} could not check {}: {}; list the glob in \
                         deny.best_effort to run with it enforced in part, or grant a smaller tree",
                        u.tree.display(),
                        u.dir.display(),
                        u.why
                    ),
                ));
            }
            notes.push(format!(
                "{} glob {:?} (best-effort) was not checked under {}: {}",
                g.kind.list(),
                g.pattern.as_str(),
                u.dir.display(),
                u.why
            ));
        }
    }
    Ok(unchecked.is_empty())
}

/// A deny.write or deny.exec path inside a writable grant that does not exist at start (or is
/// a symlink, which cannot carry a mount) cannot be masked: the program could create it.
/// Refused unless best-effort.
fn refuse_absent_denials(root: &OwnedFd, plan: &MountPlan) -> Result<(), SandboxError> {
    for (kind, path) in &plan.denials {
        if *kind == DenyKind::Read || plan.best_effort_paths.contains(path) {
            continue;
        }
        let Some(g) = holding_grant(&plan.grants, path).filter(|g| g.write) else {
            continue;
        };
        let step = format!("{} {}", kind.list(), path.display());
        let what = match open_in(root, path).map_err(setup(step.clone()))? {
            None => "does not exist",
            Some(f) if fd::fd_kind(f.as_raw_fd()).map_err(setup(step))? == FileKind::Symlink => {
                "is a symlink (which cannot be masked)"
            }
            Some(_) => continue,
        };
        return Err(refused(
            format!("{} {}", kind.list(), path.display()),
            format!(
                "it {what} inside the writable grant {}, so the program could create it; \
                 create it before the run, or mark it best-effort in deny.best_effort",
                g.path.display()
            ),
        ));
    }
    Ok(())
}

/// Binds every directory between a writable grant's root and a mask onto itself. The kernel
/// refuses to rename or remove a dentry that is a mount point in the caller's namespace (EBUSY),
/// so neither the masks nor their parents can be moved away and recreated unmasked (`mv .git x;
/// mkdir -p .git/hooks`); a hard link across the mounts is EXDEV. Made before the masks, so
/// the recursive clones copy only nested grants, not masks. Returns how many were made.
fn pin_ancestors(
    root: &OwnedFd,
    grants: &[Grant],
    denials: &[(DenyKind, PathBuf)],
) -> Result<usize, SandboxError> {
    let mut pins: Vec<&Path> = Vec::new();
    for (_, path) in denials {
        let Some(g) = holding_grant(grants, path).filter(|g| g.write) else {
            continue;
        };
        pins.extend(
            path.ancestors()
                .skip(1)
                .take_while(|d| *d != g.path && d.starts_with(&g.path)),
        );
    }
    pins.sort_by(|a, b| depth(a).cmp(&depth(b)).then(a.cmp(b)));
    pins.dedup();
    for dir in &pins {
        let step = format!("pin {} (parent of a mask)", dir.display());
        let Some(f) = open_in(root, dir).map_err(setup(step.clone()))? else {
            continue;
        };
        if fd::fd_kind(f.as_raw_fd()).map_err(setup(step.clone()))? != FileKind::Dir {
            continue;
        }
        bind(&f, &f, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, dir).map_err(setup(step))?;
    }
    Ok(pins.len())
}

/// Name (in the new root) of the empty file that masks denied files; removed before pivot.
const EMPTY_FILE: &str = ".bunker-empty";

fn grant(root: &OwnedFd, g: &Grant, src: &Source) -> Result<(), SandboxError> {
    let step = format!("bind mount {} → {}", g.path.display(), g.path.display());
    match src {
        Source::Symlink(target) => {
            // Recreate the link, not what it points to: its target is mounted only if granted.
            if open_in(root, &g.path)
                .map_err(setup(step.clone()))?
                .is_none()
            {
                let parent = g.path.parent().unwrap_or(Path::new("/"));
                let dir = make_node(root, parent, Node::Dir).map_err(setup(step.clone()))?;
                let name = g.path.file_name().map(PathBuf::from).unwrap_or_default();
                fd::symlinkat(target, dir.as_raw_fd(), &name).map_err(setup(step))?;
            }
            Ok(())
        }
        Source::Tree { tree, kind, .. } => {
            let node = if *kind == FileKind::Dir {
                Node::Dir
            } else {
                Node::File
            };
            let target = make_node(root, &g.path, node).map_err(setup(step.clone()))?;
            mount::attach_tree(tree, &target, &g.path).map_err(setup(step))
        }
    }
}

fn build_dev(root: &OwnedFd, devices: &[(&str, OwnedFd)], tty: bool) -> Result<(), SandboxError> {
    let dev = make_node(root, Path::new("/dev"), Node::Dir).map_err(setup("mkdir /dev"))?;
    tmpfs(
        &dev,
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "size=64k,nr_inodes=64,mode=0755",
    )
    .map_err(setup("mount tmpfs on /dev"))?;
    let dev = open_in(root, Path::new("/dev"))
        .map_err(setup("open /dev"))?
        .ok_or_else(|| setup("open /dev")(SysError::from_errno("openat2(/dev)", libc::ENOENT)))?;
    for (name, host) in devices {
        let step = format!("bind mount /dev/{name} → /dev/{name}");
        fd::touchat(dev.as_raw_fd(), Path::new(name), 0o666).map_err(setup(step.clone()))?;
        let target = open_in(root, &Path::new("/dev").join(name))
            .map_err(setup(step.clone()))?
            .ok_or_else(|| {
                setup(step.clone())(SysError::from_errno("open target", libc::ENOENT))
            })?;
        // Device binds keep their device semantics (no nodev), but may not be setuid or exec.
        bind(
            host,
            &target,
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
            &Path::new("/dev").join(name),
        )
        .map_err(setup(step))?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        fd::symlinkat(Path::new(target), dev.as_raw_fd(), Path::new(name))
            .map_err(setup(format!("symlink /dev/{name}")))?;
    }
    fd::mkdirat(dev.as_raw_fd(), Path::new("shm"), 0o1777).map_err(setup("mkdir /dev/shm"))?;
    let shm = open_in(root, Path::new("/dev/shm"))
        .map_err(setup("open /dev/shm"))?
        .ok_or_else(|| setup("open /dev/shm")(SysError::from_errno("openat2", libc::ENOENT)))?;
    tmpfs(&shm, NOSUID_NODEV | libc::MS_NOEXEC, "size=16m,mode=1777")
        .map_err(setup("mount tmpfs on /dev/shm"))?;
    if tty {
        fd::mkdirat(dev.as_raw_fd(), Path::new("pts"), 0o755).map_err(setup("mkdir /dev/pts"))?;
        let pts = open_in(root, Path::new("/dev/pts"))
            .map_err(setup("open /dev/pts"))?
            .ok_or_else(|| setup("open /dev/pts")(SysError::from_errno("openat2", libc::ENOENT)))?;
        mount::mount(
            Some("devpts"),
            &fd::proc_fd_path(&pts),
            Some("devpts"),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        )
        .map_err(setup("mount devpts on /dev/pts"))?;
        fd::symlinkat(Path::new("pts/ptmx"), dev.as_raw_fd(), Path::new("ptmx"))
            .map_err(setup("symlink /dev/ptmx"))?;
    }
    Ok(())
}

/// Mounts the sandbox's procfs; returns its `sys/user` directory when `user_namespace`.
fn build_proc(
    root: &OwnedFd,
    staging_root: &OwnedFd,
    user_namespace: bool,
) -> Result<Option<OwnedFd>, SandboxError> {
    let proc_dir = make_node(root, Path::new("/proc"), Node::Dir).map_err(setup("mkdir /proc"))?;
    // A fresh procfs shows only this pid namespace's processes.
    mount::mount(
        Some("proc"),
        &fd::proc_fd_path(&proc_dir),
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
    .map_err(setup("mount proc on /proc"))?;
    let proc_fs = open_in(root, Path::new("/proc"))
        .map_err(setup("open /proc"))?
        .ok_or_else(|| setup("open /proc")(SysError::from_errno("openat2(/proc)", libc::ENOENT)))?;
    // Opened before /proc/sys is bound read-only over itself: lookups from this fd stay on
    // the writable procfs mount beneath that bind.
    let user_counters = if user_namespace {
        let step = "open /proc/sys/user";
        Some(
            open_in(root, Path::new("/proc/sys/user"))
                .map_err(setup(step))?
                .ok_or_else(|| setup(step)(SysError::from_errno("openat2", libc::ENOENT)))?,
        )
    } else {
        None
    };
    for name in PROC_READ_ONLY {
        let path = Path::new("/proc").join(name);
        let step = format!("mask {} read-only", path.display());
        let Some(f) = open_in(root, &path).map_err(setup(step.clone()))? else {
            continue;
        };
        bind(
            &f,
            &f,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            &path,
        )
        .map_err(setup(step))?;
    }
    mask_host_identity(root, &proc_fs, staging_root)?;
    Ok(user_counters)
}

/// Binds a read-only file holding `contents` over `target` (a file of /proc), through a file
/// made on the staging tmpfs and removed again (the bind keeps it).
fn bind_file_over(
    root: &OwnedFd,
    staging_root: &OwnedFd,
    contents: &[u8],
    target: &Path,
) -> Result<(), SandboxError> {
    let step = format!("mask {}", target.display());
    let Some(target_fd) = open_in(root, target).map_err(setup(step.clone()))? else {
        return Ok(());
    };
    let name = Path::new(".bunker-proc-mask");
    let path = Path::new(&fd::proc_fd_path(staging_root)).join(name);
    let file = fd::open(
        &path,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
        0o444,
    )
    .map_err(setup(step.clone()))?;
    fd::write_all(file.as_raw_fd(), contents).map_err(setup(step.clone()))?;
    drop(file);
    let source = open_in(staging_root, name)
        .map_err(setup(step.clone()))?
        .ok_or_else(|| setup(step.clone())(SysError::from_errno("openat2", libc::ENOENT)))?;
    bind(
        &source,
        &target_fd,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        target,
    )
    .map_err(setup(step.clone()))?;
    fd::unlinkat(staging_root.as_raw_fd(), name).map_err(setup(step))
}

/// Hides what identifies the host in /proc: [`PROC_HOST_IDENTITY`] become empty, and the boot
/// id is a fresh random UUID (the kernel's `random/uuid` gives a new one at each read).
fn mask_host_identity(
    root: &OwnedFd,
    proc_fs: &OwnedFd,
    staging_root: &OwnedFd,
) -> Result<(), SandboxError> {
    for name in PROC_HOST_IDENTITY {
        bind_file_over(root, staging_root, b"", &Path::new("/proc").join(name))?;
    }
    let uuid_path = Path::new(&fd::proc_fd_path(proc_fs)).join("sys/kernel/random/uuid");
    let step = "make a boot id for the sandbox";
    let uuid = fd::open(&uuid_path, libc::O_RDONLY | libc::O_CLOEXEC, 0).map_err(setup(step))?;
    let mut boot_id = [0u8; 64];
    let n = fd::read(uuid.as_raw_fd(), &mut boot_id).map_err(setup(step))?;
    bind_file_over(root, staging_root, &boot_id[..n], Path::new(BOOT_ID))
}

fn deny(
    root: &OwnedFd,
    kind: DenyKind,
    path: &Path,
    staging_root: &OwnedFd,
    empty_file: &mut Option<OwnedFd>,
) -> Result<(), SandboxError> {
    let step = format!("{} mask {}", kind.list(), path.display());
    let Some(target) = open_in(root, path).map_err(setup(step.clone()))? else {
        // Not visible inside: nothing to hide.
        return Ok(());
    };
    let kind_of = fd::fd_kind(target.as_raw_fd()).map_err(setup(step.clone()))?;
    match kind {
        DenyKind::Read => match kind_of {
            FileKind::Dir => tmpfs(
                &target,
                libc::MS_RDONLY | NOSUID_NODEV | libc::MS_NOEXEC,
                "size=4k,nr_inodes=1,mode=0555",
            )
            .map_err(setup(step)),
            FileKind::Symlink => Ok(()),
            _ => {
                if empty_file.is_none() {
                    fd::touchat(staging_root.as_raw_fd(), Path::new(EMPTY_FILE), 0o444)
                        .map_err(setup(step.clone()))?;
                    *empty_file = open_in(staging_root, Path::new(EMPTY_FILE))
                        .map_err(setup(step.clone()))?;
                }
                match empty_file {
                    Some(e) => bind(
                        e,
                        &target,
                        MOUNT_ATTR_RDONLY
                            | MOUNT_ATTR_NOSUID
                            | MOUNT_ATTR_NODEV
                            | MOUNT_ATTR_NOEXEC,
                        path,
                    )
                    .map_err(setup(step)),
                    None => Ok(()),
                }
            }
        },
        DenyKind::Write | DenyKind::Exec if kind_of == FileKind::Symlink => Ok(()),
        DenyKind::Write => bind(&target, &target, MOUNT_ATTR_RDONLY, path).map_err(setup(step)),
        DenyKind::Exec => bind(&target, &target, MOUNT_ATTR_NOEXEC, path).map_err(setup(step)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::default()
    }

    #[test]
    fn grants_are_merged_sorted_and_reserved_paths_skipped() {
        let mut p = policy();
        p.allow.read = vec![
            "/usr/lib".into(),
            "/usr".into(),
            "/proc/self".into(),
            "/data/".into(),
        ];
        p.allow.exec = vec!["/usr".into()];
        p.allow.write = vec!["/data".into(), "/dev/shm".into()];
        let plan = plan(&p);
        let got: Vec<_> = plan
            .grants
            .iter()
            .map(|g| (g.path.to_str().unwrap(), g.write))
            .collect();
        // /usr/lib is inside /usr with the same access: the /usr bind already holds it.
        assert_eq!(got, vec![("/data", true), ("/usr", false)]);
        assert_eq!(plan.notes.len(), 2, "{:?}", plan.notes);
    }

    #[test]
    fn nested_grants_are_kept_when_their_access_or_owner_may_differ() {
        let mut p = policy();
        p.allow.read = vec![
            "/".into(),
            "/etc".into(),
            "/data/ro".into(),
            "/data/ro/deeper".into(),
        ];
        p.allow.write = vec!["/data".into(), "/data/rw-again".into()];
        let plan = plan(&p);
        let got: Vec<_> = plan
            .grants
            .iter()
            .map(|g| (g.path.to_str().unwrap(), g.write))
            .collect();
        // /etc adds nothing to /; the nested grants outside the system trees may have another
        // owner (each is mapped to its own as root).
        assert_eq!(
            got,
            vec![
                ("/", false),
                ("/data", true),
                ("/data/ro", false),
                ("/data/rw-again", true),
                ("/data/ro/deeper", false)
            ]
        );
    }

    #[test]
    fn only_grants_at_or_beneath_an_exec_grant_may_execute() {
        let mut p = policy();
        p.allow.read = vec!["/".into(), "/usr/share".into(), "/data".into()];
        p.allow.exec = vec!["/usr".into()];
        p.allow.write = vec!["/usr/local/scratch".into(), "/work".into()];
        let plan = plan(&p);
        let got: Vec<_> = plan
            .grants
            .iter()
            .map(|g| (g.path.to_str().unwrap(), g.write, g.exec))
            .collect();
        // /usr/share adds nothing beside /usr (same access, a system tree); /data is kept inside
        // / although its access is the same: outside the system trees it is mapped to its own
        // owner (grants.rs).
        assert_eq!(
            got,
            vec![
                ("/", false, false),
                ("/data", false, false),
                ("/usr", false, true),
                ("/work", true, false),
                ("/usr/local/scratch", true, true),
            ]
        );
        let noexec = |path: &str| {
            let g = plan.grants.iter().find(|g| g.path == Path::new(path));
            crate::grants::grant_attrs(g.unwrap()) & MOUNT_ATTR_NOEXEC != 0
        };
        assert!(noexec("/") && noexec("/work"));
        assert!(!noexec("/usr") && !noexec("/usr/local/scratch"));
    }

    #[test]
    fn denials_split_paths_and_globs() {
        let mut p = policy();
        p.deny.read = vec![
            PathPattern::Path("/home/u/.ssh".into()),
            PathPattern::Glob(PathGlob::new("*.key").unwrap()),
        ];
        p.deny.write = vec![PathPattern::Path("/data/ro/../ro".into())];
        let plan = plan(&p);
        assert_eq!(
            plan.denials,
            vec![
                (DenyKind::Write, PathBuf::from("/data/ro")),
                (DenyKind::Read, PathBuf::from("/home/u/.ssh")),
            ]
        );
        assert_eq!(
            plan.deny_globs,
            vec![DenyGlob {
                kind: DenyKind::Read,
                pattern: PathGlob::new("*.key").unwrap(),
                best_effort: false
            }]
        );
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a/./b/../c/")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/../..")), PathBuf::from("/"));
    }
}
