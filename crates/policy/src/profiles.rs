//! Built-in profiles, as policy documents built at load time (so the runtime profiles can name
//! the binaries this host actually has).
//!
//! - `default`: what a dynamically linked program needs to start, and nothing else: read and
//!   execute the system binary and library directories, read the loader cache, time zone, name
//!   service switch and CA certificates (so TLS through the proxy works); a literal environment;
//!   pids 512 and memory 1GiB, both best effort (rootless without cgroup delegation).
//! - `runtime:bun`: `default` + the `bun` found on PATH (each symlink on the way and the final
//!   binary and its directory).
//! - `runtime:python`: `default` + the `python3` found on PATH and, when its prefix is not under
//!   /usr, `<prefix>/bin` and `<prefix>/lib`.
//!
//! - `eval:bun`, `eval:python`: what an eval's worker runs under (docs/workers.md): the runtime
//!   profile, no network, and the eval defaults: timeout 10s, memory 256MiB (best effort, as
//!   `default`'s), pids 128 (Bun starts a thread pool), output 1MiB.
//!
//! Entries of `default` that do not exist on this host are left out (a bind mount of a missing
//! path would fail the sandbox, and granting nothing is harmless).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{ErrorKind, PolicyError};
use crate::load::HostEnv;
use crate::path::normalize;
use crate::types::{LimitName, LimitsDoc, PolicyDoc, RuleSetDoc};
use crate::units::ByteSize;

/// The built-in profile names.
pub const NAMES: [&str; 5] = [
    "default",
    "runtime:bun",
    "runtime:python",
    "eval:bun",
    "eval:python",
];

/// `limits.timeout` of the eval profiles.
pub const EVAL_TIMEOUT: &str = "10s";
/// `limits.memory` of the eval profiles.
pub const EVAL_MEMORY: &str = "256MiB";
/// `limits.pids` of the eval profiles.
pub const EVAL_PIDS: u64 = 128;

/// Directories whose programs and libraries `default` lets the sandbox read and execute.
pub const DEFAULT_EXEC: [&str; 6] = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32"];

/// Files and directories `default` lets the sandbox read (in addition to `DEFAULT_EXEC`).
pub const DEFAULT_READ: [&str; 8] = [
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/ssl/certs",
    "/usr/share/ca-certificates",
];

/// `PATH` inside the sandbox under `default`.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn present(path: &str) -> bool {
    Path::new(path).symlink_metadata().is_ok()
}

/// The document of a built-in profile; `None` for an unknown name.
pub fn profile_doc(name: &str, env: &HostEnv) -> Result<Option<PolicyDoc>, PolicyError> {
    Ok(Some(match name {
        "default" => default_doc(),
        "runtime:bun" => bun_doc(env)?,
        "runtime:python" => python_doc(env)?,
        "eval:bun" => eval_doc("runtime:bun"),
        "eval:python" => eval_doc("runtime:python"),
        _ => return Ok(None),
    }))
}

fn default_doc() -> PolicyDoc {
    let exec: Vec<String> = DEFAULT_EXEC
        .iter()
        .filter(|p| present(p))
        .map(|p| p.to_string())
        .collect();
    let mut read = exec.clone();
    read.extend(
        DEFAULT_READ
            .iter()
            .filter(|p| present(p))
            .map(|p| p.to_string()),
    );
    let set_env = BTreeMap::from([
        ("PATH".to_string(), DEFAULT_PATH.to_string()),
        ("HOME".to_string(), "/tmp".to_string()),
        ("TMPDIR".to_string(), "/tmp".to_string()),
        ("LANG".to_string(), "C.UTF-8".to_string()),
    ]);
    PolicyDoc {
        allow: RuleSetDoc {
            read,
            exec,
            ..RuleSetDoc::default()
        },
        limits: LimitsDoc {
            pids: Some(512),
            memory: Some(ByteSize::Text("1GiB".to_string())),
            best_effort: vec![LimitName::Memory, LimitName::Pids],
            ..LimitsDoc::default()
        },
        set_env,
        ..PolicyDoc::default()
    }
}

/// An eval profile: the runtime's, no network (nothing in `allow.net`), the eval limits.
fn eval_doc(runtime: &str) -> PolicyDoc {
    PolicyDoc {
        extends: vec![runtime.to_string()],
        limits: LimitsDoc {
            timeout: Some(crate::units::Span::Text(EVAL_TIMEOUT.to_string())),
            memory: Some(ByteSize::Text(EVAL_MEMORY.to_string())),
            pids: Some(EVAL_PIDS),
            output: Some(ByteSize::Text("1MiB".to_string())),
            best_effort: vec![LimitName::Memory, LimitName::Pids],
            ..LimitsDoc::default()
        },
        ..PolicyDoc::default()
    }
}

