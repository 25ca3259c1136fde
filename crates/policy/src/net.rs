//! Network rules: host patterns (matched label by label), IP literals and CIDRs, with ports.
//!
//! Host names are compared in one canonical form: lower-case, no trailing dot, IDNA names as
//! punycode (`bücher.example` is `xn--bcher-kva.example`). `*.example.com` matches any name with
//! at least one more label before `example.com`, never `example.com` itself and never a name that
//! merely ends in the same characters (`evilexample.com`). Addresses are compared in one space:
//! an IPv4 address and its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`) are the same address.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::{IpNet, Ipv6Net};
use serde::{Serialize, Serializer};

use crate::types::Policy;
use crate::units::quote;

/// One entry of `allow.net` or `deny.net`, parsed.
///
/// Serializes as its canonical text (`Display`), e.g. `"*.xn--bcher-kva.example:443"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRule {
    /// The rule as written, for messages.
    pub text: String,
    pub host: HostPattern,
    /// `None` matches every port.
    pub port: Option<u16>,
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostPattern {
    /// Exactly this name (lower-case, punycode, no trailing dot).
    Name(String),
    /// `*.suffix`: any name with at least one more label before `suffix`.
    Subdomains(String),
    /// `*`: every host name (not IP literals: those need an IP rule). In `deny.net`, `*` also
    /// denies every address.
    AnyName,
    /// One address (IPv4-mapped IPv6 addresses are stored as IPv4).
    Ip(IpAddr),
    /// A CIDR block (IPv4-mapped IPv6 blocks are stored as IPv4).
    Cidr(IpNet),
}

/// The outcome of a network check, with the rule that decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetDecision {
    pub allowed: bool,
    /// `allow.net[1] (*.example.com)`, `deny.net[0] (evil.example.com)`, or
    /// `no allow.net rule matches host:port`.
    pub rule: String,
}

const RULE_EXPECTED: &str =
    r#"expected a host name, "*.domain", "*", an IP address or a CIDR, with an optional ":port""#;

impl NetRule {
    /// Parses one `allow.net`/`deny.net` entry: `example.com`, `*.example.com`, `*`, each with an
    /// optional `:port`; `1.2.3.4[:port]`, `::1`, `[::1]:8080`, `10.0.0.0/8[:port]`, `fd00::/8`,
    /// `[fd00::/8]:443`. The error says what was expected.
    pub fn parse(text: &str) -> Result<NetRule, String> {
        if text.is_empty() {
            return Err(format!("{RULE_EXPECTED}, found an empty string"));
        }
        if text.contains(char::is_whitespace) {
            return Err(format!("{RULE_EXPECTED}, found {}", quote(text)));
        }
        if text.contains("://") {
            return Err(format!(
                "expected a host name without a scheme, found {}",
                quote(text)
            ));
        }
        let (host, port) = split_port(text)?;
        let port = match port {
            None => None,
            Some(p) => Some(parse_port(p, text)?),
        };
        let host = parse_host_pattern(host, text)?;
        Ok(NetRule {
            text: text.to_string(),
            host,
            port,
        })
    }

    /// Whether this rule matches a host name (already normalized) on a port.
    pub fn matches_name(&self, normalized_host: &str, port: u16) -> bool {
        self.port_matches(port) && self.host.matches_name(normalized_host)
    }

    /// Whether this rule names this address (or a CIDR containing it) on a port.
    pub fn matches_ip(&self, ip: IpAddr, port: u16) -> bool {
        self.port_matches(port) && self.host.matches_ip(ip)
    }

    fn port_matches(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }

    /// Whether every connection this rule matches is also matched by `outer` (`*` in `outer`
    /// covers names only, as it does in allow lists).
    pub fn is_covered_by(&self, outer: &NetRule) -> bool {
        let port_ok = match (outer.port, self.port) {
            (None, _) => true,
            (Some(o), Some(s)) => o == s,
            (Some(_), None) => false,
        };
        port_ok && outer.host.covers(&self.host)
    }

