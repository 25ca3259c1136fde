//! What can be known about a run from the host before it starts, or said after it failed at
//! once: grants that `run` would refuse or skip (`bunker check` and `bunker run` both ask),
//! where the program starts, and which grant a program that could not start was missing.
//!
//! Everything here only looks at the host as the caller sees it (`stat`, `readlink`, reading the
//! program's ELF header); the sandbox itself is built by `mounts`, which opens every path again
//! without following symlinks and stays the enforcement.

use std::ffi::OsString;
use std::fmt;
use std::io::ErrorKind as IoKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bunker_policy::{Access, GrantOrigin, Policy};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// `run` would refuse the policy.
    Error,
    /// `run` works, but the grant does not do what it says (skipped, or a dangling link).
    Warning,
}

/// One grant that does not work as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// The document that wrote the grant, named as in policy errors (`policy.json`,
    /// `command line`).
    pub file: String,
    /// `allow.write[0]`.
    pub json_path: String,
    /// What is wrong and what to grant instead.
    pub message: String,
    /// A missing path (`bunker check --strict` makes a missing read grant an error).
    pub missing: bool,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.json_path, self.message)
    }
}

/// Directories bunker provides itself; grants there are ignored by the mount plan.
fn provided_by_bunker(path: &Path) -> bool {
    path.starts_with("/proc") || path.starts_with("/dev")
}

/// Whether the sandbox can see `path` (read or exec grants both mount it).
fn visible(policy: &Policy, path: &Path) -> bool {
    policy.path_decision(path, Access::Read).allowed
        || policy.path_decision(path, Access::Exec).allowed
}

/// Whether a grant lies below `dir`: the mounts create the parent directories of every grant,
/// so such a directory exists inside too (empty but for the grant).
fn grant_below(policy: &Policy, dir: &Path) -> bool {
    policy
        .allow
        .read
        .iter()
        .chain(&policy.allow.write)
        .chain(&policy.allow.exec)
        .any(|g| g.starts_with(dir))
}

/// Whether the directory `dir` of the host exists inside the sandbox: a grant covers it, or one
/// below it makes it exist. A run without a working directory starts in the caller's when
/// this holds, else in /tmp.
pub fn exists_inside(policy: &Policy, dir: &Path) -> bool {
    visible(policy, dir) || grant_below(policy, dir)
}

/// Whether `access` to `path` is granted (a write grant needs a write grant; read needs any).
fn granted(policy: &Policy, path: &Path, access: Access) -> bool {
    match access {
        Access::Write => policy.path_decision(path, Access::Write).allowed,
        Access::Exec => policy.path_decision(path, Access::Exec).allowed,
        Access::Read => visible(policy, path),
    }
}

/// The first symlink on the way to `path` (the path itself included), and what it points to.
fn first_symlink(path: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut prefix = PathBuf::from("/");
    for part in path.components().skip(1) {
        prefix.push(part);
        let meta = std::fs::symlink_metadata(&prefix).ok()?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&prefix).unwrap_or_default();
            return Some((prefix, target));
        }
    }
    None
}

/// Grants the mounts would refuse (a missing write path, a write path under a symlink) or that
/// do not grant what they say (a missing read path, a symlink). Grants of the built-in profiles
/// are left out: they list only what exists on this host.
pub fn check_grants(policy: &Policy, origins: &[GrantOrigin]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for origin in origins.iter().filter(|o| !o.builtin) {
        let path = &origin.path;
        if provided_by_bunker(path) {
            continue;
        }
        let finding = |severity, message: String, missing| Finding {
            severity,
            file: origin.file.clone(),
            json_path: origin.json_path.clone(),
            message,
            missing,
        };
        let write = origin.access == Access::Write;
        if let Some((link, target)) = first_symlink(path) {
            let real = std::fs::canonicalize(path).ok();
            let instead = match &real {
                Some(real) => format!("grant {} instead", quote(real)),
                None => format!(
                    "its target {} does not exist either",
                    quote(&link.parent().unwrap_or(Path::new("/")).join(&target))
                ),
            };
            let target_granted = real
                .as_deref()
                .is_some_and(|r| granted(policy, r, origin.access));
            if &link == path {
                // Mounted as the link itself: it works only if its target is granted too.
                if !target_granted {
                    findings.push(finding(
                        Severity::Warning,
                        format!(
                            "{} is a symlink to {}: the sandbox gets the link itself, which \
                             dangles there because its target is not granted; {instead}",
                            quote(path),
                            quote(&target)
                        ),
                        false,
                    ));
                }
            } else if write || !target_granted {
                // A grant is never opened through a symlink: a read grant is skipped, a write
                // grant refused.
                let what = if write {
                    "so bunker refuses it"
                } else {
                    "so the grant is skipped"
                };
                findings.push(finding(
                    if write {
                        Severity::Error
                    } else {
                        Severity::Warning
                    },
                    format!(
                        "{} is reached through the symlink {} (to {}), and grants are never \
                         opened through a symlink, {what}; {instead}",
                        quote(path),
                        quote(&link),
                        quote(&target)
                    ),
                    false,
                ));
            }
            continue;
        }
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == IoKind::NotFound => {
                findings.push(if write {
                    finding(
                        Severity::Error,
                        format!(
                            "{} does not exist: bunker grants existing paths only; create it \
                             first (mkdir -p {}) or remove the grant",
                            quote(path),
                            path.display()
                        ),
                        true,
                    )
                } else {
                    finding(
                        Severity::Warning,
                        format!(
                            "{} does not exist on this host (`bunker run` skips this grant)",
                            quote(path)
                        ),
                        true,
                    )
                });
            }
            // Anything else (a directory the caller cannot search) is for the mounts to say.
            _ => {}
        }
    }
    findings
}

