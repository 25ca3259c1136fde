//! Host spellings and special-purpose addresses.
//!
//! A sandboxed program names its target in a URL, a CONNECT line or a SOCKS5 request. Resolvers
//! and URL parsers accept many spellings of one IPv4 address (`2130706433`, `0177.0.0.1`,
//! `0x7f.1`, `127.1`, `127.0.0.1.`), and IPv6 can carry an IPv4 address inside it
//! (`::ffff:127.0.0.1`). Every spelling is reduced here to one `IpAddr` before any rule is
//! consulted, so a private address cannot hide behind an unusual spelling.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A parsed host: an address, or a normalized name (lower-case ASCII, no trailing dot).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostSpec {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostSpec::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            HostSpec::Ip(ip) => write!(f, "{ip}"),
            HostSpec::Name(name) => f.write_str(name),
        }
    }
}

/// Why a host spelling was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("empty host")]
    Empty,
    #[error("host {0:?} ends in a number but is not a valid IPv4 address")]
    BadIpv4(String),
    #[error("host {0:?} is not a valid IPv6 address")]
    BadIpv6(String),
    #[error("host {0:?} contains characters not allowed in a host name")]
    BadName(String),
}

/// Longest host name DNS allows.
const MAX_NAME_LEN: usize = 253;

/// Parses a host as it appears in a URL authority, a CONNECT target or a SOCKS5 domain field:
/// `[v6]`, bare IPv6, every IPv4 spelling that `inet_aton` and the WHATWG URL parser accept, or a
/// DNS name (IDNs are converted to punycode). IPv4-mapped IPv6 addresses become IPv4.
pub fn parse_host(raw: &str) -> Result<HostSpec, HostError> {
    if raw.is_empty() {
        return Err(HostError::Empty);
    }
    if let Some(inner) = raw.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| HostError::BadIpv6(raw.to_string()))?;
        // Zone ids (`%25eth0`) are refused: they only make sense for link-local addresses.
        let ip: Ipv6Addr = inner
            .parse()
            .map_err(|_| HostError::BadIpv6(raw.to_string()))?;
        return Ok(HostSpec::Ip(canonical(IpAddr::V6(ip))));
    }
    if raw.contains(':') {
        let ip: Ipv6Addr = raw
            .parse()
            .map_err(|_| HostError::BadIpv6(raw.to_string()))?;
        return Ok(HostSpec::Ip(canonical(IpAddr::V6(ip))));
    }
    // One trailing dot is the DNS root ("example.com."); it does not change the host.
    let host = raw.strip_suffix('.').unwrap_or(raw);
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    // IDNA mapping comes first: full-width digits and dots (`０ｘ７ｆ．１`) map to ASCII ones.
    let ascii = to_ascii(host)?;
    let ascii = ascii.strip_suffix('.').unwrap_or(&ascii);
    // WHATWG: a host whose last label is a number must be an IPv4 address, or nothing. This
    // stops `1.2.3.4.5` or `0x7f.1.` from reaching a resolver that might read it its own way.
    if ends_in_number(ascii) {
        return parse_ipv4_spelling(ascii)
            .map(|ip| HostSpec::Ip(IpAddr::V4(ip)))
            .ok_or_else(|| HostError::BadIpv4(raw.to_string()));
    }
    check_name(ascii).map(HostSpec::Name)
}

/// Lower-cases an ASCII name or converts an IDN to punycode (IDNA mapping included).
fn to_ascii(host: &str) -> Result<String, HostError> {
    if host.is_ascii() {
        Ok(host.to_ascii_lowercase())
    } else {
        idna::domain_to_ascii(host).map_err(|_| HostError::BadName(host.to_string()))
    }
}

/// Checks the labels of a lower-case ASCII name.
fn check_name(ascii: &str) -> Result<String, HostError> {
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if ascii.is_empty() || ascii.len() > MAX_NAME_LEN || !ascii.split('.').all(valid_label) {
        return Err(HostError::BadName(ascii.to_string()));
    }
    Ok(ascii.to_string())
}

