//! Landlock rules mirroring the policy's read, write and exec grants.
//!
//! Landlock is allow-only: a rule grants rights on a file or a whole directory tree, and nothing
//! can take a right back beneath it. So a deny that lies *beneath* a grant is enforced by
//! splitting the grant: the denied rights are granted to every sibling along the way down to
//! the denied path instead of to the granted directory (`/usr` with `deny.exec /usr/bin/python3`
//! becomes execute on every entry of `/usr` but `bin`, and on every entry of `/usr/bin` but
//! `python3`). The mount masks of `deny.read`/`deny.write` cover the same paths a second time;
//! glob denials (`**/*.key`) are left to the mounts (noted in the outcome). See docs/landlock.md.

use std::path::{Component, Path, PathBuf};

use bunker_policy::path::PathPattern;
use bunker_policy::{Enforcement, Policy};
use bunker_sys::landlock::{self as ll, Ruleset};
use bunker_sys::SysError;

use crate::error::SandboxError;
use crate::result::LayerStatus;

/// What the kernel enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandlockOutcome {
    pub status: LayerStatus,
    pub abi: u32,
    pub notes: Vec<String>,
}

/// Paths of the sandbox's own root that are not in the policy but must stay usable.
#[derive(Debug, Clone, Default)]
pub struct SandboxPaths {
    /// Writable: /tmp, /dev/shm, and the device nodes (/dev/null, ...).
    pub writable: Vec<std::path::PathBuf>,
    /// Read-only: /proc, /dev, and the root itself for directory traversal.
    pub readable: Vec<std::path::PathBuf>,
    /// Loopback TCP ports the program may connect to (the proxy's).
    pub connect_ports: Vec<u16>,
}

/// The lowest ABI `kernel.landlock = required` accepts: ABI 3 controls every filesystem right a
/// policy speaks of (read, write including truncate, execute, cross-directory rename).
pub const MIN_REQUIRED_ABI: u32 = 3;
/// The ABI from which everything bunker asks of landlock is enforced (TCP ports from 4, device
/// ioctl from 5, abstract unix socket and signal scoping from 6).
pub const FULL_ABI: u32 = 6;

/// Reading: open files for reading and list directories.
pub const READ: u64 = ll::FS_READ_FILE | ll::FS_READ_DIR;
/// Writing, beyond reading: write, create, remove, truncate, rename across directories.
pub const WRITE_ONLY: u64 = ll::FS_WRITE_FILE
    | ll::FS_REMOVE_DIR
    | ll::FS_REMOVE_FILE
    | ll::FS_MAKE_CHAR
    | ll::FS_MAKE_DIR
    | ll::FS_MAKE_REG
    | ll::FS_MAKE_SOCK
    | ll::FS_MAKE_FIFO
    | ll::FS_MAKE_BLOCK
    | ll::FS_MAKE_SYM
    | ll::FS_REFER
    | ll::FS_TRUNCATE;
/// What `allow.write` grants (a writable path is also readable).
pub const WRITE: u64 = READ | WRITE_ONLY;
/// What `allow.exec` grants (executing needs reading the file, and the loader its libraries).
pub const EXEC: u64 = READ | ll::FS_EXECUTE;

/// Runs in the supervisor before forking: the landlock ABI this kernel offers, or an error when
/// the policy requires landlock and the kernel cannot enforce it.
pub fn probe(policy: &Policy) -> Result<u32, SandboxError> {
    let abi = ll::abi_version().map_err(|source| SandboxError::Setup {
        step: "landlock: query the ABI version".into(),
        source,
    })?;
    check_abi(policy.kernel.landlock, abi)?;
    Ok(abi)
}