fn quote(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// A note about where the program starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartNote {
    /// Only worth saying under `-v`: the run works, from a directory the caller may not expect.
    pub verbose_only: bool,
    pub text: String,
}

/// Where the program starts, when that is not what the caller may think: a working directory
/// under the host's /tmp that no grant covers (the sandbox's /tmp is private: what the program
/// writes there vanishes), or a caller's directory the sandbox cannot see (it starts in /tmp).
pub fn start_notes(
    policy: &Policy,
    requested: Option<&Path>,
    caller_cwd: Option<&Path>,
) -> Vec<StartNote> {
    let Some(dir) = requested.or(caller_cwd) else {
        return Vec::new();
    };
    let host_tmp_granted = policy.allow.read.iter().any(|g| g == Path::new("/tmp"))
        || policy.allow.write.iter().any(|g| g == Path::new("/tmp"));
    let has_grant_below = grant_below(policy, dir);
    let covered = visible(policy, dir);
    let mut notes = Vec::new();
    if dir.starts_with("/tmp") && !host_tmp_granted && !covered {
        let start = if requested.is_none() && !has_grant_below {
            "the program starts in the sandbox's private /tmp instead, and "
        } else {
            "it is inside the sandbox's private /tmp, so "
        };
        notes.push(StartNote {
            verbose_only: false,
            text: format!(
                "the working directory {} is under the host's /tmp and not granted: {start}files \
                 the program writes there vanish when the run ends (grant it, e.g. \
                 --allow-write {}, to keep them)",
                dir.display(),
                dir.display()
            ),
        });
    } else if requested.is_none() && !covered && !has_grant_below {
        notes.push(StartNote {
            verbose_only: true,
            text: format!(
                "the current directory {} is not visible in the sandbox (no grant covers it): \
                 the program starts in /tmp",
                dir.display()
            ),
        });
    }
    notes
}

/// `program` looked up the way the sandbox's init does: a path as given (relative to the
/// caller's directory), a bare name on `search_path`.
pub fn find_program(program: &Path, search_path: &str) -> Option<PathBuf> {
    if program.components().count() > 1 || program.is_absolute() {
        let absolute = std::env::current_dir().ok()?.join(program);
        return absolute.is_file().then_some(absolute);
    }
    search_path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// The sandbox's PATH under `policy` (what `find_program` searches).
pub fn sandbox_search_path(policy: &Policy) -> String {
    policy
        .set_env
        .get("PATH")
        .cloned()
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".to_string())
}

/// The ELF interpreter (`PT_INTERP`) a 64-bit little-endian executable asks for; `None` for a
/// static binary, a script or anything unreadable.
pub fn elf_interpreter(file: &Path) -> Option<PathBuf> {
    const PT_INTERP: u32 = 3;
    let f = std::fs::File::open(file).ok()?;
    let mut header = [0u8; 64];
    f.read_exact_at(&mut header, 0).ok()?;
    // ELF magic, ELFCLASS64, ELFDATA2LSB.
    if header[..4] != *b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let u16_at =
        |b: &[u8], at: usize| Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?));
    let u32_at =
        |b: &[u8], at: usize| Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
    let u64_at =
        |b: &[u8], at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
    let phoff = u64_at(&header, 0x20)?;
    let phentsize = u64::from(u16_at(&header, 0x36)?);
    let phnum = u16_at(&header, 0x38)?;
    let mut entry = vec![0u8; usize::try_from(phentsize).ok()?.max(56)];
    for i in 0..u64::from(phnum) {
        f.read_exact_at(&mut entry, phoff.checked_add(i.checked_mul(phentsize)?)?)
            .ok()?;
        if u32_at(&entry, 0)? != PT_INTERP {
            continue;
        }
        let offset = u64_at(&entry, 8)?;
        let size = usize::try_from(u64_at(&entry, 32)?).ok()?.min(4096);
        let mut name = vec![0u8; size];
        f.read_exact_at(&mut name, offset).ok()?;
        let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        return Some(PathBuf::from(std::ffi::OsStr::from_bytes(&name[..end])));
    }
    None
}