/// Whether the last label looks like a number (decimal, or `0x` hex), the WHATWG test for
/// "this host must be parsed as IPv4".
fn ends_in_number(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or(host);
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    match last.strip_prefix("0x").or_else(|| last.strip_prefix("0X")) {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

/// Parses every IPv4 spelling `inet_aton` accepts: one to four parts, each decimal, octal
/// (leading `0`) or hex (`0x`); the last part fills the remaining bytes. One trailing dot is
/// ignored. Returns `None` for anything else (including out-of-range parts).
pub fn parse_ipv4_spelling(s: &str) -> Option<Ipv4Addr> {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() {
        return None;
    }
    let mut parts = [0u64; 4];
    let mut count = 0;
    for part in s.split('.') {
        if count == 4 {
            return None;
        }
        parts[count] = parse_ipv4_part(part)?;
        count += 1;
    }
    let (last, leading) = (parts[count - 1], &parts[..count - 1]);
    if leading.iter().any(|&p| p > 255) {
        return None;
    }
    // The last part covers the bytes the leading parts did not: 4, 3, 2 or 1 of them.
    let last_bits = 8 * (5 - count as u32);
    if last >= 1u64 << last_bits {
        return None;
    }
    let mut value = last;
    for (i, &p) in leading.iter().enumerate() {
        value |= p << (24 - 8 * i as u32);
    }
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

/// One part of an IPv4 spelling. Values are capped well above 2^32 so that long digit strings
/// cannot overflow.
fn parse_ipv4_part(part: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        // "0x" alone is 0 for inet_aton and WHATWG; an empty part ("1..2") is invalid.
        return if radix == 16 { Some(0) } else { None };
    }
    let mut value: u64 = 0;
    for c in digits.chars() {
        let d = u64::from(c.to_digit(radix)?);
        value = value.checked_mul(u64::from(radix))?.checked_add(d)?;
        if value > u64::from(u32::MAX) {
            return None;
        }
    }
    Some(value)
}

/// The address a connection would actually reach: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is the
/// IPv4 address itself.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The special-purpose range an address belongs to, or `None` for an ordinary global address.
/// These are refused unless the policy allows the address by IP or CIDR.
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    special_net(ip).map(|(_, name)| name)
}

/// The special-purpose range an address belongs to, as a network and a name.
pub fn special_net(ip: IpAddr) -> Option<(IpNet, &'static str)> {
    match canonical(ip) {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn special_v4(ip: Ipv4Addr) -> Option<(IpNet, &'static str)> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([169, 254, 169, 254], 32, "cloud metadata"),
        ([255, 255, 255, 255], 32, "broadcast"),
        ([0, 0, 0, 0], 8, "\"this network\" 0.0.0.0/8"),
        ([10, 0, 0, 0], 8, "private 10.0.0.0/8"),
        ([100, 64, 0, 0], 10, "shared (CGNAT) 100.64.0.0/10"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([172, 16, 0, 0], 12, "private 172.16.0.0/12"),
        ([192, 0, 0, 0], 24, "IETF protocol assignments 192.0.0.0/24"),
        ([192, 0, 2, 0], 24, "documentation 192.0.2.0/24"),
        ([192, 88, 99, 0], 24, "6to4 relay 192.88.99.0/24"),
        ([192, 168, 0, 0], 16, "private 192.168.0.0/16"),
        ([198, 18, 0, 0], 15, "benchmarking 198.18.0.0/15"),
        ([198, 51, 100, 0], 24, "documentation 198.51.100.0/24"),
        ([203, 0, 113, 0], 24, "documentation 203.0.113.0/24"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved 240.0.0.0/4"),
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .and_then(|(net, prefix, name)| {
            let net = Ipv4Net::new(Ipv4Addr::from(*net), u8::try_from(*prefix).ok()?).ok()?;
            Some((IpNet::V4(net), *name))
        })
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

fn special_v6(ip: Ipv6Addr) -> Option<(IpNet, &'static str)> {
    if ip.is_unspecified() {
        return Some((IpNet::from(IpAddr::V6(ip)), "unspecified ::"));
    }
    if ip.is_loopback() {
        return Some((IpNet::from(IpAddr::V6(ip)), "loopback ::1"));
    }
    const RANGES: &[([u16; 8], u32, &str)] = &[
        ([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128, "cloud metadata"),
        // ::a.b.c.d: deprecated, and some stacks route it to the IPv4 address.
        ([0; 8], 96, "IPv4-compatible IPv6 ::/96"),
        ([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, "NAT64 64:ff9b::/96"),
        (
            [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
            48,
            "local NAT64 64:ff9b:1::/48",
        ),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only 100::/64"),
        (
            [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
            32,
            "documentation 2001:db8::/32",
        ),
        (
            [0x2001, 0, 0, 0, 0, 0, 0, 0],
            23,
            "IETF protocol assignments 2001::/23",
        ),
        ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4 2002::/16"),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation 3fff::/20"),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique local fc00::/7"),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local fe80::/10"),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local fec0::/10"),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast ff00::/8"),
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
        .and_then(|(net, prefix, name)| {
            let net = Ipv6Net::new(Ipv6Addr::from(*net), u8::try_from(*prefix).ok()?).ok()?;
            Some((IpNet::V6(net), *name))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }

    #[test]
    fn spellings_of_loopback() {
        for s in [
            "127.0.0.1",
            "127.0.0.1.",
            "2130706433",
            "0177.0.0.1",
            "0x7f.0.0.1",
            "0x7f000001",
            "0X7F000001",
            "0x7f.1",
            "127.1",
            "127.0.1",
            "017700000001",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "::ffff:127.0.0.1",
            "\u{ff10}\u{ff58}\u{ff17}\u{ff46}\u{ff0e}\u{ff11}",
            "127\u{3002}0\u{3002}0\u{3002}1",
        ] {
            assert_eq!(parse_host(s), Ok(HostSpec::Ip(v4("127.0.0.1"))), "{s}");
        }
    }

    #[test]
    fn numeric_last_label_must_be_ipv4() {
        for s in [
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.256",
            "0x1.0x100.1.1",
            "example.123",
            "08.1.1.1",
            "1..1",
            "4294967296",
        ] {
            assert!(matches!(parse_host(s), Err(HostError::BadIpv4(_))), "{s}");
        }
        assert_eq!(parse_host("0x"), Ok(HostSpec::Ip(v4("0.0.0.0"))));
        assert_eq!(
            parse_host("4294967295"),
            Ok(HostSpec::Ip(v4("255.255.255.255")))
        );
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(
            parse_host("Example.COM."),
            Ok(HostSpec::Name("example.com".into()))
        );
        assert_eq!(
            parse_host("1x.example"),
            Ok(HostSpec::Name("1x.example".into()))
        );
        assert_eq!(
            parse_host("bücher.example"),
            Ok(HostSpec::Name("xn--bcher-kva.example".into()))
        );
        for s in ["a..b", "a b", "a%2eb", "evil.com/x", "a@b", "", ".", ".."] {
            assert!(parse_host(s).is_err(), "{s}");
        }
    }

    #[test]
    fn ipv6_forms() {
        assert_eq!(
            parse_host("[::1]"),
            Ok(HostSpec::Ip("::1".parse().unwrap()))
        );
        assert!(parse_host("[fe80::1%25eth0]").is_err());
        assert!(parse_host("[::1").is_err());
        assert!(parse_host("[127.0.0.1]").is_err());
    }

    #[test]
    fn special_ranges() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "64:ff9b::7f00:1",
            "64:ff9b::808:808",
            "::7f00:1",
            "::808:808",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "2002:7f00:1::",
        ] {
            let ip: IpAddr = s.parse().unwrap();
            assert!(special_range(ip).is_some(), "{s} should be special");
        }
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(special_range(ip), None, "{s} should be global");
        }
        assert_eq!(special_range(v4("169.254.169.254")), Some("cloud metadata"));
        assert_eq!(
            special_range("fd00:ec2::254".parse().unwrap()),
            Some("cloud metadata")
        );
    }

    #[test]
    fn canonical_unwraps_mapped_only() {
        assert_eq!(canonical("::ffff:1.2.3.4".parse().unwrap()), v4("1.2.3.4"));
        assert_eq!(
            canonical("::1.2.3.4".parse().unwrap()),
            "::1.2.3.4".parse::<IpAddr>().unwrap()
        );
    }
}