/// Whether `enforcement` can run on a kernel offering `abi`.
pub fn check_abi(enforcement: Enforcement, abi: u32) -> Result<(), SandboxError> {
    if enforcement != Enforcement::Required || abi >= MIN_REQUIRED_ABI {
        return Ok(());
    }
    Err(SandboxError::Unsupported {
        layer: "landlock".into(),
        reason: if abi == 0 {
            "the policy requires it (kernel.landlock = \"required\") and this kernel has no \
             landlock (not built in, or not in the lsm= boot list); set kernel.landlock to \
             \"best-effort\" to run without it"
                .into()
        } else {
            format!(
                "the policy requires it (kernel.landlock = \"required\") and this kernel offers \
                 ABI {abi}; bunker needs ABI {MIN_REQUIRED_ABI} (Linux 6.2) to control \
                 truncation; set kernel.landlock to \"best-effort\" to run with less"
            )
        },
    })
}

/// What a kernel offering `abi` (≥ 1) leaves unenforced, as notes; `true` when anything is.
pub fn missing_at(abi: u32) -> (Vec<String>, bool) {
    let mut notes: Vec<String> = Vec::new();
    if abi < 2 {
        notes.push("landlock ABI 1: renaming or linking across directories is refused".into());
    }
    let gaps = [
        (
            3,
            "truncation is not controlled (read-only mounts still are)",
        ),
        (
            4,
            "TCP ports not restricted (the network namespace still isolates)",
        ),
        (
            5,
            "device ioctl not restricted (seccomp still refuses TIOCSTI)",
        ),
        (
            6,
            "abstract unix sockets and signals not scoped (namespaces still isolate)",
        ),
    ];
    let mut degraded = false;
    for (needed, what) in gaps {
        if abi < needed {
            notes.push(format!("landlock ABI {abi} < {needed}: {what}"));
            degraded = true;
        }
    }
    (notes, degraded)
}

/// One planned rule: these rights beneath this path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub path: PathBuf,
    pub access: u64,
}

/// The rules and notes `apply` would use; it reads directories to split grants around denials,
/// so it must run where the paths are (inside the new root).
pub fn plan(policy: &Policy, paths: &SandboxPaths) -> (Vec<Rule>, Vec<String>) {
    let mut notes = Vec::new();
    let mut rules = Vec::new();
    for p in &paths.readable {
        // The root only needs listing: granting it READ would grant every file beneath it.
        let access = if p == Path::new("/") {
            ll::FS_READ_DIR
        } else {
            READ
        };
        rules.push(Rule {
            path: p.clone(),
            access,
        });
    }
    for p in &paths.writable {
        rules.push(Rule {
            path: p.clone(),
            access: WRITE | ll::FS_IOCTL_DEV,
        });
    }
    for p in &policy.allow.read {
        rules.push(Rule {
            path: p.clone(),
            access: READ,
        });
    }
    for p in &policy.allow.write {
        rules.push(Rule {
            path: p.clone(),
            access: WRITE,
        });
    }
    for p in &policy.allow.exec {
        rules.push(Rule {
            path: p.clone(),
            access: EXEC,
        });
    }

    // deny.read leaves directory listing (the mount mask makes the directory empty anyway).
    let denials = [
        (
            "deny.read",
            &policy.deny.read,
            WRITE_ONLY | ll::FS_READ_FILE | ll::FS_EXECUTE,
        ),
        ("deny.write", &policy.deny.write, WRITE_ONLY),
        ("deny.exec", &policy.deny.exec, ll::FS_EXECUTE),
    ];
    for (list, patterns, mask) in denials {
        for pattern in patterns {
            match pattern {
                PathPattern::Path(denied) => {
                    // Also the real file behind a symlink: exec of the link checks the target.
                    let mut targets = vec![denied.clone()];
                    if let Ok(real) = std::fs::canonicalize(denied) {
                        if real != *denied {
                            targets.push(real);
                        }
                    }
                    for target in targets {
                        rules = subtract(rules, &target, mask, &mut notes);
                    }
                }
                PathPattern::Glob(glob) => notes.push(format!(
                    "{list} glob {:?} is enforced by the mounts only (landlock rules are per path)",
                    glob.as_str()
                )),
            }
        }
    }
    rules.retain(|r| r.access != 0);
    (rules, notes)
}

