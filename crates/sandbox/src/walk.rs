//! The walk of the granted trees for what the deny globs name, for unix sockets, and — in
//! writable grants — for setuid/setgid files and files with a file capability.
//!
//! It runs in init, inside the staging root, once every grant is mounted. Each directory is read
//! with `getdents64` into a 64 KiB buffer and its entries typed by `d_type` (no `stat` per
//! entry, except on filesystems that leave `d_type` unknown); each path is matched against every
//! glob ([`bunker_policy::PathGlob::matches`], the matcher `bunker check` uses) from a reused
//! buffer, so an entry costs no allocation. In a writable grant each regular file also costs
//! one `fstatat` (its mode), and a file with an execute bit one `lgetxattr`
//! (`security.capability`). The directories go through one queue shared by a worker per core.
//!
//! A walk that could not finish says so in [`Scan::unchecked`]; the caller refuses the run for
//! every glob that is not best-effort, and for any part of a writable grant (see
//! `mounts::build_root`).

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use bunker_sys::fd::{self, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS};

use crate::mounts::{holding_grant, DenyGlob, DenyKind, Grant};

/// Most directory entries of read-only grants the scan for unix sockets visits when there are
/// no deny globs (it runs at every start, so it stays small: a few ms).
pub const SOCKET_WALK_BUDGET: usize = 10_000;

/// Most directory entries a walk for deny globs visits before it gives up (and the run is
/// refused unless every glob is best-effort): about 1.5 s of walking on this class of machine
/// (docs/benchmarks.md), so only a tree larger than any project stops it. Writable grants are
/// always walked up to this many entries (and the run refused past it): a setuid file left
/// unmasked there is a privilege escalation.
pub const GLOB_WALK_BUDGET: usize = 4_000_000;

/// Mode bits that make a file run with its owner's or group's ids.
const SETID_BITS: u32 = 0o6000;

/// Any execute bit: only then can a file capability take effect.
const EXEC_BITS: u32 = 0o111;

/// Bytes of directory records read per `getdents64`.
const DIRENT_BUFFER: usize = 64 * 1024;

/// Most walking threads (init's own included).
const MAX_WORKERS: usize = 4;

/// The system's programs and libraries, and kernel filesystems: deny globs are not expanded
/// there (walking /usr costs ~100 ms at every start, and `.env` or `*.key` files of a user do
/// not live there). A deny *path* still masks anything in them.
pub const NOT_GLOB_WALKED: [&str; 9] = [
    "/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/proc", "/dev", "/sys",
];

/// Trees of the operating system (binaries, libraries, configuration).
fn is_system_tree(p: &Path) -> bool {
    [
        "/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/opt",
    ]
    .iter()
    .any(|s| p.starts_with(s))
        || p == Path::new("/")
}

/// A part of a granted tree the walk did not check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unchecked {
    /// The directory where checking stopped.
    pub dir: PathBuf,
    /// The granted tree it belongs to.
    pub tree: PathBuf,
    /// Why (`the walk stopped after 4000000 entries`, `it cannot be listed`).
    pub why: String,
    /// It is inside a writable grant: setuid/setgid files there may be unmasked.
    pub writable: bool,
}

/// What the walk found.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Paths to mask: deny-glob matches, unix sockets (masked as `Read`), and the setuid/setgid
    /// files and files with a file capability of writable grants (as `Write`: a shared writable
    /// mapping rewrites a file without the kernel clearing those bits).
    pub found: Vec<(DenyKind, PathBuf)>,
    /// Notes for `enforced.notes`.
    pub notes: Vec<String>,
    /// What could not be checked; empty when the walk was complete.
    pub unchecked: Vec<Unchecked>,
    /// Directory entries visited.
    pub entries: usize,
}

/// `path` relative to `/` (for lookups relative to the new root's fd; `/` itself is `.`).
fn rel(path: &Path) -> &Path {
    match path.strip_prefix("/") {
        Ok(r) if r.as_os_str().is_empty() => Path::new("."),
        Ok(r) => r,
        Err(_) => path,
    }
}

