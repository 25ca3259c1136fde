//! The one compiled path glob: what a deny glob means for `bunker check`, for the mounts and
//! for anything else that asks (docs/policy.md, "Globs in deny lists").
//!
//! A glob is matched against the components of a path, never against its text: `*`, `?` and a
//! `[...]` class stay inside one component, `**` as a whole component stands for zero or more
//! components (elsewhere it is a `*`), and a glob not starting with `/` may start at any depth
//! (`.env` is `**/.env`). `{a,b}` alternatives are expanded at compile time, so matching is a
//! walk over a fixed sequence with no allocation: the deny-glob walk calls
//! [`PathGlob::matches`] once per directory entry.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::units::quote;

/// Most alternatives the `{a,b}` groups of one glob may expand to.
const MAX_ALTERNATIVES: usize = 256;

/// A compiled path glob. Two globs are equal when their text is.
#[derive(Clone)]
pub struct PathGlob {
    text: Box<str>,
    alternatives: Box<[Sequence]>,
}

/// One brace-free alternative: a sequence of component patterns.
#[derive(Debug, Clone)]
struct Sequence {
    segments: Box<[Segment]>,
}

#[derive(Debug, Clone)]
enum Segment {
    /// `**`: zero or more components.
    AnyDepth,
    /// A component without wildcards.
    Exact(Box<[u8]>),
    /// A component with `*`, `?` or a class.
    Name(Name),
}

#[derive(Debug, Clone)]
struct Name {
    tokens: Box<[Token]>,
    /// Literal bytes every match starts / ends with (quick rejects before the full match).
    prefix: Box<[u8]>,
    suffix: Box<[u8]>,
}

#[derive(Debug, Clone)]
enum Token {
    Literal(Box<[u8]>),
    /// `?`: one character.
    One,
    /// `*`: any characters.
    Any,
    Class(Class),
}

/// `[abc]`, `[a-z]`, `[!abc]`: one character in (or not in) the ranges.
#[derive(Debug, Clone)]
struct Class {
    negated: bool,
    ranges: Box<[(char, char)]>,
}

