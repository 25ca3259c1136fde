//! Property tests: host matching, CIDR matching, path matching, path globs, and is_subset_of.
// Test helpers outside #[test] functions may panic too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use bunker_policy::{load_str_with, normalize_host, Access, HostEnv, NetRule, PathGlob, Policy};
use proptest::prelude::*;
use serde_json::{json, Value};

fn env() -> HostEnv {
    HostEnv {
        home: Some("/home/u".into()),
        path: None,
    }
}

fn load(doc: &Value) -> Policy {
    load_str_with(&doc.to_string(), Path::new("/"), "prop.json", &env())
        .unwrap_or_else(|e| panic!("{doc}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Hosts
// ---------------------------------------------------------------------------------------------

/// An ordinary LDH label. Labels with `--` in the third and fourth places (`xn--0`) are
/// reserved for IDNA and must be valid punycode; policies with invalid ones are refused at load
/// time (see bad_policies.rs), so they are not generated here.
fn label() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,6}[a-z0-9]|[a-z]"
        .prop_filter("IDNA-reserved label", |l| l.get(2..4) != Some("--"))
}

fn domain() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..4).prop_map(|labels| labels.join("."))
}

/// Random upper-casing and an optional trailing dot.
fn respell(name: &str, flips: &[bool], dot: bool) -> String {
    let mut out: String = name
        .chars()
        .zip(flips.iter().cycle())
        .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
        .collect();
    if dot {
        out.push('.');
    }
    out
}

proptest! {
    #[test]
    fn wildcard_matches_strict_subdomains_only(
        d in domain(), sub in prop::collection::vec(label(), 1..3), glue in label(), evil in domain(), port in 1u16..,
    ) {
        let rule = NetRule::parse(&format!("*.{d}")).unwrap();
        let subdomain = format!("{}.{d}", sub.join("."));
        prop_assert!(rule.matches_name(&subdomain, port));
        prop_assert!(!rule.matches_name(&d, port), "never the bare domain");
        let glued = format!("{glue}{d}");
        prop_assert!(!rule.matches_name(&glued, port), "never a suffix-glued name: {}", glued);
        let appended = format!("{d}.{evil}");
        prop_assert!(!rule.matches_name(&appended, port) || appended.ends_with(&format!(".{d}")),
            "never the domain with more labels after it: {}", appended);
    }

    #[test]
    fn names_are_case_and_trailing_dot_insensitive(
        d in domain(), sub in label(), flips in prop::collection::vec(any::<bool>(), 1..8),
        dot1 in any::<bool>(), dot2 in any::<bool>(), port in 1u16..,
    ) {
        let policy = load(&json!({"allow": {"net": [respell(&d, &flips, dot1), format!("*.{}", respell(&d, &flips, dot2))]}}));
        let asked = respell(&d, &flips.iter().map(|f| !f).collect::<Vec<_>>(), dot2);
        prop_assert!(policy.net_decision(&asked, port).allowed);
        prop_assert_eq!(normalize_host(&asked).unwrap(), d.clone());
        let sub_asked = respell(&format!("{sub}.{d}"), &flips, dot1);
        prop_assert!(policy.net_decision(&sub_asked, port).allowed);
        let glued = format!("x{d}");
        prop_assert!(!policy.net_decision(&glued, port).allowed);
    }

    #[test]
    fn ports_restrict(d in domain(), port in 1u16.., other in 1u16..) {
        let policy = load(&json!({"allow": {"net": [format!("{d}:{port}")]}}));
        prop_assert!(policy.net_decision(&d, port).allowed);
        prop_assert_eq!(policy.net_decision(&d, other).allowed, other == port);
    }
}

// ---------------------------------------------------------------------------------------------
// CIDRs
// ---------------------------------------------------------------------------------------------

fn same_prefix_v4(a: u32, b: u32, len: u8) -> bool {
    len == 0 || (a >> (32 - len as u32)) == (b >> (32 - len as u32))
}

fn same_prefix_v6(a: u128, b: u128, len: u8) -> bool {
    len == 0 || (a >> (128 - len as u32)) == (b >> (128 - len as u32))
}

