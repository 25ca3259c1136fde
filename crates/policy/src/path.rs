//! Path rules: absolute paths for grants; absolute paths or globs for denials.
//!
//! Paths are written absolute, as `~` / `~/...` (the caller's HOME), or relative to the policy
//! file's directory, and normalized lexically: `.` and `..` are resolved without touching the
//! filesystem (so a symlink never changes what a rule means) and trailing slashes dropped.
//! A path rule covers the path and everything under it, on component boundaries: `/data`
//! covers `/data/x` but not `/database`.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Serialize, Serializer};

use crate::error::{ErrorKind, Problem};
use crate::glob::{self, PathGlob};
use crate::types::Policy;
use crate::units::quote;

/// One entry of a deny list.
///
/// Serializes as its text: the absolute path, or the glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    /// This path and everything under it.
    Path(PathBuf),
    /// A glob over absolute paths (`**/*.key`; a glob not starting with `/` matches at any
    /// depth). Like a path, a glob that matches a directory covers everything under it. The
    /// one meaning of a glob is [`PathGlob`]'s.
    Glob(PathGlob),
}

impl PathPattern {
    /// Whether this pattern covers `path` (absolute, normalized): the path itself or one of its
    /// ancestors is the rule's path or matches its glob.
    pub fn matches(&self, path: &Path) -> bool {
        match self {
            PathPattern::Path(p) => path.starts_with(p),
            PathPattern::Glob(g) => g.covers(path),
        }
    }

    /// The path, when this is a plain path.
    pub fn as_path(&self) -> Option<&Path> {
        match self {
            PathPattern::Path(p) => Some(p),
            PathPattern::Glob(_) => None,
        }
    }

    /// Whether this is a glob.
    pub fn is_glob(&self) -> bool {
        matches!(self, PathPattern::Glob(_))
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathPattern::Path(p) => write!(f, "{}", p.display()),
            PathPattern::Glob(g) => f.write_str(g.as_str()),
        }
    }
}

impl Serialize for PathPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses the text [`Serialize`] wrote: an absolute path or glob, so no base directory is
/// involved (an effective policy sent to another process, e.g. bunker's spawner).
impl<'de> serde::Deserialize<'de> for PathPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_deny(&text, Path::new("/"), None).map_err(|p| serde::de::Error::custom(p.message))
    }
}

/// Kinds of file access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    /// Writing a path also allows reading it.
    Write,
    Exec,
}

impl Access {
    /// The name of its allow/deny list: `read`, `write`, `exec`.
    pub fn list(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Exec => "exec",
        }
    }
}

/// The outcome of a path check, with the rule that decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathDecision {
    pub allowed: bool,
    /// `allow.read[3] (/data)`, `deny.read[0] (**/*.key)` or `no allow.read rule covers /x`.
    pub rule: String,
}

const GLOB_CHARS: &[char] = &['*', '?', '[', ']', '{', '}'];

/// Whether `text` uses glob syntax.
pub fn is_glob(text: &str) -> bool {
    text.contains(GLOB_CHARS)
}

/// Resolves `.` and `..` lexically (`..` at the root stays at the root) and drops trailing
/// slashes. Relative input stays relative.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() && !path.is_absolute() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(if path.is_absolute() { "/" } else { "." });
    }
    out
}

fn bad_path(message: String) -> Problem {
    Problem::new(ErrorKind::InvalidPath, message)
}