impl PathGlob {
    /// Compiles `pattern`. The error says what is wrong, e.g. `invalid glob "a[b": unclosed
    /// character class; missing ']'`.
    pub fn new(pattern: &str) -> Result<PathGlob, String> {
        let fail = |why: String| format!("invalid glob {}: {why}", quote(pattern));
        if pattern.is_empty() {
            return Err(fail("it is empty".into()));
        }
        let mut texts = Vec::new();
        expand_braces(pattern, &mut texts).map_err(fail)?;
        let alternatives = texts
            .iter()
            .map(|t| compile_sequence(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        Ok(PathGlob {
            text: pattern.into(),
            alternatives: alternatives.into(),
        })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` itself matches (its components, ignoring repeated and trailing slashes;
    /// `path` is absolute and normalized).
    pub fn matches(&self, path: &Path) -> bool {
        let path = path.as_os_str().as_encoded_bytes();
        self.alternatives.iter().any(|a| a.matches(path, false))
    }

    /// Whether the glob covers `path`: `path` or one of its ancestors matches. This is what a
    /// deny glob denies.
    pub fn covers(&self, path: &Path) -> bool {
        let path = path.as_os_str().as_encoded_bytes();
        self.alternatives.iter().any(|a| a.matches(path, true))
    }

    /// Whether a match could lie at or under `dir`, or be an ancestor of it: the glob's
    /// leading literal components (`/srv/keys` for `/srv/keys/*.pem`, `/` for `**/*.key` or
    /// a relative glob) meet `dir`.
    pub fn reaches(&self, dir: &Path) -> bool {
        self.alternatives.iter().any(|a| {
            let base = a.base();
            base.starts_with(dir) || dir.starts_with(&base)
        })
    }

    /// Whether every match lies at or under `dir` (each alternative's literal base does).
    pub fn lies_under(&self, dir: &Path) -> bool {
        self.alternatives.iter().all(|a| a.base().starts_with(dir))
    }
}

impl Sequence {
    /// The leading exact components, the last one excluded (it is what is matched).
    fn base(&self) -> PathBuf {
        let mut base = PathBuf::from("/");
        let leading = self.segments.len().saturating_sub(1);
        for s in &self.segments[..leading] {
            match s {
                Segment::Exact(name) => base.push(OsStr::from_bytes(name)),
                _ => break,
            }
        }
        base
    }

    /// Matches the components of `path` against the segments. `covering`: a match of a
    /// leading part of the components (an ancestor) counts.
    ///
    /// `**` is the only segment that spans several components, so the classic greedy
    /// algorithm is exact: remember the last `**`, and on a mismatch let it take one more
    /// component: at most components × segments steps, no recursion, no allocation.
    fn matches(&self, path: &[u8], covering: bool) -> bool {
        let segments = &self.segments;
        // The last component must match the last segment (most entries fail here).
        if !covering {
            if let Some(last) = segments.last().filter(|s| !matches!(s, Segment::AnyDepth)) {
                let trimmed = trim_trailing_slashes(path);
                let start = trimmed
                    .iter()
                    .rposition(|&b| b == b'/')
                    .map_or(0, |i| i + 1);
                if !last.matches(&trimmed[start..]) {
                    return false;
                }
            }
        }
        let mut s = 0;
        let mut p = skip_slashes(path, 0);
        let mut retry: Option<(usize, usize)> = None;
        loop {
            if let Some(segment) = segments.get(s) {
                if let Segment::AnyDepth = segment {
                    if s + 1 == segments.len() {
                        return true;
                    }
                    retry = Some((s + 1, p));
                    s += 1;
                    continue;
                }
                if p < path.len() {
                    let end = component_end(path, p);
                    if segment.matches(&path[p..end]) {
                        s += 1;
                        p = skip_slashes(path, end);
                        continue;
                    }
                }
            } else if p == path.len() || covering {
                return true;
            }
            match retry {
                Some((after, from)) if from < path.len() => {
                    let next = skip_slashes(path, component_end(path, from));
                    retry = Some((after, next));
                    s = after;
                    p = next;
                }
                _ => return false,
            }
        }
    }
}

impl Segment {
    fn matches(&self, component: &[u8]) -> bool {
        match self {
            Segment::AnyDepth => true,
            Segment::Exact(name) => name.len() == component.len() && has_suffix(component, name),
            Segment::Name(n) => {
                has_suffix(component, &n.suffix)
                    && has_prefix(component, &n.prefix)
                    && name_matches(&n.tokens, component)
            }
        }
    }
}

/// `text.ends_with(suffix)`, compared from the last byte (where names differ most) in a plain
/// loop: for these few bytes a `memcmp` call cost a fifth of the whole walk.
fn has_suffix(text: &[u8], suffix: &[u8]) -> bool {
    let Some(offset) = text.len().checked_sub(suffix.len()) else {
        return false;
    };
    for i in (0..suffix.len()).rev() {
        if text[offset + i] != suffix[i] {
            return false;
        }
    }
    true
}

/// `text.starts_with(prefix)`, in a plain loop like [`has_suffix`].
fn has_prefix(text: &[u8], prefix: &[u8]) -> bool {
    if prefix.len() > text.len() {
        return false;
    }
    for i in 0..prefix.len() {
        if text[i] != prefix[i] {
            return false;
        }
    }
    true
}

/// The greedy wildcard match within one component: `*` is the only token of variable length,
/// every other token matches at most one way at a position.
fn name_matches(tokens: &[Token], name: &[u8]) -> bool {
    let mut t = 0;
    let mut i = 0;
    let mut retry: Option<(usize, usize)> = None;
    loop {
        if let Some(token) = tokens.get(t) {
            if let Token::Any = token {
                retry = Some((t + 1, i));
                t += 1;
                continue;
            }
            if let Some(n) = token_len(token, name, i) {
                t += 1;
                i += n;
                continue;
            }
        } else if i == name.len() {
            return true;
        }
        match retry {
            Some((after, from)) if from < name.len() => {
                let next = from + unit_len(name, from);
                retry = Some((after, next));
                t = after;
                i = next;
            }
            _ => return false,
        }
    }
}

/// How many bytes `token` matches at `name[i..]`, if it matches.
fn token_len(token: &Token, name: &[u8], i: usize) -> Option<usize> {
    let rest = name.get(i..).filter(|r| !r.is_empty())?;
    match token {
        Token::Literal(lit) => has_prefix(rest, lit).then_some(lit.len()),
        Token::One => Some(unit_len(name, i)),
        Token::Class(class) => {
            let n = unit_len(name, i);
            let c = std::str::from_utf8(&rest[..n])
                .ok()
                .and_then(|s| s.chars().next());
            let inside = c.is_some_and(|c| class.ranges.iter().any(|&(a, b)| a <= c && c <= b));
            (inside != class.negated).then_some(n)
        }
        Token::Any => Some(0),
    }
}

/// The length of the character at `name[i]`: a UTF-8 scalar, or one byte that does not start
/// one (names need not be UTF-8).
fn unit_len(name: &[u8], i: usize) -> usize {
    let width = match name[i] {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return 1,
    };
    match name.get(i..i + width) {
        Some(c) if std::str::from_utf8(c).is_ok() => width,
        _ => 1,
    }
}

fn skip_slashes(path: &[u8], mut i: usize) -> usize {
    while path.get(i) == Some(&b'/') {
        i += 1;
    }
    i
}

fn component_end(path: &[u8], start: usize) -> usize {
    path[start..]
        .iter()
        .position(|&b| b == b'/')
        .map_or(path.len(), |n| start + n)
}

fn trim_trailing_slashes(path: &[u8]) -> &[u8] {
    let end = path.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    &path[..end]
}

/// `text` with every glob character escaped: it matches itself only.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Expands the first `{...}` group of `text` (nested groups included) into `out`, recursively.
/// Escapes and classes are kept as written for the compiler.
fn expand_braces(text: &str, out: &mut Vec<String>) -> Result<(), String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut open = None;
    let mut depth = 0usize;
    let mut commas = Vec::new();
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'[' => {
                // A class may hold `{`, `,` and `}` literally.
                i = class_end(bytes, i).ok_or("unclosed character class; missing ']'")?;
            }
            b'{' => {
                if depth == 0 {
                    open = Some(i);
                }
                depth += 1;
            }
            b',' if depth == 1 => commas.push(i),
            b'}' => {
                if depth == 0 {
                    return Err("\"}\" without \"{\" (write \\} for the character)".into());
                }
                depth -= 1;
                if depth == 0 {
                    let start = open.unwrap_or(0);
                    let mut from = start + 1;
                    for end in commas.iter().copied().chain([i]) {
                        let expanded =
                            format!("{}{}{}", &text[..start], &text[from..end], &text[i + 1..]);
                        expand_braces(&expanded, out)?;
                        if out.len() > MAX_ALTERNATIVES {
                            return Err(format!(
                                "its {{a,b}} groups expand to more than {MAX_ALTERNATIVES} alternatives"
                            ));
                        }
                        from = end + 1;
                    }
                    return Ok(());
                }
            }
            _ => {}
        }
        i += 1;
    }
    if depth > 0 {
        return Err("unclosed alternation; missing '}'".into());
    }
    if text.is_empty() {
        return Err("one of its {a,b} alternatives leaves it empty".into());
    }
    out.push(text.to_string());
    Ok(())
}

/// The index of the `]` closing the class that opens at `bytes[start]`.
fn class_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if matches!(bytes.get(i), Some(b'!' | b'^')) {
        i += 1;
    }
    // A `]` first is a member.
    if bytes.get(i) == Some(&b']') {
        i += 1;
    }
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b']' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Compiles one brace-free alternative.
fn compile_sequence(text: &str) -> Result<Sequence, String> {
    let absolute = text.starts_with('/');
    let mut segments = Vec::new();
    if !absolute {
        segments.push(Segment::AnyDepth);
    }
    let mut chars = text.chars().peekable();
    let mut tokens: Vec<Token> = Vec::new();
    let mut literal = String::new();
    // The component is exactly `**`.
    let mut any_depth = false;
    loop {
        let c = chars.next();
        if matches!(c, None | Some('/')) {
            flush_literal(&mut literal, &mut tokens);
            if any_depth {
                if !matches!(segments.last(), Some(Segment::AnyDepth)) {
                    segments.push(Segment::AnyDepth);
                }
            } else if !tokens.is_empty() {
                segments.push(segment_of(std::mem::take(&mut tokens))?);
            }
            any_depth = false;
            if c.is_none() {
                break;
            }
            continue;
        }
        match c {
            Some('\\') => match chars.next() {
                Some(escaped) => literal.push(escaped),
                None => return Err("it ends with a lone \"\\\"".into()),
            },
            Some('*') => {
                flush_literal(&mut literal, &mut tokens);
                let whole = tokens.is_empty()
                    && chars.peek() == Some(&'*')
                    && matches!(chars.clone().nth(1), None | Some('/'));
                if whole {
                    chars.next();
                    any_depth = true;
                } else if !matches!(tokens.last(), Some(Token::Any)) {
                    // `**` inside a component (`**.key`) is a `*`.
                    tokens.push(Token::Any);
                }
            }
            Some('?') => {
                flush_literal(&mut literal, &mut tokens);
                tokens.push(Token::One);
            }
            Some('[') => {
                flush_literal(&mut literal, &mut tokens);
                tokens.push(Token::Class(parse_class(&mut chars)?));
            }
            Some(other) => literal.push(other),
            None => {}
        }
    }
    Ok(Sequence {
        segments: segments.into(),
    })
}

fn flush_literal(literal: &mut String, tokens: &mut Vec<Token>) {
    if !literal.is_empty() {
        tokens.push(Token::Literal(
            std::mem::take(literal).into_bytes().into_boxed_slice(),
        ));
    }
}

fn segment_of(tokens: Vec<Token>) -> Result<Segment, String> {
    if let [Token::Literal(lit)] = tokens.as_slice() {
        if **lit == *b"." || **lit == *b".." {
            return Err("\".\" and \"..\" components never match a normalized path".into());
        }
        return Ok(Segment::Exact(lit.clone()));
    }
    let literal_at = |t: Option<&Token>| match t {
        Some(Token::Literal(l)) => l.clone(),
        _ => Box::default(),
    };
    Ok(Segment::Name(Name {
        prefix: literal_at(tokens.first()),
        suffix: literal_at(tokens.last()),
        tokens: tokens.into(),
    }))
}

/// Parses a class after its `[`.
fn parse_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Class, String> {
    let negated = matches!(chars.peek(), Some('!' | '^'));
    if negated {
        chars.next();
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = match chars.next() {
            None => return Err("unclosed character class; missing ']'".into()),
            Some(']') if !first => break,
            Some('\\') => chars
                .next()
                .ok_or("unclosed character class; missing ']'")?,
            Some(c) => c,
        };
        first = false;
        if c == '/' {
            return Err("a [...] class cannot hold \"/\" (it matches within one component)".into());
        }
        let mut hi = c;
        if chars.peek() == Some(&'-') {
            let mut ahead = chars.clone();
            ahead.next();
            match ahead.peek() {
                Some(']') | None => {}
                Some(_) => {
                    chars.next();
                    hi = match chars.next() {
                        Some('\\') => chars
                            .next()
                            .ok_or("unclosed character class; missing ']'")?,
                        Some(h) => h,
                        None => return Err("unclosed character class; missing ']'".into()),
                    };
                    if hi < c {
                        return Err(format!("the class range {c}-{hi} is reversed"));
                    }
                }
            }
        }
        ranges.push((c, hi));
    }
    Ok(Class {
        negated,
        ranges: ranges.into(),
    })
}

impl PartialEq for PathGlob {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for PathGlob {}

impl fmt::Debug for PathGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PathGlob").field(&self.text).finish()
    }
}

impl fmt::Display for PathGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str) -> PathGlob {
        PathGlob::new(p).unwrap()
    }

    fn m(p: &str, path: &str) -> bool {
        g(p).matches(Path::new(path))
    }

    #[test]
    fn relative_globs_match_at_any_depth_absolute_ones_anchor() {
        assert!(m(".env", "/work/app/.env"));
        assert!(m(".env", "/.env"));
        assert!(!m(".env", "/work/app/.envrc"));
        assert!(m("*.key", "/a/b/server.key"));
        assert!(m("/srv/*.key", "/srv/x.key"));
        assert!(!m("/srv/*.key", "/srv/sub/x.key"));
        assert!(m("secrets/*.txt", "/p/secrets/a.txt"));
        assert!(!m("secrets/*.txt", "/p/secrets/a/b.txt"));
    }

    /// The two old meanings differed here: `policy/src/path.rs` left a glob starting with `**`
    /// but not `**/` as written (globset read `**.key` as `*.key` over the whole absolute
    /// path: no match), the walk prefixed `**/` (a match at any depth). Now `**` that is not a
    /// whole component is a `*`, and a glob not starting with `/` matches at any depth.
    #[test]
    fn a_double_star_inside_a_component_is_a_star() {
        assert!(m("**.key", "/a/b.key"));
        assert!(m("**.key", "/b.key"));
        assert!(!m("**.key", "/a/b.key/c"));
        assert!(g("**.key").covers(Path::new("/a/b.key/c")));
        assert!(m("/a/x**", "/a/xyz"));
        assert!(!m("/a/x**", "/a/x/y"));
        assert!(m("/a/***", "/a/b"));
        assert!(!m("/a/***", "/a/b/c"));
        assert!(m("/a/**x/b", "/a/yx/b"));
        assert!(!m("/a/**x/b", "/a/y/x/b"));
    }

    #[test]
    fn double_star_is_zero_or_more_components() {
        assert!(m("**", "/"));
        assert!(m("**", "/a/b"));
        assert!(m("/a/**/b", "/a/b"));
        assert!(m("/a/**/b", "/a/x/y/b"));
        assert!(!m("/a/**/b", "/a/x/y/bc"));
        assert!(m("/a/**", "/a"));
        assert!(m("/a/**", "/a/b/c"));
        assert!(!m("/a/**", "/ab"));
        assert!(m("**/x/**/y", "/x/x/y"));
        assert!(m("/a/**/**/b", "/a/b"));
    }

    #[test]
    fn star_question_and_classes_stay_in_one_component() {
        assert!(!m("/a*", "/a/b"));
        assert!(!m("/a?b", "/a/b"));
        assert!(m("/a?b", "/aéb"));
        assert!(!m("/a??b", "/aéb"));
        assert!(m("/[a-c]x", "/bx"));
        assert!(!m("/[!a-c]x", "/bx"));
        assert!(m("/[!a-c]x", "/dx"));
        assert!(m("/[]]", "/]"));
        assert!(m("/[a-]", "/-"));
        assert!(m("/*.{pem,crt}", "/x.crt"));
        assert!(m("/{a,b/c}/d", "/b/c/d"));
        assert!(m("/{a,{b,c}x}", "/cx"));
        assert!(m("/\\*", "/*"));
        assert!(!m("/\\*", "/x"));
        assert!(m("/[{]", "/{"));
    }

    #[test]
    fn slashes_do_not_change_the_meaning() {
        assert!(m("/a/b/", "/a/b"));
        assert!(m("/a//b", "/a/b"));
        assert!(m("/a/b", "/a/b/"));
        assert!(m("/", "/"));
        assert!(!m("/", "/a"));
    }

    #[test]
    fn covering_counts_ancestors() {
        assert!(g(".env").covers(Path::new("/srv/.env/inner")));
        assert!(!g(".env").matches(Path::new("/srv/.env/inner")));
        assert!(g("/").covers(Path::new("/a")));
        assert!(!g("*.pem").covers(Path::new("/srv/pem")));
    }

    #[test]
    fn bad_globs_say_what_is_wrong() {
        for (p, why) in [
            ("", "empty"),
            ("/a[b", "unclosed character class; missing ']'"),
            ("/a{b", "unclosed alternation; missing '}'"),
            ("/a}b", "without"),
            ("/a\\", "lone"),
            ("/[z-a]", "reversed"),
            ("/[a/b]", "cannot hold"),
            ("/x/../*.key", "never match"),
            ("{,/a}", "leaves it empty"),
        ] {
            let e = PathGlob::new(p).unwrap_err();
            assert!(e.contains(why), "{p}: {e}");
        }
        let many = "/{a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b}";
        assert!(PathGlob::new(many).unwrap_err().contains("alternatives"));
    }

    #[test]
    fn reaches_follows_the_literal_base() {
        assert!(g("/srv/keys/*.pem").reaches(Path::new("/srv")));
        assert!(g("/srv/keys/*.pem").reaches(Path::new("/srv/keys/sub")));
        assert!(!g("/srv/keys/*.pem").reaches(Path::new("/home/u")));
        assert!(g(".env").reaches(Path::new("/home/u")));
        assert!(g("/srv/*/x").reaches(Path::new("/srv/a")));
        assert!(g("/{srv,home}/x").reaches(Path::new("/home")));
        assert!(g("/srv/keys/*.pem").lies_under(Path::new("/srv")));
        assert!(!g("/{srv,home}/*.pem").lies_under(Path::new("/srv")));
        assert!(!g("*.pem").lies_under(Path::new("/srv")));
    }
}