/// Walks the granted trees under `root` (the staging root's fd, grants attached) for paths
/// matching `globs`, for unix sockets, and for privileged files in writable grants. A socket
/// file in a granted tree would let the program connect to a host service (a read-only mount
/// does not stop `connect`, and landlock up to ABI 7 does not mediate it), so each one found is
/// masked like a denied file. A setuid/setgid file, or one with a `security.capability`, in a
/// writable grant could be rewritten through `mmap(MAP_SHARED)` keeping its privilege on the
/// host (the kernel clears the bits on `write`, not on page writes), so each is bound read-only.
pub fn scan(root: &OwnedFd, grants: &[Grant], globs: &[DenyGlob]) -> Scan {
    let other_budget = if globs.is_empty() {
        SOCKET_WALK_BUDGET
    } else {
        GLOB_WALK_BUDGET
    };
    let has_globs = !globs.is_empty();
    let any_writable = grants.iter().any(|g| g.write);
    // Whether a directory is walked at all: never the system trees (unless writable); /etc
    // only for globs (it holds no sockets).
    let walked = move |dir: &Path| -> bool {
        let writable = grants.iter().any(|g| g.write && dir.starts_with(&g.path));
        writable
            || !(NOT_GLOB_WALKED.iter().any(|t| dir.starts_with(t))
                || (!has_globs && dir.starts_with("/etc")))
    };
    let writable_at = move |p: &Path| -> bool { holding_grant(grants, p).is_some_and(|g| g.write) };
    // Roots to walk: the granted trees, without walking the same tree twice, and every writable
    // grant inside a read-only one (the read-only walk, whose budget is small, does not enter
    // it); writable grants first, then the caller's own read grants, the system trees last.
    let mut roots: Vec<&Grant> = Vec::new();
    for g in grants {
        let beneath = roots.iter().any(|r| g.path.starts_with(&r.path));
        let writable_root = g.write && !g.path.parent().is_some_and(writable_at);
        if !beneath || writable_root {
            roots.push(g);
        }
    }
    roots.sort_by_key(|g| (!g.write, is_system_tree(&g.path)));
    let mut skipped = false;
    let mut start = Vec::new();
    for g in roots.iter().rev() {
        if !walked(&g.path) {
            skipped = true;
            continue;
        }
        start.push(g.path.clone());
    }
    let tree_of = |dir: &Path| -> PathBuf {
        roots
            .iter()
            .filter(|g| dir.starts_with(&g.path))
            .max_by_key(|g| g.path.components().count())
            .map(|g| g.path.clone())
            .unwrap_or_else(|| dir.to_path_buf())
    };

    let workers = if has_globs || any_writable {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, MAX_WORKERS)
    } else {
        1
    };
    let walk = Walk {
        root,
        globs,
        walked: &walked,
        writable_at: &writable_at,
        budgets: [GLOB_WALK_BUDGET, other_budget],
        visited: [AtomicUsize::new(0), AtomicUsize::new(0)],
        queue: Mutex::new(Queue {
            dirs: start,
            busy: 0,
            stopped: false,
            others_stopped: false,
        }),
        wake: Condvar::new(),
    };
    // A writable grant of a single file is no directory to walk: its own mode is checked.
    let mut root_files = Local::default();
    for g in grants.iter().filter(|g| g.write) {
        if let Ok(name) = fd::cstr("fstatat", rel(&g.path)) {
            walk.check_file(root.as_raw_fd(), &name, &g.path, None, &mut root_files);
        }
    }
    let mut results: Vec<Local> = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..workers).map(|_| s.spawn(|| walk.work())).collect();
        let mut all = vec![root_files, walk.work()];
        for h in helpers {
            // A worker that panicked left its part unchecked: say so rather than pass.
            all.push(h.join().unwrap_or_else(|_| Local {
                unchecked: vec![(PathBuf::from("/"), "a walking thread failed".into())],
                ..Local::default()
            }));
        }
        all
    });

    let mut out = Scan {
        entries: walk.visited.iter().map(|v| v.load(Ordering::Relaxed)).sum(),
        ..Scan::default()
    };
    let mut unlisted = Vec::new();
    for r in results.iter_mut() {
        out.found.append(&mut r.found);
        unlisted.append(&mut r.unlisted);
        skipped |= r.skipped;
        for (dir, why) in r.unchecked.drain(..) {
            out.unchecked.push(Unchecked {
                tree: tree_of(&dir),
                writable: writable_at(&dir),
                dir,
                why,
            });
        }
    }
    out.found.sort();
    unlisted.sort();
    if let Some(first) = unlisted.first() {
        out.notes.push(format!(
            "{} director{} of writable grants (first: {}) can be searched but not listed, so \
             may hold setuid/setgid files the walk cannot see: made read-only",
            unlisted.len(),
            if unlisted.len() == 1 { "y" } else { "ies" },
            first.display()
        ));
    }
    out.unchecked.sort_by(|a, b| a.dir.cmp(&b.dir));
    if let Some(u) = out.unchecked.iter().find(|u| !u.writable) {
        if !has_globs {
            out.notes.push(format!(
                "unix sockets: {} under {}; later paths were not checked",
                u.why,
                u.dir.display()
            ));
        }
    }
    if skipped && has_globs {
        out.notes.push(format!(
            "deny globs are not expanded inside {} (read-only system trees); name a path there \
             in the deny list to mask it",
            NOT_GLOB_WALKED.join(", ")
        ));
    }
    out
}