/// Makes `text` absolute: `~` and `~/x` against `home`, relative paths against `base`.
pub fn resolve(text: &str, base: &Path, home: Option<&Path>) -> Result<PathBuf, Problem> {
    if text.is_empty() {
        return Err(bad_path(
            "expected a path, found an empty string".to_string(),
        ));
    }
    if text.contains('\0') {
        return Err(bad_path(format!(
            "a path cannot contain a NUL byte, found {}",
            quote(text)
        )));
    }
    let joined = if text == "~" || text.starts_with("~/") {
        let home = home.filter(|h| h.is_absolute()).ok_or_else(|| {
            Problem::new(
                ErrorKind::MissingHome,
                format!(
                    "{} starts with \"~\" but HOME is not set to an absolute path",
                    quote(text)
                ),
            )
        })?;
        home.join(text.trim_start_matches('~').trim_start_matches('/'))
    } else if text.starts_with('~') {
        return Err(bad_path(format!(
            "{}: only \"~\" and \"~/...\" (the caller's HOME) are supported, not \"~user\"",
            quote(text)
        )));
    } else {
        base.join(text)
    };
    let normalized = normalize(&joined);
    if !normalized.is_absolute() {
        return Err(bad_path(format!(
            "{} is relative and the policy's directory {} is not absolute",
            quote(text),
            quote(&base.display().to_string())
        )));
    }
    Ok(normalized)
}

/// Parses an allow-list entry: a plain path, never a glob.
pub fn parse_allow(
    text: &str,
    list: &str,
    base: &Path,
    home: Option<&Path>,
) -> Result<PathBuf, Problem> {
    if is_glob(text) {
        return Err(Problem::new(
            ErrorKind::InvalidGlob,
            format!(
                "globs are only allowed in deny lists; allow.{list} needs a plain path, found {}",
                quote(text)
            ),
        ));
    }
    resolve(text, base, home)
}

/// Parses a deny-list entry: a path, or a glob (a bare name like `.env` or `*.pem` means
/// `**/.env`, `**/*.pem`: anywhere).
pub fn parse_deny(text: &str, base: &Path, home: Option<&Path>) -> Result<PathPattern, Problem> {
    if text.is_empty() {
        return Err(bad_path(
            "expected a path or glob, found an empty string".to_string(),
        ));
    }
    let bare_name = !text.contains('/') && !text.starts_with('~') && text != "." && text != "..";
    if !is_glob(text) && !bare_name {
        return resolve(text, base, home).map(PathPattern::Path);
    }
    let glob = if bare_name || text.starts_with("**/") || text.starts_with('/') {
        if bare_name {
            format!("**/{text}")
        } else {
            text.to_string()
        }
    } else {
        // Relative or `~` glob: make its literal directory part absolute and escape it, so a
        // policy directory named `a[1]` does not turn into a character class.
        let (dir, rest) = split_literal_prefix(text);
        let dir = resolve(if dir.is_empty() { "." } else { dir }, base, home)?;
        let dir = glob::escape(&dir.display().to_string());
        format!("{}/{rest}", dir.trim_end_matches('/'))
    };
    PathGlob::new(glob.trim_end_matches('/'))
        .map(PathPattern::Glob)
        .map_err(|message| Problem::new(ErrorKind::InvalidGlob, message))
}

/// Splits a glob into its leading components without glob characters and the rest.
fn split_literal_prefix(text: &str) -> (&str, &str) {
    let first_glob = text.find(GLOB_CHARS).unwrap_or(text.len());
    match text[..first_glob].rfind('/') {
        Some(slash) => (&text[..slash], &text[slash + 1..]),
        None => ("", text),
    }
}