    /// Whether some connection matches both rules.
    pub fn overlaps(&self, other: &NetRule) -> bool {
        let ports = match (self.port, other.port) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        ports && self.host.overlaps(&other.host)
    }
}

impl fmt::Display for NetRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.host {
            HostPattern::Name(n) => n.clone(),
            HostPattern::Subdomains(s) => format!("*.{s}"),
            HostPattern::AnyName => "*".to_string(),
            HostPattern::Ip(ip) => ip.to_string(),
            HostPattern::Cidr(net) => net.to_string(),
        };
        let v6 = matches!(self.host, HostPattern::Ip(IpAddr::V6(_)))
            || matches!(self.host, HostPattern::Cidr(IpNet::V6(_)));
        match (self.port, v6) {
            (None, _) => f.write_str(&host),
            (Some(p), true) => write!(f, "[{host}]:{p}"),
            (Some(p), false) => write!(f, "{host}:{p}"),
        }
    }
}

impl Serialize for NetRule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses the canonical text (an effective policy sent to another process, e.g. bunker's
/// spawner); `text` is then that canonical form.
impl<'de> serde::Deserialize<'de> for NetRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        NetRule::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Splits `host:port`, `[v6]:port`, `[v6]`, bare v6 (no port), `host`.
fn split_port(text: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing \"]\" after the IPv6 address in {}", quote(text)))?;
        if after.is_empty() {
            return Ok((inside, None));
        }
        return match after.strip_prefix(':') {
            Some(port) => Ok((inside, Some(port))),
            None => Err(format!("{RULE_EXPECTED}, found {}", quote(text))),
        };
    }
    match text.matches(':').count() {
        0 => Ok((text, None)),
        1 => {
            let (host, port) = text.split_once(':').unwrap_or((text, ""));
            Ok((host, Some(port)))
        }
        // Unbracketed IPv6 address or block: no port possible.
        _ => Ok((text, None)),
    }
}

fn parse_port(port: &str, text: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!(
            "invalid port {} in {}: expected a number from 1 to 65535",
            quote(port),
            quote(text)
        )),
    }
}

fn parse_host_pattern(host: &str, text: &str) -> Result<HostPattern, String> {
    if host.is_empty() {
        return Err(format!("{RULE_EXPECTED}, found {}", quote(text)));
    }
    if host.contains('/') {
        let net: IpNet = host.parse().map_err(|_| {
            format!(
                "invalid CIDR {}: expected an address/prefix like \"10.0.0.0/8\" or \"fd00::/8\"",
                quote(host)
            )
        })?;
        if net.trunc() != net {
            return Err(format!(
                "CIDR {} has bits set after the prefix length; write {}",
                quote(host),
                quote(&net.trunc().to_string())
            ));
        }
        return Ok(canonical_net(net));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(HostPattern::Ip(canonical_ip(ip)));
    }
    if host.contains(':') {
        return Err(format!("invalid IPv6 address {}", quote(host)));
    }
    if host == "*" {
        return Ok(HostPattern::AnyName);
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        if suffix.contains('*') {
            return Err(wildcard_error(text));
        }
        let suffix = normalize_host(suffix)?;
        return Ok(HostPattern::Subdomains(suffix));
    }
    if host.contains('*') {
        return Err(wildcard_error(text));
    }
    Ok(HostPattern::Name(normalize_host(host)?))
}

fn wildcard_error(text: &str) -> String {
    format!(
        "a wildcard must be the whole first label, like \"*.example.com\", found {}",
        quote(text)
    )
}