/// The shared state of one walk.
struct Walk<'a> {
    root: &'a OwnedFd,
    globs: &'a [DenyGlob],
    walked: &'a (dyn Fn(&Path) -> bool + Sync),
    /// Whether a path is in a writable grant (its holding grant is writable).
    writable_at: &'a (dyn Fn(&Path) -> bool + Sync),
    /// Most entries to visit: in writable grants, and elsewhere.
    budgets: [usize; 2],
    visited: [AtomicUsize; 2],
    queue: Mutex<Queue>,
    wake: Condvar,
}

struct Queue {
    /// Directories to read.
    dirs: Vec<PathBuf>,
    /// Workers reading a directory now (each may add more).
    busy: usize,
    /// The writable grants' budget ran out: everyone stops (the run is refused).
    stopped: bool,
    /// The read-only grants' budget ran out: only directories of writable grants are read.
    others_stopped: bool,
}

/// One worker's findings.
#[derive(Default)]
struct Local {
    found: Vec<(DenyKind, PathBuf)>,
    /// Directories of writable grants that could not be listed (bound read-only).
    unlisted: Vec<PathBuf>,
    unchecked: Vec<(PathBuf, String)>,
    skipped: bool,
}

impl Walk<'_> {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A poisoned queue still holds valid paths; the panicking worker reports itself.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes directories from the queue until it is empty and nobody can add more.
    fn work(&self) -> Local {
        let mut local = Local::default();
        let mut buf = vec![0u8; DIRENT_BUFFER];
        let mut path = Vec::with_capacity(4096);
        let mut subdirs = Vec::new();
        loop {
            let dir = {
                let mut q = self.lock();
                loop {
                    if q.stopped {
                        break None;
                    }
                    if let Some(d) = q.dirs.pop() {
                        let writable = (self.writable_at)(&d);
                        if q.others_stopped && !writable {
                            continue;
                        }
                        q.busy += 1;
                        break Some((d, writable));
                    }
                    if q.busy == 0 {
                        break None;
                    }
                    q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            let Some((dir, writable)) = dir else {
                self.wake.notify_all();
                return local;
            };
            let finished = self.read_dir(
                &dir,
                writable,
                &mut buf,
                &mut path,
                &mut subdirs,
                &mut local,
            );
            let mut q = self.lock();
            q.busy -= 1;
            if finished {
                q.dirs.append(&mut subdirs);
            } else if writable {
                q.stopped = true;
            } else {
                q.others_stopped = true;
                subdirs.clear();
            }
            drop(q);
            self.wake.notify_all();
        }
    }

    /// Whether the file `name` in `dirfd` (`full` inside) is setuid/setgid or carries a file
    /// capability; if so it goes into `local` to be bound read-only. `dtype` is its `d_type`
    /// when known (only a regular file matters). Returns the file's type when it was stat'ed.
    fn check_file(
        &self,
        dirfd: i32,
        name: &std::ffi::CStr,
        full: &Path,
        dtype: Option<u8>,
        local: &mut Local,
    ) -> Option<u8> {
        if dtype.is_some_and(|t| t != fd::DT_REG && t != fd::DT_UNKNOWN) {
            return dtype;
        }
        let mode = match fd::fstatat_mode(dirfd, name) {
            Ok(m) => m,
            Err(e) if e.errno == libc::ENOENT => return dtype,
            Err(e) => {
                local
                    .unchecked
                    .push((full.to_path_buf(), format!("its mode cannot be read ({e})")));
                return dtype;
            }
        };
        let kind = ((mode & libc::S_IFMT) >> 12) as u8;
        if kind != fd::DT_REG {
            return Some(kind);
        }
        let privileged = mode & SETID_BITS != 0
            || (mode & EXEC_BITS != 0
                // An error other than "none" (ENODATA) counts as one: masking is cheap.
                && fd::has_xattr(dirfd, name, c"security.capability").unwrap_or(true));
        if privileged {
            local.found.push((DenyKind::Write, full.to_path_buf()));
        }
        Some(kind)
    }

    /// Reads one directory: matches, sockets and (in a writable grant) privileged files into
    /// `local`, directories to descend into `subdirs`. False when the budget ran out here.
    fn read_dir(
        &self,
        dir: &Path,
        writable: bool,
        buf: &mut [u8],
        path: &mut Vec<u8>,
        subdirs: &mut Vec<PathBuf>,
        local: &mut Local,
    ) -> bool {
        let opened = fd::openat2(
            Some(self.root.as_raw_fd()),
            rel(dir),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0,
            RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        );
        let dirfd = match opened {
            Ok(f) => f,
            // Gone or replaced since it was listed: nothing there to check.
            Err(e) if matches!(e.errno, libc::ENOENT | libc::ENOTDIR | libc::ELOOP) => return true,
            // A directory nobody inside may search hides nothing; one that may be searched but
            // not listed could hold a denied name the program can guess.
            Err(e) if e.errno == libc::EACCES => {
                if !fd::can_search(self.root.as_raw_fd(), rel(dir)) {
                    return true;
                }
                if writable {
                    // It may hold a setuid file the program can reach by name: the whole
                    // directory is bound read-only instead.
                    local.found.push((DenyKind::Write, dir.to_path_buf()));
                    local.unlisted.push(dir.to_path_buf());
                } else {
                    local.unchecked.push((
                        dir.to_path_buf(),
                        "it can be searched but not listed".into(),
                    ));
                }
                return true;
            }
            Err(e) => {
                local
                    .unchecked
                    .push((dir.to_path_buf(), format!("it cannot be opened ({e})")));
                return true;
            }
        };
        path.clear();
        path.extend_from_slice(dir.as_os_str().as_bytes());
        if path.last() != Some(&b'/') {
            path.push(b'/');
        }
        let base = path.len();
        loop {
            let n = match fd::getdents64(dirfd.as_raw_fd(), buf) {
                Ok(0) => return true,
                Ok(n) => n,
                Err(e) => {
                    local
                        .unchecked
                        .push((dir.to_path_buf(), format!("it cannot be read ({e})")));
                    return true;
                }
            };
            let mut count = 0;
            for (dtype, name) in fd::dirents(&buf[..n]) {
                count += 1;
                path.truncate(base);
                path.extend_from_slice(name.to_bytes());
                let full = Path::new(OsStr::from_bytes(path));
                let dtype = if writable {
                    self.check_file(dirfd.as_raw_fd(), name, full, Some(dtype), local)
                        .unwrap_or(fd::DT_UNKNOWN)
                } else if dtype == fd::DT_UNKNOWN {
                    fd::fstatat_type(dirfd.as_raw_fd(), name).unwrap_or(fd::DT_UNKNOWN)
                } else {
                    dtype
                };
                if dtype == fd::DT_SOCK {
                    local.found.push((DenyKind::Read, full.to_path_buf()));
                    continue;
                }
                let mut masked = false;
                for g in self.globs {
                    if g.pattern.matches(full) {
                        local.found.push((g.kind, full.to_path_buf()));
                        masked |= g.kind == DenyKind::Read;
                    }
                }
                // A masked directory is empty inside; d_type does not follow symlinks, so the
                // walk never leaves the granted trees.
                // A writable grant inside a read-only one is walked from its own root.
                if !masked && dtype == fd::DT_DIR && (writable || !(self.writable_at)(full)) {
                    if (self.walked)(full) {
                        subdirs.push(full.to_path_buf());
                    } else {
                        local.skipped = true;
                    }
                }
            }
            let class = usize::from(!writable);
            let before = self.visited[class].fetch_add(count, Ordering::Relaxed);
            if before + count > self.budgets[class] {
                local.unchecked.push((
                    dir.to_path_buf(),
                    format!("the walk stopped after {} entries", self.budgets[class]),
                ));
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(path: &Path, write: bool) -> Grant {
        Grant {
            path: path.to_path_buf(),
            write,
            exec: false,
        }
    }

    fn glob(kind: DenyKind, pattern: &str) -> DenyGlob {
        DenyGlob {
            kind,
            pattern: bunker_policy::PathGlob::new(pattern).unwrap(),
            best_effort: false,
        }
    }

    /// What the walk masks is what the policy's decision denies, path by path, on a real tree.
    /// The old walk compiled its own globs and prefixed `**/` to `**.key` while the policy did
    /// not: the policy said `/t/x/server.key` was readable, the walk masked it.
    #[test]
    fn the_walk_masks_exactly_what_the_policy_denies() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        for f in [
            "server.key",
            "x/server.key",
            "x/server.keys",
            "app/.env",
            "app/.envrc",
            "app/private/inner/a.txt",
            "pkg1/sub/a.txt",
            "pkg1/sub/deeper/b.txt",
            "pkg2/a.pem",
            "pkg2/c.pem",
            "logs/1.log",
            "logs/x.log",
            "deep/a/b/c",
            "deepish/a",
        ] {
            let p = t.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "x").unwrap();
        }
        let dir = t.display().to_string();
        let patterns = [
            "**.key".to_string(),
            ".env".to_string(),
            "**/private".to_string(),
            format!("{dir}/pkg*/sub/*.txt"),
            "{a,b}.pem".to_string(),
            "[0-9]*.log".to_string(),
            format!("{dir}/deep/**"),
        ];
        let mut policy = bunker_policy::Policy::default();
        policy.allow.read = vec![t.to_path_buf()];
        policy.deny.read = patterns
            .iter()
            .map(|p| bunker_policy::PathPattern::Glob(bunker_policy::PathGlob::new(p).unwrap()))
            .collect();
        let globs: Vec<_> = patterns.iter().map(|p| glob(DenyKind::Read, p)).collect();
        let root = fd::openat2(None, Path::new("/"), libc::O_PATH, 0, 0).unwrap();
        let scan = scan(&root, &[grant(t, false)], &globs);
        assert!(scan.unchecked.is_empty(), "{:?}", scan.unchecked);
        let mut paths = vec![t.to_path_buf()];
        let mut i = 0;
        while i < paths.len() {
            if paths[i].is_dir() {
                for e in std::fs::read_dir(&paths[i]).unwrap() {
                    paths.push(e.unwrap().path());
                }
            }
            i += 1;
        }
        let mut denied = 0;
        for p in &paths {
            let masked = scan.found.iter().any(|(_, f)| p.starts_with(f));
            let decision = policy.path_decision(p, bunker_policy::Access::Read);
            assert_eq!(
                masked,
                !decision.allowed,
                "{}: {}",
                p.display(),
                decision.rule
            );
            denied += usize::from(masked);
        }
        assert!(denied >= 9, "{denied} of {}", paths.len());
        assert!(
            policy
                .path_decision(&t.join("x/server.keys"), bunker_policy::Access::Read)
                .allowed
        );
    }

    /// In a writable grant the walk finds setuid and setgid files (at any depth, and a grant
    /// that is one such file), not ordinary ones, executable or not; in a read-only grant
    /// (nested in the writable one, or alone) it stats nothing.
    #[test]
    fn the_walk_finds_setuid_and_setgid_files_in_writable_grants_only() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let file = |name: &str, mode: u32| {
            let p = t.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "x").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        let suid = file("rw/a/b/suid", 0o4755);
        let sgid = file("rw/sgid", 0o2750);
        file("rw/plain", 0o755);
        file("rw/data", 0o644);
        file("rw/ro/suid", 0o4755);
        file("elsewhere/suid", 0o4755);
        let single = file("single", 0o4755);
        let root = fd::openat2(None, Path::new("/"), libc::O_PATH, 0, 0).unwrap();
        let grants = [
            Grant {
                write: true,
                ..grant(&t.join("rw"), false)
            },
            grant(&t.join("rw/ro"), false),
            grant(&t.join("elsewhere"), false),
            Grant {
                write: true,
                ..grant(&single, false)
            },
        ];
        let scan = scan(&root, &grants, &[]);
        assert!(scan.unchecked.is_empty(), "{:?}", scan.unchecked);
        let mut found = scan.found.clone();
        found.sort();
        let mut want = vec![
            (DenyKind::Write, sgid),
            (DenyKind::Write, single),
            (DenyKind::Write, suid),
        ];
        want.sort();
        assert_eq!(found, want);
    }

    /// The walk over a real tree, with `/` as the root fd (paths are host paths).
    #[test]
    fn the_walk_finds_every_match_and_socket_and_skips_masked_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        for i in 0..50 {
            let d = t.join(format!("pkg{i}/sub/deep"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("file.txt"), "x").unwrap();
        }
        std::fs::write(t.join("pkg49/sub/deep/secret.key"), "k").unwrap();
        std::fs::create_dir_all(t.join("pkg3/private/inner")).unwrap();
        std::fs::write(t.join("pkg3/private/inner/other.key"), "k").unwrap();
        let sock = t.join("pkg7/agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let root = fd::openat2(None, Path::new("/"), libc::O_PATH, 0, 0).unwrap();
        let globs = [
            glob(DenyKind::Read, "*.key"),
            glob(DenyKind::Read, "**/private"),
        ];
        let scan = scan(&root, &[grant(t, false)], &globs);
        assert!(scan.unchecked.is_empty(), "{:?}", scan.unchecked);
        let found: Vec<_> = scan.found.iter().map(|(_, p)| p.clone()).collect();
        assert_eq!(
            found,
            vec![
                sock.clone(),
                t.join("pkg3/private"),
                t.join("pkg49/sub/deep/secret.key"),
            ]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        // The masked directory was not entered: its .key file is hidden by the mask anyway.
        assert!(!found.contains(&t.join("pkg3/private/inner/other.key")));
        assert!(scan.entries > 200, "{}", scan.entries);
    }
}