fn mask_v4(a: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - len as u32))
    }
}

fn mask_v6(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - len as u32))
    }
}

proptest! {
    #[test]
    fn v4_cidr_contains_iff_prefix_bits_equal(net in any::<u32>(), len in 0u8..=32, probe in any::<u32>(), near in any::<bool>()) {
        let network = mask_v4(net, len);
        // Half the probes share the prefix, so both outcomes are exercised.
        let probe = if near { network | (probe & !mask_v4(u32::MAX, len)) } else { probe };
        let cidr = format!("{}/{len}", Ipv4Addr::from(network));
        let policy = load(&json!({"allow": {"net": [cidr]}}));
        let v4 = IpAddr::V4(Ipv4Addr::from(probe));
        let mapped = IpAddr::V6(Ipv4Addr::from(probe).to_ipv6_mapped());
        let expected = same_prefix_v4(network, probe, len);
        prop_assert_eq!(policy.ip_decision(v4, 80).allowed, expected);
        prop_assert_eq!(policy.ip_decision(mapped, 80).allowed, expected, "v4-mapped v6 is v4");
        prop_assert_eq!(policy.ip_explicitly_allowed(mapped, 80, "0.0.0.0/0".parse().unwrap()), expected);
        // The rule written in its v4-mapped form is the same rule.
        let mapped_rule = format!("::ffff:{}/{}", Ipv4Addr::from(network), len as u32 + 96);
        let policy6 = load(&json!({"allow": {"net": [mapped_rule]}}));
        prop_assert_eq!(policy6.ip_decision(v4, 80).allowed, expected);
        prop_assert_eq!(policy6.ip_decision(mapped, 80).allowed, expected);
    }

    #[test]
    fn v6_cidr_contains_iff_prefix_bits_equal(net in any::<u128>(), len in 0u8..=128, probe in any::<u128>(), near in any::<bool>()) {
        let network = mask_v6(net, len);
        let probe = if near { network | (probe & !mask_v6(u128::MAX, len)) } else { probe };
        let cidr = format!("{}/{len}", Ipv6Addr::from(network));
        let policy = load(&json!({"allow": {"net": [cidr]}}));
        let probe_ip = Ipv6Addr::from(probe);
        prop_assert_eq!(policy.ip_decision(IpAddr::V6(probe_ip), 80).allowed, same_prefix_v6(network, probe, len));
    }

    #[test]
    fn single_addresses_match_only_themselves(a in any::<u32>(), b in any::<u32>()) {
        let policy = load(&json!({"allow": {"net": [Ipv4Addr::from(a).to_string()]}}));
        prop_assert!(policy.ip_decision(IpAddr::V4(Ipv4Addr::from(a)), 1).allowed);
        prop_assert_eq!(policy.ip_decision(IpAddr::V4(Ipv4Addr::from(b)), 1).allowed, a == b);
    }
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

fn component() -> impl Strategy<Value = String> {
    "[a-z]{1,5}"
}

fn abs_path() -> impl Strategy<Value = PathBuf> {
    prop::collection::vec(component(), 1..5)
        .prop_map(|c| PathBuf::from(format!("/{}", c.join("/"))))
}

proptest! {
    #[test]
    fn deny_beats_allow(allow in abs_path(), deny_extra in prop::collection::vec(component(), 0..3),
                        below in prop::collection::vec(component(), 0..3), access in 0usize..3) {
        let deny = allow.join(deny_extra.join("/"));
        // The same path in both lists is a contradiction; one level deeper is a valid narrowing.
        let deny = if deny == allow { allow.join("d") } else { deny };
        let list = ["read", "write", "exec"][access];
        let policy = load(&json!({"allow": {list: [allow.clone()]}, "deny": {list: [deny.clone()]}}));
        let access = [Access::Read, Access::Write, Access::Exec][access];
        let target = deny.join(below.join("/"));
        let decision = policy.path_decision(&target, access);
        prop_assert!(!decision.allowed);
        prop_assert!(decision.rule.starts_with(&format!("deny.{list}[0]")), "{}", decision.rule);
        // A deny.read hides the path from every kind of access.
        let hidden = load(&json!({"allow": {"read": [allow.clone()], "write": [allow.clone()], "exec": [allow.clone()]}, "deny": {"read": [deny.clone()]}}));
        for a in [Access::Read, Access::Write, Access::Exec] {
            prop_assert!(!hidden.path_decision(&target, a).allowed);
        }
    }

    #[test]
    fn prefixes_match_on_component_boundaries(allow in abs_path(), glue in "[a-z]{1,4}", below in prop::collection::vec(component(), 0..3)) {
        let policy = load(&json!({"allow": {"read": [allow.clone()]}}));
        let inside = allow.join(below.join("/"));
        prop_assert!(policy.path_decision(&inside, Access::Read).allowed);
        let glued = PathBuf::from(format!("{}{glue}", allow.display()));
        prop_assert!(!policy.path_decision(&glued, Access::Read).allowed, "{} must not cover {}", allow.display(), glued.display());
        let escaped = allow.join("..").join(format!("{glue}x"));
        prop_assert!(!policy.path_decision(&escaped, Access::Read).allowed || escaped.starts_with(&allow));
    }

    #[test]
    fn longest_allow_names_the_rule(outer in abs_path(), inner_extra in prop::collection::vec(component(), 1..3)) {
        let inner = outer.join(inner_extra.join("/"));
        let policy = load(&json!({"allow": {"read": [outer.clone(), inner.clone()]}}));
        let decision = policy.path_decision(&inner.join("f"), Access::Read);
        prop_assert_eq!(decision.rule, format!("allow.read[1] ({})", inner.display()));
    }
}

// ---------------------------------------------------------------------------------------------
// Path globs: the compiled matcher against a naive reference
// ---------------------------------------------------------------------------------------------

/// One piece of a glob component, as the reference reads it.
#[derive(Debug, Clone, PartialEq)]
enum Atom {
    Lit(String),
    One,
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `{x,y}` within one component.
    Alt(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Comp {
    AnyDepth,
    Atoms(Vec<Atom>),
}

#[derive(Debug, Clone)]
struct GlobSpec {
    absolute: bool,
    comps: Vec<Comp>,
}

/// A character of a name: a UTF-8 scalar, or a byte that does not start one.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    Char(char),
    Byte(u8),
}

const ALPHABET: [char; 4] = ['a', 'b', '.', 'é'];

fn lit() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(&ALPHABET[..]), 1..3)
        .prop_map(|c| c.into_iter().collect())
}