/// Takes `mask` away from every rule at or beneath `denied`, and splits the rules above it.
fn subtract(rules: Vec<Rule>, denied: &Path, mask: u64, notes: &mut Vec<String>) -> Vec<Rule> {
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        if rule.access & mask == 0 {
            out.push(rule);
            continue;
        }
        if rule.path.starts_with(denied) {
            out.push(Rule {
                path: rule.path,
                access: rule.access & !mask,
            });
            continue;
        }
        if !denied.starts_with(&rule.path) {
            out.push(rule);
            continue;
        }
        // Splitting a writable grant would leave files created later in it without the split
        // rights (only the entries present now get them), so only execute is split there; the
        // mount mask holds the rest.
        let split = if rule.access & WRITE_ONLY == 0 {
            mask
        } else {
            mask & ll::FS_EXECUTE
        };
        if split != mask {
            notes.push(format!(
                "landlock: {} lies beneath the writable grant {}: the mount mask enforces it",
                denied.display(),
                rule.path.display()
            ));
        }
        if split == 0 {
            out.push(rule);
            continue;
        }
        let kept = rule.access & split;
        out.push(Rule {
            path: rule.path.clone(),
            access: rule.access & !split,
        });
        let Ok(rest) = denied.strip_prefix(&rule.path) else {
            continue;
        };
        let mut dir = rule.path.clone();
        for component in rest.components() {
            let Component::Normal(name) = component else {
                continue;
            };
            match std::fs::read_dir(&dir) {
                Ok(entries) => {
                    for entry in entries.flatten() {
                        let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(true);
                        // A symlink needs no rule: opening or executing it checks its target.
                        if entry.file_name() != name && !is_link {
                            out.push(Rule {
                                path: entry.path(),
                                access: kept,
                            });
                        }
                    }
                }
                Err(e) => {
                    notes.push(format!(
                        "cannot list {} to split a grant around {}: {e}; its siblings lose the \
                         split rights",
                        dir.display(),
                        denied.display()
                    ));
                    break;
                }
            }
            dir.push(name);
        }
    }
    out
}

/// Runs inside the sandbox after pivot_root and before seccomp; restricts this process and its
/// future children.
pub fn apply(policy: &Policy, paths: &SandboxPaths) -> Result<LandlockOutcome, SandboxError> {
    prepare(policy, paths)?.restrict()
}

/// A ruleset built and not yet enforced (`None`: landlock is off or the kernel has none).
pub struct Prepared {
    ruleset: Option<Ruleset>,
    outcome: LandlockOutcome,
}

impl Prepared {
    /// Restricts the calling thread (and its future children) with the ruleset.
    pub fn restrict(self) -> Result<LandlockOutcome, SandboxError> {
        let Some(ruleset) = self.ruleset else {
            return Ok(self.outcome);
        };
        let setup = |what: &str, source: SysError| SandboxError::Setup {
            step: format!("landlock: {what}"),
            source,
        };
        bunker_sys::seccomp::set_no_new_privs().map_err(|e| setup("no_new_privs", e))?;
        ruleset
            .restrict_self()
            .map_err(|e| setup("restrict the sandbox", e))?;
        Ok(self.outcome)
    }
}

