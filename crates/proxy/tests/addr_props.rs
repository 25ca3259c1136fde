//! Property tests: every spelling of an IPv4 address parses to that address, and the
//! special-range classification agrees with the standard library where it has an opinion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bunker_proxy::addr::{parse_host, parse_ipv4_spelling, special_range, HostSpec};
use proptest::prelude::*;

/// One number in a radix inet_aton accepts.
fn spell(value: u32, radix: u8, upper: bool) -> String {
    match radix {
        8 => format!("0{value:o}"),
        16 if upper => format!("0X{value:X}"),
        16 => format!("0x{value:x}"),
        _ => value.to_string(),
    }
}

/// Spells `ip` with `parts` parts (1-4), each in its own radix.
fn spelling(ip: Ipv4Addr, parts: usize, radixes: [u8; 4], upper: bool) -> String {
    let o = ip.octets();
    let n = u32::from(ip);
    let fields: Vec<u32> = match parts {
        1 => vec![n],
        2 => vec![o[0].into(), n & 0x00ff_ffff],
        3 => vec![o[0].into(), o[1].into(), n & 0xffff],
        _ => o.iter().map(|&b| b.into()).collect(),
    };
    fields
        .iter()
        .zip(radixes)
        .map(|(&v, r)| spell(v, r, upper))
        .collect::<Vec<_>>()
        .join(".")
}

fn radix() -> impl Strategy<Value = u8> {
    prop_oneof![Just(8u8), Just(10u8), Just(16u8)]
}

proptest! {
    #[test]
    fn every_spelling_parses_to_the_address(
        n in any::<u32>(),
        parts in 1usize..=4,
        radixes in [radix(), radix(), radix(), radix()],
        upper in any::<bool>(),
        trailing_dot in any::<bool>(),
    ) {
        let ip = Ipv4Addr::from(n);
        let mut s = spelling(ip, parts, radixes, upper);
        if trailing_dot {
            s.push('.');
        }
        prop_assert_eq!(parse_ipv4_spelling(&s), Some(ip), "{}", s);
        prop_assert_eq!(parse_host(&s), Ok(HostSpec::Ip(IpAddr::V4(ip))), "{}", s);
        let mapped = format!("[{}]", ip.to_ipv6_mapped());
        prop_assert_eq!(parse_host(&mapped), Ok(HostSpec::Ip(IpAddr::V4(ip))));
    }

    #[test]
    fn out_of_range_parts_are_refused(lead in 256u32..100_000, n in any::<u8>()) {
        let s = format!("{lead}.{n}.{n}.{n}");
        prop_assert_eq!(parse_ipv4_spelling(&s), None);
        prop_assert!(parse_host(&s).is_err());
    }

    #[test]
    fn the_parser_never_panics_and_names_are_clean(s in "[0-9a-zA-Z.\\-_:\\[\\]%x]{0,40}") {
        if let Ok(HostSpec::Name(name)) = parse_host(&s) {
            prop_assert!(!name.is_empty() && !name.ends_with('.'));
            prop_assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'));
            // A name never ends in a number: those are addresses or nothing.
            let last = name.rsplit('.').next().unwrap();
            prop_assert!(!last.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn classification_agrees_with_std_v4(n in any::<u32>()) {
        let ip = Ipv4Addr::from(n);
        let std_special = ip.is_private() || ip.is_loopback() || ip.is_link_local() || ip.is_multicast()
            || ip.is_broadcast() || ip.is_documentation() || ip.is_unspecified() || ip.octets()[0] == 0
            || (ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64) || ip.octets()[0] >= 240;
        if std_special {
            prop_assert!(special_range(IpAddr::V4(ip)).is_some(), "{}", ip);
        }
        // The mapped form is judged exactly like the address.
        prop_assert_eq!(special_range(IpAddr::V6(ip.to_ipv6_mapped())), special_range(IpAddr::V4(ip)));
        // The IPv4-compatible and NAT64 forms are always special.
        let compat = Ipv6Addr::from(u128::from(n));
        if n > 1 {
            prop_assert!(special_range(IpAddr::V6(compat)).is_some(), "{}", compat);
        }
        let nat64 = Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(n));
        prop_assert!(special_range(IpAddr::V6(nat64)).is_some(), "{}", nat64);
    }

    #[test]
    fn classification_agrees_with_std_v6(n in any::<u128>()) {
        let ip = Ipv6Addr::from(n);
        let seg0 = ip.segments()[0];
        let std_special = ip.is_loopback() || ip.is_unspecified() || ip.is_multicast()
            || (seg0 & 0xfe00) == 0xfc00 || (seg0 & 0xffc0) == 0xfe80;
        if std_special {
            prop_assert!(special_range(IpAddr::V6(ip)).is_some(), "{}", ip);
        }
    }
}