fn atom() -> impl Strategy<Value = Atom> {
    let range = (
        prop::sample::select(&ALPHABET[..]),
        prop::sample::select(&ALPHABET[..]),
    )
        .prop_map(|(a, b)| if a <= b { (a, b) } else { (b, a) });
    let alt_word = prop::collection::vec(prop::sample::select(&['a', 'b', 'é'][..]), 1..3)
        .prop_map(|c| c.into_iter().collect::<String>());
    prop_oneof![
        3 => lit().prop_map(Atom::Lit),
        1 => Just(Atom::One),
        2 => Just(Atom::Any),
        1 => (any::<bool>(), prop::collection::vec(range, 1..3))
            .prop_map(|(negated, ranges)| Atom::Class { negated, ranges }),
        1 => prop::collection::vec(alt_word, 1..3).prop_map(Atom::Alt),
    ]
}

/// Adjacent literals merged; a component of two stars alone is `**` (generated apart), while
/// `**` beside anything else stays two stars (`**.key`: one `*`).
fn tidy(atoms: Vec<Atom>) -> Vec<Atom> {
    let mut out: Vec<Atom> = Vec::new();
    for a in atoms {
        match (out.last_mut(), &a) {
            (Some(Atom::Lit(prev)), Atom::Lit(next)) => prev.push_str(next),
            _ => out.push(a),
        }
    }
    if out == [Atom::Any, Atom::Any] {
        out.pop();
    }
    out
}