/// Puts a host name in canonical form: IDNA to punycode (which also lower-cases), one trailing
/// dot removed. Refuses empty labels, characters that cannot appear in a host name, and names
/// that only look like names but are numeric IPv4 forms (`127.1`, `0x7f.1`).
pub fn normalize_host(host: &str) -> Result<String, String> {
    let bad = |why: &str| format!("invalid host name {}: {why}", quote(host));
    if host.is_empty() {
        return Err("invalid host name: it is empty".to_string());
    }
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    if trimmed.is_empty()
        || trimmed.ends_with('.')
        || trimmed.starts_with('.')
        || trimmed.contains("..")
    {
        return Err(bad("it has an empty label"));
    }
    let ascii =
        idna::domain_to_ascii(trimmed).map_err(|_| bad("not a valid internationalized name"))?;
    if ascii.is_empty() || ascii.len() > 253 {
        return Err(bad("a name has 1 to 253 characters"));
    }
    for label in ascii.split('.') {
        if label.is_empty() {
            return Err(bad("it has an empty label"));
        }
        if label.len() > 63 {
            return Err(bad("a label has at most 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(bad(
                "only letters, digits, \"-\" and \"_\" may appear in a label",
            ));
        }
    }
    let last = ascii.rsplit('.').next().unwrap_or("");
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || (last.starts_with("0x") && last[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    if numeric {
        return Err(bad(
            "it looks like a numeric IP address; write addresses as a.b.c.d",
        ));
    }
    Ok(ascii)
}

/// An IPv4-mapped IPv6 address becomes the IPv4 address; everything else is unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// A CIDR inside `::ffff:0:0/96` becomes the IPv4 CIDR; a /32 or /128 becomes a plain address.
fn canonical_net(net: IpNet) -> HostPattern {
    let net = match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        other => other,
    };
    if net.prefix_len() == net.max_prefix_len() {
        HostPattern::Ip(net.network())
    } else {
        HostPattern::Cidr(net)
    }
}

/// Addresses and blocks in one IPv6 space, IPv4 as `::ffff:a.b.c.d`, so that containment
/// works across families.
fn v6_space(pattern: &HostPattern) -> Option<Ipv6Net> {
    match pattern {
        HostPattern::Ip(IpAddr::V4(a)) => Ipv6Net::new(a.to_ipv6_mapped(), 128).ok(),
        HostPattern::Ip(IpAddr::V6(a)) => Ipv6Net::new(*a, 128).ok(),
        HostPattern::Cidr(IpNet::V4(n)) => {
            Ipv6Net::new(n.network().to_ipv6_mapped(), n.prefix_len() + 96).ok()
        }
        HostPattern::Cidr(IpNet::V6(n)) => Some(*n),
        _ => None,
    }
}

fn v6_of(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// `a` is `suffix` with at least one more label in front.
fn is_strict_subdomain(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len() + 1
        && name.ends_with(suffix)
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

impl HostPattern {
    /// Whether this pattern matches a (normalized) host name. IP patterns never match names.
    pub fn matches_name(&self, name: &str) -> bool {
        match self {
            HostPattern::Name(n) => n == name,
            HostPattern::Subdomains(s) => is_strict_subdomain(name, s),
            HostPattern::AnyName => true,
            HostPattern::Ip(_) | HostPattern::Cidr(_) => false,
        }
    }

    /// Whether this pattern names the address or a block containing it. Name patterns never
    /// match addresses.
    pub fn matches_ip(&self, ip: IpAddr) -> bool {
        let ip = v6_of(canonical_ip(ip));
        v6_space(self).is_some_and(|net| net.contains(&ip))
    }

    fn is_ip(&self) -> bool {
        matches!(self, HostPattern::Ip(_) | HostPattern::Cidr(_))
    }

    /// Whether `self` matches every host `inner` matches (`*` covers names only).
    pub fn covers(&self, inner: &HostPattern) -> bool {
        match (self, inner) {
            (HostPattern::AnyName, i) => !i.is_ip(),
            (HostPattern::Subdomains(s), HostPattern::Name(n)) => is_strict_subdomain(n, s),
            (HostPattern::Subdomains(s), HostPattern::Subdomains(t)) => {
                t == s || is_strict_subdomain(t, s)
            }
            (HostPattern::Name(a), HostPattern::Name(b)) => a == b,
            (o, i) if o.is_ip() && i.is_ip() => match (v6_space(o), v6_space(i)) {
                (Some(o), Some(i)) => o.contains(&i),
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether some host is matched by both patterns.
    pub fn overlaps(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::AnyName, o) | (o, HostPattern::AnyName) => !o.is_ip(),
            (HostPattern::Name(a), HostPattern::Name(b)) => a == b,
            (HostPattern::Subdomains(s), HostPattern::Name(n))
            | (HostPattern::Name(n), HostPattern::Subdomains(s)) => is_strict_subdomain(n, s),
            (HostPattern::Subdomains(a), HostPattern::Subdomains(b)) => {
                a == b || is_strict_subdomain(a, b) || is_strict_subdomain(b, a)
            }
            (a, b) if a.is_ip() && b.is_ip() => match (v6_space(a), v6_space(b)) {
                (Some(a), Some(b)) => a.contains(&b) || b.contains(&a),
                _ => false,
            },
            _ => false,
        }
    }
}

/// `host:port`, with IPv6 addresses in brackets.
fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn rule_text(list: &str, index: usize, rule: &NetRule) -> String {
    format!("{list}[{index}] ({})", rule.text)
}

impl Policy {
    /// May the program connect to this host name on this port? Deny beats allow; no matching
    /// allow rule means denied. An IP literal (`10.0.0.1`, `[::1]`) is checked as an address
    /// by [`Policy::ip_decision`]. The proxy must still check the addresses the name resolves to.
    pub fn net_decision(&self, host: &str, port: u16) -> NetDecision {
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return self.ip_decision(ip, port);
        }
        let name = match normalize_host(host) {
            Ok(name) => name,
            Err(why) => {
                return NetDecision {
                    allowed: false,
                    rule: why,
                }
            }
        };
        if let Some((i, rule)) =
            (self.deny.net.iter().enumerate()).find(|(_, r)| r.matches_name(&name, port))
        {
            return NetDecision {
                allowed: false,
                rule: rule_text("deny.net", i, rule),
            };
        }
        if let Some((i, rule)) =
            (self.allow.net.iter().enumerate()).find(|(_, r)| r.matches_name(&name, port))
        {
            return NetDecision {
                allowed: true,
                rule: rule_text("allow.net", i, rule),
            };
        }
        NetDecision {
            allowed: false,
            rule: format!("no allow.net rule matches {}", endpoint(&name, port)),
        }
    }

    /// May the program connect to this address on this port? Only IP and CIDR rules match
    /// addresses (and `*` in `deny.net`, which denies everything). IPv4-mapped IPv6 addresses
    /// are treated as the IPv4 address.
    pub fn ip_decision(&self, ip: IpAddr, port: u16) -> NetDecision {
        let ip = canonical_ip(ip);
        let denied = self.deny.net.iter().enumerate().find(|(_, r)| {
            r.matches_ip(ip, port) || (r.host == HostPattern::AnyName && r.port_matches(port))
        });
        if let Some((i, rule)) = denied {
            return NetDecision {
                allowed: false,
                rule: rule_text("deny.net", i, rule),
            };
        }
        if let Some((i, rule)) =
            (self.allow.net.iter().enumerate()).find(|(_, r)| r.matches_ip(ip, port))
        {
            return NetDecision {
                allowed: true,
                rule: rule_text("allow.net", i, rule),
            };
        }
        NetDecision {
            allowed: false,
            rule: format!(
                "no allow.net rule matches {}",
                endpoint(&ip.to_string(), port)
            ),
        }
    }

    /// Whether the policy deliberately opens this special-purpose address (loopback, private,
    /// link-local, ...): an allow rule names the address itself, or a CIDR that lies wholly inside
    /// `special` — the special-purpose range the address belongs to — and no deny rule refuses it.
    /// A broad rule such as `0.0.0.0/0` matches the address but does not open it: reaching
    /// 127.0.0.1 or 169.254.169.254 takes a rule written for that range. The proxy uses this to
    /// let a policy reach e.g. a test server on 127.0.0.1 while such addresses are blocked by
    /// default.
    pub fn ip_explicitly_allowed(&self, ip: IpAddr, port: u16, special: IpNet) -> bool {
        if !self.ip_decision(ip, port).allowed {
            return false;
        }
        let ip = canonical_ip(ip);
        let special = match canonical_net(special) {
            HostPattern::Cidr(net) => net,
            HostPattern::Ip(addr) => IpNet::from(addr),
            _ => special,
        };
        self.allow.net.iter().any(|rule| {
            rule.matches_ip(ip, port)
                && match &rule.host {
                    HostPattern::Ip(_) => true,
                    HostPattern::Cidr(net) => special.contains(net),
                    _ => false,
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> NetRule {
        NetRule::parse(text).unwrap()
    }

    #[test]
    fn parses_forms() {
        assert_eq!(
            p("Example.COM.").host,
            HostPattern::Name("example.com".into())
        );
        assert_eq!(
            p("*.example.com:443").host,
            HostPattern::Subdomains("example.com".into())
        );
        assert_eq!(p("*.example.com:443").port, Some(443));
        assert_eq!(p("*").host, HostPattern::AnyName);
        assert_eq!(p("*:80").port, Some(80));
        assert_eq!(
            p("1.2.3.4:80").host,
            HostPattern::Ip("1.2.3.4".parse().unwrap())
        );
        assert_eq!(p("[::1]:8080").port, Some(8080));
        assert_eq!(p("::1").host, HostPattern::Ip("::1".parse().unwrap()));
        assert_eq!(
            p("::ffff:10.0.0.1").host,
            HostPattern::Ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            p("10.0.0.0/8").host,
            HostPattern::Cidr("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(
            p("::ffff:10.0.0.0/104").host,
            HostPattern::Cidr("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(
            p("fd00::/8").host,
            HostPattern::Cidr("fd00::/8".parse().unwrap())
        );
        assert_eq!(p("[fd00::/8]:443").to_string(), "[fd00::/8]:443");
        assert_eq!(
            p("bücher.example").host,
            HostPattern::Name("xn--bcher-kva.example".into())
        );
    }

    #[test]
    fn refuses_bad_rules() {
        for bad in [
            "",
            "a b",
            "https://x.com",
            "*example.com",
            "a.*.com",
            "x.com:0",
            "x.com:99999",
            "x.com:http",
            "10.1.0.0/8",
            "10.0.0.0/33",
            "a..b",
            ".a",
            "127.1",
            "0x7f.1",
            "[::1",
            "x.com:",
            ":80",
            "*.",
            "foo/bar",
        ] {
            assert!(NetRule::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn wildcard_matches_label_by_label() {
        let r = p("*.example.com");
        assert!(r.matches_name("a.example.com", 1));
        assert!(r.matches_name("a.b.example.com", 1));
        assert!(!r.matches_name("example.com", 1));
        assert!(!r.matches_name("evilexample.com", 1));
        assert!(!r.matches_name("example.com.evil.net", 1));
    }

    #[test]
    fn cidr_and_mapped() {
        let r = p("10.0.0.0/8");
        assert!(r.matches_ip("10.1.2.3".parse().unwrap(), 1));
        assert!(r.matches_ip("::ffff:10.1.2.3".parse().unwrap(), 1));
        assert!(!r.matches_ip("11.0.0.1".parse().unwrap(), 1));
        let all6 = p("::/0");
        assert!(all6.matches_ip("1.2.3.4".parse().unwrap(), 1));
        assert!(p("::/0").host.covers(&p("10.0.0.0/8").host));
        assert!(!p("10.0.0.0/8").host.covers(&p("::/0").host));
    }
}