/// Builds the ruleset for `policy` from the paths as they are now (in the new root), without
/// enforcing it: init does this while its namespace thread may still run, and restricts itself
/// later.
pub fn prepare(policy: &Policy, paths: &SandboxPaths) -> Result<Prepared, SandboxError> {
    let off = |outcome: LandlockOutcome| {
        Ok(Prepared {
            ruleset: None,
            outcome,
        })
    };
    if policy.kernel.landlock == Enforcement::Off {
        return off(LandlockOutcome {
            status: LayerStatus::Off,
            abi: ll::abi_version().unwrap_or(0),
            notes: vec!["landlock: off by policy (kernel.landlock = \"off\")".into()],
        });
    }
    let abi = probe(policy)?;
    let required = policy.kernel.landlock == Enforcement::Required;
    if abi == 0 {
        return off(LandlockOutcome {
            status: LayerStatus::Off,
            abi,
            notes: vec!["landlock: the kernel has none (best-effort: skipped)".into()],
        });
    }
    let step = |what: &str| format!("landlock: {what}");
    let setup = |what: &str, source: SysError| SandboxError::Setup {
        step: step(what),
        source,
    };

    let handled_fs = ll::fs_rights_for_abi(abi);
    let handled_net = ll::net_rights_for_abi(abi);
    let scoped = ll::scopes_for_abi(abi);
    let (mut notes, mut degraded) = missing_at(abi);

    let ruleset = Ruleset::create(handled_fs, handled_net, scoped)
        .map_err(|e| setup("create the ruleset", e))?;
    let (rules, plan_notes) = plan(policy, paths);
    notes.extend(plan_notes);
    for rule in &rules {
        let access = rule.access & handled_fs;
        if access == 0 {
            continue;
        }
        let handle = match ll::open_path(&rule.path, true) {
            Ok(handle) => handle,
            Err(e) if e.errno == libc::ENOENT || e.errno == libc::ENOTDIR => {
                notes.push(format!(
                    "landlock: skipped {} (not in the sandbox)",
                    rule.path.display()
                ));
                continue;
            }
            Err(e) if required => return Err(setup(&format!("open {}", rule.path.display()), e)),
            Err(e) => {
                notes.push(format!("landlock: skipped {}: {e}", rule.path.display()));
                degraded = true;
                continue;
            }
        };
        let access = if handle.is_dir {
            access
        } else {
            access & ll::FS_FILE_RIGHTS
        };
        if access == 0 {
            continue;
        }
        ruleset
            .add_path(&handle.fd, access, &rule.path)
            .map_err(|e| setup(&format!("grant {}", rule.path.display()), e))?;
    }
    if handled_net != 0 {
        // No bind rule: binding any TCP port is refused. Connecting only to the proxy's ports.
        for port in &paths.connect_ports {
            ruleset
                .add_port(*port, ll::NET_CONNECT_TCP)
                .map_err(|e| setup(&format!("allow TCP connect to port {port}"), e))?;
        }
    }
    Ok(Prepared {
        ruleset: Some(ruleset),
        outcome: LandlockOutcome {
            status: if degraded {
                LayerStatus::Partial
            } else {
                LayerStatus::On
            },
            abi,
            notes,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunker_policy::Policy;

    fn policy() -> Policy {
        Policy::default()
    }

    fn rights(rules: &[Rule], path: &Path) -> u64 {
        rules
            .iter()
            .filter(|r| path.starts_with(&r.path))
            .fold(0, |acc, r| acc | r.access)
    }

    #[test]
    fn grants_mirror_the_policy() {
        let mut p = policy();
        p.allow.read.push("/data".into());
        p.allow.write.push("/out".into());
        p.allow.exec.push("/usr".into());
        let paths = SandboxPaths {
            writable: vec!["/tmp".into()],
            readable: vec!["/".into(), "/proc".into()],
            connect_ports: vec![3128],
        };
        let (rules, notes) = plan(&p, &paths);
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(rights(&rules, Path::new("/data/x")), READ);
        assert_eq!(rights(&rules, Path::new("/out/x")), WRITE);
        assert_eq!(rights(&rules, Path::new("/usr/bin/x")), EXEC);
        assert_eq!(rights(&rules, Path::new("/tmp/x")) & ll::FS_EXECUTE, 0);
        assert_eq!(rights(&rules, Path::new("/etc/x")), ll::FS_READ_DIR);
    }

    #[test]
    fn deny_exec_beneath_an_exec_grant_splits_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("lib")).unwrap();
        for f in ["bin/ok", "bin/bad", "lib/x"] {
            std::fs::write(root.join(f), "").unwrap();
        }
        std::os::unix::fs::symlink("bad", root.join("bin/alias")).unwrap();
        let mut p = policy();
        p.allow.exec.push(root.to_path_buf());
        p.allow.read.push(root.join("bin"));
        p.deny.exec.push(PathPattern::Path(root.join("bin/alias")));
        let (rules, _) = plan(&p, &SandboxPaths::default());
        assert_eq!(rights(&rules, &root.join("bin/bad")) & ll::FS_EXECUTE, 0);
        assert_eq!(rights(&rules, &root.join("bin/bad")) & READ, READ);
        assert_ne!(rights(&rules, &root.join("bin/ok")) & ll::FS_EXECUTE, 0);
        assert_ne!(rights(&rules, &root.join("lib/x")) & ll::FS_EXECUTE, 0);
        assert_eq!(rights(&rules, root) & ll::FS_EXECUTE, 0);
    }

    #[test]
    fn writable_grants_are_only_split_for_exec() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("locked"), "").unwrap();
        std::fs::write(root.join("tool"), "").unwrap();
        let mut p = policy();
        p.allow.write.push(root.to_path_buf());
        p.allow.exec.push(root.to_path_buf());
        p.deny.write.push(PathPattern::Path(root.join("locked")));
        p.deny.exec.push(PathPattern::Path(root.join("tool")));
        let (rules, notes) = plan(&p, &SandboxPaths::default());
        // New files stay creatable and writable in the directory...
        assert_eq!(rights(&rules, &root.join("new")) & WRITE, WRITE);
        assert_eq!(notes.len(), 1, "{notes:?}");
        // ...while the denied binary loses execute.
        assert_eq!(rights(&rules, &root.join("tool")) & ll::FS_EXECUTE, 0);
        assert_ne!(rights(&rules, &root.join("locked")) & ll::FS_EXECUTE, 0);
    }

    #[test]
    fn a_grant_beneath_a_denial_loses_the_denied_rights() {
        let mut p = policy();
        p.allow.write.push("/home/u/proj".into());
        p.deny.write.push(PathPattern::Path("/home/u".into()));
        p.deny.read.push(PathPattern::Glob(
            bunker_policy::PathGlob::new("**/*.key").unwrap(),
        ));
        let (rules, notes) = plan(&p, &SandboxPaths::default());
        assert_eq!(rights(&rules, Path::new("/home/u/proj/f")), READ);
        assert_eq!(notes.len(), 1, "{notes:?}");
    }

    #[test]
    fn required_fails_closed_below_abi_3_and_best_effort_does_not() {
        for abi in [0, 1, 2] {
            let err = check_abi(Enforcement::Required, abi).unwrap_err();
            assert!(matches!(err, SandboxError::Unsupported { .. }), "{err}");
            assert!(err.to_string().contains("best-effort"), "{err}");
            check_abi(Enforcement::BestEffort, abi).unwrap();
            check_abi(Enforcement::Off, abi).unwrap();
        }
        for abi in [3, 6, 7] {
            check_abi(Enforcement::Required, abi).unwrap();
        }
    }

    #[test]
    fn partial_below_abi_6() {
        assert_eq!(missing_at(6), (Vec::new(), false));
        assert_eq!(missing_at(7), (Vec::new(), false));
        let (notes, degraded) = missing_at(4);
        assert!(degraded);
        assert_eq!(notes.len(), 2, "{notes:?}");
        let (notes, degraded) = missing_at(1);
        assert!(degraded);
        assert_eq!(notes.len(), 5, "{notes:?}");
    }

    #[test]
    fn required_probe_reports_the_abi() {
        let p = policy();
        let abi = ll::abi_version().unwrap();
        match probe(&p) {
            Ok(got) => assert!(got >= MIN_REQUIRED_ABI && got == abi),
            Err(SandboxError::Unsupported { layer, .. }) => {
                assert!(abi < MIN_REQUIRED_ABI);
                assert_eq!(layer, "landlock");
            }
            Err(e) => panic!("{e}"),
        }
    }
}