fn glob_spec() -> impl Strategy<Value = GlobSpec> {
    let comp = prop_oneof![
        1 => Just(Comp::AnyDepth),
        4 => prop::collection::vec(atom(), 1..4).prop_map(|a| Comp::Atoms(tidy(a))),
    ]
    // `.` and `..` never match a normalized path: refused at compile time.
    .prop_filter("dot component", |c| {
        !matches!(c, Comp::Atoms(a) if matches!(a.as_slice(), [Atom::Lit(l)] if l == "." || l == ".."))
    });
    (any::<bool>(), prop::collection::vec(comp, 1..5))
        .prop_map(|(absolute, comps)| GlobSpec { absolute, comps })
}

impl GlobSpec {
    fn text(&self) -> String {
        let comps: Vec<String> = self
            .comps
            .iter()
            .map(|c| match c {
                Comp::AnyDepth => "**".to_string(),
                Comp::Atoms(atoms) => atoms
                    .iter()
                    .map(|a| match a {
                        Atom::Lit(l) => l.clone(),
                        Atom::One => "?".into(),
                        Atom::Any => "*".into(),
                        Atom::Class { negated, ranges } => {
                            let body: String = ranges
                                .iter()
                                .map(|&(lo, hi)| {
                                    if lo == hi {
                                        lo.to_string()
                                    } else {
                                        format!("{lo}-{hi}")
                                    }
                                })
                                .collect();
                            format!("[{}{body}]", if *negated { "!" } else { "" })
                        }
                        Atom::Alt(words) => format!("{{{}}}", words.join(",")),
                    })
                    .collect(),
            })
            .collect();
        format!(
            "{}{}",
            if self.absolute { "/" } else { "" },
            comps.join("/")
        )
    }

    /// The reference: components tried every way, recursively.
    fn matches(&self, path: &[Vec<Unit>]) -> bool {
        let mut comps = self.comps.clone();
        if !self.absolute {
            comps.insert(0, Comp::AnyDepth);
        }
        ref_path(&comps, path)
    }
}

fn ref_path(comps: &[Comp], path: &[Vec<Unit>]) -> bool {
    match comps.split_first() {
        None => path.is_empty(),
        Some((Comp::AnyDepth, rest)) => (0..=path.len()).any(|k| ref_path(rest, &path[k..])),
        Some((Comp::Atoms(atoms), rest)) => {
            !path.is_empty() && ref_name(atoms, &path[0]) && ref_path(rest, &path[1..])
        }
    }
}

fn ref_name(atoms: &[Atom], name: &[Unit]) -> bool {
    let Some((atom, rest)) = atoms.split_first() else {
        return name.is_empty();
    };
    let literal = |word: &str| -> Option<usize> {
        let units: Vec<Unit> = word.chars().map(Unit::Char).collect();
        name.starts_with(&units).then_some(units.len())
    };
    match atom {
        Atom::Lit(l) => literal(l).is_some_and(|n| ref_name(rest, &name[n..])),
        Atom::One => !name.is_empty() && ref_name(rest, &name[1..]),
        Atom::Any => (0..=name.len()).any(|k| ref_name(rest, &name[k..])),
        Atom::Class { negated, ranges } => match name.first() {
            Some(Unit::Char(c)) => {
                ranges.iter().any(|&(lo, hi)| lo <= *c && *c <= hi) != *negated
                    && ref_name(rest, &name[1..])
            }
            Some(Unit::Byte(_)) => *negated && ref_name(rest, &name[1..]),
            None => false,
        },
        Atom::Alt(words) => words
            .iter()
            .any(|w| literal(w).is_some_and(|n| ref_name(rest, &name[n..]))),
    }
}

fn units(bytes: &[u8]) -> Vec<Unit> {
    let mut out = Vec::new();
    for chunk in bytes.utf8_chunks() {
        out.extend(chunk.valid().chars().map(Unit::Char));
        out.extend(chunk.invalid().iter().map(|&b| Unit::Byte(b)));
    }
    out
}

/// Path components over the glob alphabet, plus a byte that is not UTF-8.
fn name_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::sample::select(&ALPHABET[..]).prop_map(|c| c.to_string().into_bytes()),
        Just(vec![0xff]),
        Just(vec![0xc3]),
    ];
    prop::collection::vec(piece, 1..4)
        .prop_map(|p| p.concat())
        .prop_filter("dot component", |n| n != b"." && n != b"..")
}