/// Why a program that could not start (`exec_failed`) or that failed at once may have lacked a
/// grant: the ELF interpreter of its binary not executable in the sandbox, or its script (the
/// first argument that is a file on the host) not visible. Each hint names the grant to add.
pub fn exec_hints(
    policy: &Policy,
    argv: &[OsString],
    requested_cwd: Option<&Path>,
    exec_failed: bool,
) -> Vec<String> {
    let mut hints = Vec::new();
    let Some(program) = argv.first() else {
        return hints;
    };
    if exec_failed {
        let found = find_program(Path::new(program), &sandbox_search_path(policy));
        if let Some(interp) = found.as_deref().and_then(elf_interpreter) {
            let real = std::fs::canonicalize(&interp).unwrap_or_else(|_| interp.clone());
            let runs = [&interp, &real]
                .iter()
                .all(|p| policy.path_decision(p, Access::Exec).allowed);
            if !runs {
                let dir = real.parent().unwrap_or(Path::new("/"));
                hints.push(format!(
                    "{} needs its ELF interpreter {}{}, which this policy does not let the \
                     sandbox execute: grant exec of its directory (--allow-exec {}) and read \
                     of each symlink on the way, or start the policy with \"extends\": \
                     [\"default\"]",
                    Path::new(program).display(),
                    interp.display(),
                    if real != interp {
                        format!(" (→ {})", real.display())
                    } else {
                        String::new()
                    },
                    dir.display()
                ));
            }
        }
        return hints;
    }
    // The script: the first argument that is not an option and names a file on the host.
    let caller_cwd = std::env::current_dir().ok();
    let Some(arg) = argv[1..]
        .iter()
        .map(Path::new)
        .find(|a| !a.as_os_str().as_bytes().starts_with(b"-"))
    else {
        return hints;
    };
    let base = requested_cwd.map(Path::to_path_buf).or(caller_cwd);
    let host_file = match &base {
        Some(base) => base.join(arg),
        None => arg.to_path_buf(),
    };
    if !host_file.is_file() {
        return hints;
    }
    let absolute = bunker_policy::path::normalize(&host_file);
    // A denied file is the policy's intent, and no grant would change it (deny wins).
    let denied = policy
        .path_decision(&absolute, Access::Read)
        .rule
        .starts_with("deny.");
    if !denied && !visible(policy, &absolute) {
        let dir = absolute.parent().unwrap_or(Path::new("/"));
        hints.push(format!(
            "{} is a file on the host, but the policy grants no read of {}, so the program \
             cannot open it: grant it with --allow-read {} (or its directory, --allow-read {})",
            arg.display(),
            absolute.display(),
            absolute.display(),
            dir.display()
        ));
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interpreter_of_a_dynamic_binary_is_read() {
        let sh = find_program(Path::new("sh"), "/usr/bin:/bin").unwrap();
        let interp = elf_interpreter(&std::fs::canonicalize(sh).unwrap()).unwrap();
        assert!(
            interp.to_string_lossy().starts_with("/lib"),
            "{}",
            interp.display()
        );
        // Not an ELF file: no interpreter.
        assert_eq!(elf_interpreter(Path::new("/etc/hostname")), None);
    }

    fn policy(text: &str) -> Policy {
        bunker_policy::load_str(text, Path::new("/"), "test").unwrap()
    }

    #[test]
    fn start_notes_say_when_the_directory_is_private_or_not_visible() {
        let bare = policy("{}");
        let tmp = Path::new("/tmp/proj");
        let notes = start_notes(&bare, None, Some(tmp));
        assert_eq!(notes.len(), 1);
        assert!(!notes[0].verbose_only);
        assert!(notes[0]
            .text
            .contains("starts in the sandbox's private /tmp"));
        // A grant beneath it: the directory exists inside, but in the private /tmp.
        let below = policy(r#"{"allow": {"write": ["/tmp/proj/out"]}}"#);
        let notes = start_notes(&below, None, Some(tmp));
        assert!(notes[0].text.contains("inside the sandbox's private /tmp"));
        // Granted, or /tmp itself granted: nothing to say.
        for granted in [
            r#"{"allow": {"write": ["/tmp/proj"]}}"#,
            r#"{"allow": {"read": ["/tmp"]}}"#,
        ] {
            assert_eq!(start_notes(&policy(granted), None, Some(tmp)), vec![]);
        }
        // Elsewhere and not visible: a note for -v only.
        let notes = start_notes(&bare, None, Some(Path::new("/work/proj")));
        assert!(notes[0].verbose_only, "{notes:?}");
        // An explicit --cwd outside /tmp is the caller's choice: nothing to say.
        assert_eq!(start_notes(&bare, Some(Path::new("/work")), None), vec![]);
    }

    #[test]
    fn grants_from_the_user_are_checked_and_the_profiles_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let origin = |access, builtin| GrantOrigin {
            access,
            path: missing.clone(),
            file: "p.json".into(),
            json_path: "allow.x[0]".into(),
            builtin,
        };
        let p = policy("{}");
        let found = check_grants(&p, &[origin(Access::Write, false)]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Error);
        assert!(found[0].to_string().starts_with("p.json: allow.x[0]: "));
        let found = check_grants(&p, &[origin(Access::Read, false)]);
        assert_eq!(
            (found[0].severity, found[0].missing),
            (Severity::Warning, true)
        );
        assert!(check_grants(&p, &[origin(Access::Write, true)]).is_empty());
    }
}