impl Policy {
    /// May the program access `path` this way? Deny beats allow (`deny.read` hides a path for
    /// every kind of access; `deny.write`/`deny.exec` refuse only writing/executing); otherwise
    /// the longest matching allow path grants (`allow.write` also grants reading). `path` is
    /// normalized lexically; a relative path is taken from `/`.
    pub fn path_decision(&self, path: &Path, access: Access) -> PathDecision {
        let path = normalize(&Path::new("/").join(path));
        let mut deny_lists: Vec<(&str, &[PathPattern])> = vec![("read", &self.deny.read)];
        match access {
            Access::Read => {}
            Access::Write => deny_lists.push(("write", &self.deny.write)),
            Access::Exec => deny_lists.push(("exec", &self.deny.exec)),
        }
        for (name, list) in deny_lists {
            if let Some((i, rule)) = list.iter().enumerate().find(|(_, r)| r.matches(&path)) {
                return PathDecision {
                    allowed: false,
                    rule: format!("deny.{name}[{i}] ({rule})"),
                };
            }
        }
        let allow_lists: Vec<(&str, &[PathBuf])> = match access {
            Access::Read => vec![("read", &self.allow.read), ("write", &self.allow.write)],
            Access::Write => vec![("write", &self.allow.write)],
            Access::Exec => vec![("exec", &self.allow.exec)],
        };
        let mut best: Option<(usize, String)> = None;
        for (name, list) in allow_lists {
            for (i, rule) in list.iter().enumerate() {
                let depth = rule.components().count();
                if path.starts_with(rule) && best.as_ref().is_none_or(|(d, _)| depth > *d) {
                    best = Some((depth, format!("allow.{name}[{i}] ({})", rule.display())));
                }
            }
        }
        match best {
            Some((_, rule)) => PathDecision {
                allowed: true,
                rule,
            },
            None => PathDecision {
                allowed: false,
                rule: format!("no allow.{} rule covers {}", access.list(), path.display()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_lexically() {
        assert_eq!(
            normalize(Path::new("/a/b/../c/./d/")),
            PathBuf::from("/a/c/d")
        );
        assert_eq!(normalize(Path::new("/../..")), PathBuf::from("/"));
        assert_eq!(normalize(Path::new("//a//b")), PathBuf::from("/a/b"));
    }

    #[test]
    fn resolves_forms() {
        let base = Path::new("/etc/bunker");
        let home = Some(Path::new("/home/u"));
        assert_eq!(
            resolve("data", base, home).unwrap(),
            PathBuf::from("/etc/bunker/data")
        );
        assert_eq!(
            resolve("../x", base, home).unwrap(),
            PathBuf::from("/etc/x")
        );
        assert_eq!(resolve("~", base, home).unwrap(), PathBuf::from("/home/u"));
        assert_eq!(
            resolve("~/.cache/", base, home).unwrap(),
            PathBuf::from("/home/u/.cache")
        );
        assert!(resolve("~/x", base, None).is_err());
        assert!(resolve("~bob/x", base, home).is_err());
        assert!(parse_allow("*.js", "read", base, home).is_err());
    }

    #[test]
    fn deny_globs() {
        let base = Path::new("/p");
        let home = Some(Path::new("/home/u"));
        let g = |t: &str| parse_deny(t, base, home).unwrap();
        let glob = |t: &str| PathPattern::Glob(PathGlob::new(t).unwrap());
        assert_eq!(g(".env"), glob("**/.env"));
        assert_eq!(g("*.pem"), glob("**/*.pem"));
        assert_eq!(g("**/*.key"), glob("**/*.key"));
        assert_eq!(g("secrets/*.key"), glob("/p/secrets/*.key"));
        assert_eq!(g("~/.ssh/*"), glob("/home/u/.ssh/*"));
        assert_eq!(g("/srv/*/"), glob("/srv/*"));
        assert_eq!(g("./.env"), PathPattern::Path("/p/.env".into()));
        assert!(g("**/*.key").matches(Path::new("/a/b/c.key")));
        assert!(g("**/*.key").matches(Path::new("/c.key")));
        assert!(g(".env").matches(Path::new("/srv/app/.env")));
        assert!(g(".env").matches(Path::new("/srv/app/.env/inner")));
        assert!(!g(".env").matches(Path::new("/srv/app/.envrc")));
        assert!(!g("*.pem").matches(Path::new("/srv/pem")));
        // Hand-built relative globs mean "anywhere".
        assert!(glob("*.key").matches(Path::new("/a/b.key")));
        // The literal directory part of a relative glob is escaped.
        let odd = parse_deny("*.key", Path::new("/p/a[1]"), home).unwrap();
        assert_eq!(odd, glob("**/*.key"));
        let odd = parse_deny("s/*.key", Path::new("/p/a[1]"), home).unwrap();
        assert_eq!(odd, glob("/p/a\\[1\\]/s/*.key"));
        assert!(odd.matches(Path::new("/p/a[1]/s/x.key")));
    }
}