fn glob_path() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(name_bytes(), 0..5)
}

fn as_path(comps: &[Vec<u8>]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = b"/".to_vec();
    bytes.extend(comps.join(&b'/'));
    PathBuf::from(std::ffi::OsStr::from_bytes(&bytes))
}

/// A path the glob matches, built from the spec, so that matches are not rare.
fn instance(spec: &GlobSpec, filler: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut fill = filler.iter().cycle();
    for c in &spec.comps {
        match c {
            Comp::AnyDepth => out.extend(fill.next().cloned()),
            Comp::Atoms(atoms) => {
                let mut name = String::new();
                for a in atoms {
                    match a {
                        Atom::Lit(l) => name.push_str(l),
                        Atom::One | Atom::Any => name.push('b'),
                        Atom::Class {
                            negated: false,
                            ranges,
                        } => name.push(ranges[0].0),
                        Atom::Class { negated: true, .. } => name.push('z'),
                        Atom::Alt(words) => name.push_str(&words[0]),
                    }
                }
                out.push(name.into_bytes());
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_glob_matcher_agrees_with_the_reference(spec in glob_spec(), path in glob_path(), filler in prop::collection::vec(name_bytes(), 1..3), near in any::<bool>()) {
        let text = spec.text();
        let glob = PathGlob::new(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let path = if near { instance(&spec, &filler) } else { path };
        let comps: Vec<Vec<Unit>> = path.iter().map(|c| units(c)).collect();
        let p = as_path(&path);
        let expected = spec.matches(&comps);
        prop_assert_eq!(glob.matches(&p), expected, "{} vs {}", text, p.display());
        // Covering: the path or one of its ancestors matches.
        let covered = (0..=comps.len()).any(|k| spec.matches(&comps[..k]));
        prop_assert_eq!(glob.covers(&p), covered, "{} covering {}", text, p.display());
        // Every match lies where `reaches` says the glob can reach.
        if expected {
            prop_assert!(glob.reaches(&p), "{} must reach {}", text, p.display());
        }
        // A trailing slash on the glob or the path changes nothing.
        let slashed = PathGlob::new(&format!("{text}/")).unwrap();
        prop_assert_eq!(slashed.matches(&p), expected);
        prop_assert_eq!(glob.matches(&p.join("")), expected);
    }

    /// Any text compiles or is refused with a reason; a compiled glob matches any path without
    /// panicking.
    #[test]
    fn any_glob_text_compiles_or_says_why(text in "[*?\\[\\]{}!^,/ab.é\\\\-]{0,14}", path in glob_path()) {
        match PathGlob::new(&text) {
            Ok(glob) => {
                let p = as_path(&path);
                let _ = (glob.matches(&p), glob.covers(&p), glob.reaches(&p));
            }
            Err(e) => prop_assert!(e.starts_with("invalid glob"), "{}", e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// is_subset_of
// ---------------------------------------------------------------------------------------------

const READ: [&str; 6] = ["/data", "/data/a", "/srv", "/usr", "/usr/lib", "/etc/x"];
const WRITE: [&str; 3] = ["/tmp/o", "/data/a/w", "/srv/w"];
const EXEC: [&str; 3] = ["/usr", "/usr/bin", "/opt/tool"];
const NET: [&str; 7] = [
    "example.com",
    "*.example.com",
    "a.example.com:443",
    "10.0.0.0/8",
    "10.1.0.0/16",
    "::1",
    "*",
];
const ENV: [&str; 3] = ["A", "B", "C"];
const DENY_READ: [&str; 3] = ["/data/a/s", "**/*.key", "/srv/private"];
const DENY_NET: [&str; 2] = ["ads.example.com", "10.1.2.0/24"];
const SIZES: [u64; 4] = [1 << 20, 2 << 20, 64 << 20, 1 << 30];
const LANDLOCK: [&str; 3] = ["off", "best-effort", "required"];

/// A generated policy, as choices over small pools (so that overlaps are common).
#[derive(Debug, Clone)]
struct Gen {
    read: Vec<bool>,
    write: Vec<bool>,
    exec: Vec<bool>,
    net: Vec<bool>,
    env: Vec<bool>,
    deny_read: Vec<bool>,
    deny_net: Vec<bool>,
    memory: Option<usize>,
    pids: Option<u64>,
    timeout_ms: Option<u64>,
    landlock: usize,
    seccomp_off: bool,
    eval: bool,
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        (
            prop::collection::vec(any::<bool>(), READ.len()),
            prop::collection::vec(any::<bool>(), WRITE.len()),
            prop::collection::vec(any::<bool>(), EXEC.len()),
            prop::collection::vec(any::<bool>(), NET.len()),
            prop::collection::vec(any::<bool>(), ENV.len()),
            prop::collection::vec(any::<bool>(), DENY_READ.len()),
            prop::collection::vec(any::<bool>(), DENY_NET.len()),
        ),
        (
            prop::option::of(0..SIZES.len()),
            prop::option::of(1u64..100),
            prop::option::of(1u64..10_000),
            0..LANDLOCK.len(),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (read, write, exec, net, env, deny_read, deny_net),
                (memory, pids, timeout_ms, landlock, seccomp_off, eval),
            )| Gen {
                read,
                write,
                exec,
                net,
                env,
                deny_read,
                deny_net,
                memory,
                pids,
                timeout_ms,
                landlock,
                seccomp_off,
                eval,
            },
        )
}

fn pick(pool: &[&str], mask: &[bool]) -> Vec<String> {
    pool.iter()
        .zip(mask)
        .filter(|(_, on)| **on)
        .map(|(s, _)| s.to_string())
        .collect()
}

impl Gen {
    fn doc(&self) -> Value {
        let mut limits = serde_json::Map::new();
        if let Some(m) = self.memory {
            limits.insert("memory".into(), json!(SIZES[m]));
        }
        if let Some(p) = self.pids {
            limits.insert("pids".into(), json!(p));
        }
        if let Some(t) = self.timeout_ms {
            limits.insert("timeout".into(), json!(format!("{t}ms")));
        }
        json!({
            "allow": {
                "read": pick(&READ, &self.read), "write": pick(&WRITE, &self.write),
                "exec": pick(&EXEC, &self.exec), "net": pick(&NET, &self.net), "env": pick(&ENV, &self.env),
            },
            "deny": {"read": pick(&DENY_READ, &self.deny_read), "net": pick(&DENY_NET, &self.deny_net)},
            "limits": limits,
            "kernel": {"landlock": LANDLOCK[self.landlock], "seccomp": if self.seccomp_off { "off" } else { "default" }},
        })
    }

    fn policy(&self) -> Policy {
        // `js` is refused at load time until its layer exists; the subset check still covers it.
        let mut policy = load(&self.doc());
        policy.js.eval = self.eval;
        policy
    }

    /// A narrowing: grants removed where `drop` says so, denies added where `add` says so,
    /// limits tightened, kernel options strengthened.
    fn narrow(&self, drop: &[bool], add: &[bool], tighten: bool) -> Gen {
        let mut n = self.clone();
        let mut bits = drop.iter().cycle();
        for list in [
            &mut n.read,
            &mut n.write,
            &mut n.exec,
            &mut n.net,
            &mut n.env,
        ] {
            for on in list.iter_mut() {
                if *bits.next().unwrap_or(&false) {
                    *on = false;
                }
            }
        }
        let mut bits = add.iter().cycle();
        for list in [&mut n.deny_read, &mut n.deny_net] {
            for on in list.iter_mut() {
                if *bits.next().unwrap_or(&false) {
                    *on = true;
                }
            }
        }
        if tighten {
            n.memory = Some(n.memory.map_or(0, |m| m.saturating_sub(1)));
            n.pids = Some(n.pids.map_or(1, |p| (p / 2).max(1)));
            n.timeout_ms = Some(n.timeout_ms.map_or(1, |t| (t / 2).max(1)));
            n.landlock = LANDLOCK.len() - 1;
            n.seccomp_off = false;
            n.eval = false;
        }
        n
    }
}

fn bits() -> impl Strategy<Value = Vec<bool>> {
    prop::collection::vec(any::<bool>(), 1..24)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn subset_is_reflexive(g in gen()) {
        let p = g.policy();
        prop_assert_eq!(p.is_subset_of(&p), Ok(()));
    }

    #[test]
    fn an_extra_grant_is_never_a_subset(g in gen(), which in 0usize..5, n in 0usize..100) {
        let base = g.policy();
        let mut doc = g.doc();
        // Grants no generated policy has: outside every pool.
        let (list, value) = [
            ("read", json!(format!("/extra/{n}"))),
            ("write", json!("/usr/lib")),
            ("exec", json!(format!("/extra/bin{n}"))),
            // Not "h.extra.test": the pool's "*" covers every name. No pool rule covers this address.
            ("net", json!(format!("192.0.2.{n}"))),
            ("env", json!(format!("EXTRA_{n}"))),
        ][which].clone();
        doc["allow"][list].as_array_mut().unwrap().push(value);
        let wider = load(&doc);
        let result = wider.is_subset_of(&base);
        prop_assert!(result.is_err(), "{}", doc);
    }

    #[test]
    fn narrowing_stays_a_subset(g in gen(), drop in bits(), add in bits(), tighten in any::<bool>()) {
        let base = g.policy();
        let narrow = g.narrow(&drop, &add, tighten).policy();
        prop_assert_eq!(narrow.is_subset_of(&base), Ok(()));
    }

    #[test]
    fn loosening_a_limit_is_not_a_subset(g in gen()) {
        let base = g.policy();
        let mut doc = g.doc();
        let limits = doc["limits"].as_object_mut().unwrap();
        match g.pids {
            Some(p) => limits.insert("pids".into(), json!(p + 1)),
            None => limits.insert("pids".into(), json!(1)),
        };
        let mut changed = load(&doc);
        changed.js.eval = g.eval;
        prop_assert_eq!(changed.is_subset_of(&base).is_ok(), g.pids.is_none());
    }

    #[test]
    fn subset_is_transitive_on_chains(c in gen(), d1 in bits(), a1 in bits(), t1 in any::<bool>(), d2 in bits(), a2 in bits(), t2 in any::<bool>()) {
        let b = c.narrow(&d1, &a1, t1);
        let a = b.narrow(&d2, &a2, t2);
        let (pa, pb, pc) = (a.policy(), b.policy(), c.policy());
        prop_assert_eq!(pa.is_subset_of(&pb), Ok(()));
        prop_assert_eq!(pb.is_subset_of(&pc), Ok(()));
        prop_assert_eq!(pa.is_subset_of(&pc), Ok(()));
    }

    #[test]
    fn subset_is_transitive_on_random_triples(a in gen(), b in gen(), c in gen()) {
        let (pa, pb, pc) = (a.policy(), b.policy(), c.policy());
        if pa.is_subset_of(&pb).is_ok() && pb.is_subset_of(&pc).is_ok() {
            prop_assert_eq!(pa.is_subset_of(&pc), Ok(()));
        }
    }

    #[test]
    fn subset_agrees_with_decisions(a in gen(), b in gen(), probe in 0usize..READ.len(), host in 0usize..4) {
        // When a ⊆ b, anything a allows, b allows too.
        let (pa, pb) = (a.policy(), b.policy());
        if pa.is_subset_of(&pb).is_ok() {
            let path = Path::new(READ[probe]).join("f");
            for access in [Access::Read, Access::Write, Access::Exec] {
                if pa.path_decision(&path, access).allowed {
                    prop_assert!(pb.path_decision(&path, access).allowed);
                }
            }
            let name = ["example.com", "a.example.com", "ads.example.com", "x.y.example.com"][host];
            for port in [80, 443] {
                if pa.net_decision(name, port).allowed {
                    prop_assert!(pb.net_decision(name, port).allowed);
                }
            }
            for ip in ["10.1.2.3", "10.2.0.1", "::1"] {
                let ip: IpAddr = ip.parse().unwrap();
                if pa.ip_decision(ip, 443).allowed {
                    prop_assert!(pb.ip_decision(ip, 443).allowed);
                }
            }
        }
    }
}