/// A program found on PATH: the path it was found at, every symlink hop, the final file.
struct Found {
    /// As found on PATH (absolute, normalized, not resolved).
    found: PathBuf,
    /// Every path on the way from `found` to the real file, `found` first, the real file last.
    hops: Vec<PathBuf>,
}

impl Found {
    fn real(&self) -> &Path {
        self.hops
            .last()
            .map(PathBuf::as_path)
            .unwrap_or(&self.found)
    }
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `path` is an ELF binary. Wrapper scripts (pyenv shims, version managers) are
/// skipped: they run other programs from places the profile would not grant.
fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == *b"\x7fELF")
}

/// Looks `program` up on `path_var` (absolute entries only: a relative PATH entry would depend
/// on the caller's cwd; ELF binaries only, see [`is_elf`]) and follows its symlinks, recording
/// each hop.
fn find_on_path(program: &str, path_var: Option<&OsStr>) -> Option<Found> {
    let dirs = std::env::split_paths(path_var?).filter(|d| d.is_absolute());
    for dir in dirs {
        let candidate = normalize(&dir.join(program));
        if !is_executable_file(&candidate) || !is_elf(&candidate) {
            continue;
        }
        let mut hops = vec![candidate.clone()];
        let mut current = candidate.clone();
        // Bounded like the kernel's own symlink limit.
        for _ in 0..40 {
            let Ok(target) = std::fs::read_link(&current) else {
                break;
            };
            let parent = current.parent().map(Path::to_path_buf).unwrap_or_default();
            current = normalize(&parent.join(target));
            hops.push(current.clone());
        }
        // Directory symlinks on the way (e.g. /lib -> usr/lib) are only resolved here.
        if let Ok(real) = std::fs::canonicalize(&candidate) {
            if hops.last() != Some(&real) {
                hops.push(real);
            }
        }
        return Some(Found {
            found: candidate,
            hops,
        });
    }
    None
}

fn not_found(profile: &str, program: &str, env: &HostEnv) -> PolicyError {
    let path = env
        .path
        .as_deref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    PolicyError::new(
        ErrorKind::RuntimeNotFound,
        profile,
        "",
        format!(
            "no {program} binary was found on PATH ({path}; wrapper scripts such as pyenv shims are skipped); install it, or write a policy that allows its files"
        ),
    )
}

/// A runtime profile: `default` plus read and exec of `paths`, and the environment.
fn runtime_doc(paths: Vec<PathBuf>, found: &Found, set_env: &[(&str, &str)]) -> PolicyDoc {
    let mut list: Vec<String> = Vec::new();
    for p in paths {
        let text = p.display().to_string();
        if !list.contains(&text) {
            list.push(text);
        }
    }
    let mut env: BTreeMap<String, String> = set_env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Make the runtime reachable by name when it lives outside the default PATH.
    if let Some(dir) = found.found.parent() {
        let dir = dir.display().to_string();
        if !DEFAULT_PATH.split(':').any(|d| d == dir) {
            env.insert("PATH".to_string(), format!("{dir}:{DEFAULT_PATH}"));
        }
    }
    PolicyDoc {
        extends: vec!["default".to_string()],
        allow: RuleSetDoc {
            read: list.clone(),
            exec: list,
            ..RuleSetDoc::default()
        },
        set_env: env,
        ..PolicyDoc::default()
    }
}

fn bun_doc(env: &HostEnv) -> Result<PolicyDoc, PolicyError> {
    let found = find_on_path("bun", env.path.as_deref())
        .ok_or_else(|| not_found("runtime:bun", "bun", env))?;
    let mut paths = found.hops.clone();
    if let Some(dir) = found.real().parent() {
        paths.push(dir.to_path_buf());
    }
    Ok(runtime_doc(
        paths,
        &found,
        &[("BUN_INSTALL_CACHE_DIR", "/tmp/.bun-cache")],
    ))
}

fn python_doc(env: &HostEnv) -> Result<PolicyDoc, PolicyError> {
    let found = find_on_path("python3", env.path.as_deref())
        .ok_or_else(|| not_found("runtime:python", "python3", env))?;
    let mut paths = found.hops.clone();
    // <prefix>/bin/python3.X → <prefix>; the standard library is <prefix>/lib/python3.X.
    if let Some(prefix) = found.real().parent().and_then(Path::parent) {
        if !prefix.starts_with("/usr") && prefix != Path::new("/") {
            paths.push(prefix.join("bin"));
            paths.push(prefix.join("lib"));
        }
    }
    Ok(runtime_doc(
        paths,
        &found,
        &[("PYTHONDONTWRITEBYTECODE", "1"), ("PYTHONUNBUFFERED", "1")],
    ))
}
