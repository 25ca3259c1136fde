//! The egress decision: policy rules for the name or address, then resolution (once), then a
//! check of every resolved address. The caller connects only to the addresses returned here, so
//! a second DNS answer (rebinding) can never be used.

use std::net::IpAddr;
use std::time::Duration;

use bunker_policy::net::HostPattern;
use bunker_policy::Policy;

use crate::addr::{canonical, special_net, HostSpec};
use crate::record::Shared;

/// How long a DNS lookup may take when `http.request_timeout` does not say.
const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The outcome of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Connect to one of `addrs` (each checked), in order.
    Allow { rule: String, addrs: Vec<IpAddr> },
    /// Refused by `rule`; `address` is the resolved address that was refused, if any.
    Deny {
        rule: String,
        address: Option<IpAddr>,
    },
    /// Allowed by `rule`, but the name has no address.
    Unresolved { rule: String, error: String },
}

/// Decides whether `host:port` may be reached.
pub(crate) async fn decide(shared: &Shared, host: &HostSpec, port: u16) -> Verdict {
    let policy = &shared.policy;
    match host {
        HostSpec::Ip(ip) => {
            let ip = canonical(*ip);
            let decision = policy.ip_decision(ip, port);
            if !decision.allowed {
                return Verdict::Deny {
                    rule: decision.rule,
                    address: Some(ip),
                };
            }
            if let Some(rule) = private_denial(policy, ip, port) {
                return Verdict::Deny {
                    rule,
                    address: Some(ip),
                };
            }
            Verdict::Allow {
                rule: decision.rule,
                addrs: vec![ip],
            }
        }
        HostSpec::Name(name) => {
            let decision = policy.net_decision(name, port);
            if !decision.allowed {
                return Verdict::Deny {
                    rule: decision.rule,
                    address: None,
                };
            }
            let addrs = match resolve(shared, name, port).await {
                Ok(addrs) => addrs,
                Err(error) => {
                    return Verdict::Unresolved {
                        rule: decision.rule,
                        error,
                    }
                }
            };
            // Every address is checked, not only the one that will be used: a name that mixes
            // a public and a private address is refused as a whole.
            for &ip in &addrs {
                let denied = denied_by_ip_rule(policy, ip, port)
                    .or_else(|| private_denial(policy, ip, port));
                if let Some(rule) = denied {
                    return Verdict::Deny {
                        rule,
                        address: Some(ip),
                    };
                }
            }
            Verdict::Allow {
                rule: decision.rule,
                addrs,
            }
        }
    }
}

/// The rule refusing a special-purpose address, unless the policy allows it by IP or CIDR.
fn private_denial(policy: &Policy, ip: IpAddr, port: u16) -> Option<String> {
    if !policy.http.block_private_ips {
        return None;
    }
    let (net, range) = special_net(ip)?;
    if policy.ip_explicitly_allowed(ip, port, net) {
        return None;
    }
    Some(format!(
        "http.block_private_ips ({ip} is {range}; allow it by IP, or by a CIDR inside {net}, to permit)"
    ))
}

/// The `deny.net` IP or CIDR rule matching a resolved address, if any: deny rules by address
/// apply to names that resolve into them too.
fn denied_by_ip_rule(policy: &Policy, ip: IpAddr, port: u16) -> Option<String> {
    policy.deny.net.iter().enumerate().find_map(|(i, rule)| {
        let port_matches = rule.port.is_none_or(|p| p == port);
        let addr_matches = match &rule.host {
            HostPattern::Ip(rule_ip) => canonical(*rule_ip) == ip,
            HostPattern::Cidr(net) => net.contains(&ip),
            _ => false,
        };
        (port_matches && addr_matches).then(|| format!("deny.net[{i}] ({})", rule.text))
    })
}

/// Resolves a name once: pinned addresses first, then the system resolver. Addresses are
/// canonical (IPv4-mapped IPv6 becomes IPv4) and unique, in the resolver's order.
async fn resolve(shared: &Shared, name: &str, port: u16) -> Result<Vec<IpAddr>, String> {
    let pinned: Vec<IpAddr> = shared
        .pins
        .iter()
        .filter(|(pin, _)| pin == name)
        .map(|(_, ip)| canonical(*ip))
        .collect();
    if !pinned.is_empty() {
        return Ok(pinned);
    }
    let limit = shared
        .policy
        .http
        .request_timeout
        .unwrap_or(DEFAULT_RESOLVE_TIMEOUT);
    let found = tokio::time::timeout(limit, tokio::net::lookup_host((name, port)))
        .await
        .map_err(|_| format!("resolving {name} timed out after {limit:?}"))?
        .map_err(|e| format!("resolving {name}: {e}"))?;
    let mut addrs = Vec::new();
    for sa in found {
        let ip = canonical(sa.ip());
        if !addrs.contains(&ip) {
            addrs.push(ip);
        }
    }
    if addrs.is_empty() {
        return Err(format!("resolving {name}: no address"));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::addr::parse_host;

    fn policy(allow: &[&str], deny: &[&str], block_private_ips: bool) -> Policy {
        let doc = serde_json::json!({
            "allow": {"net": allow},
            "deny": {"net": deny},
            "http": {"block_private_ips": block_private_ips},
        });
        bunker_policy::load::load_str(&doc.to_string(), std::path::Path::new("/"), "test").unwrap()
    }

    fn shared(policy: Policy, pins: &[(&str, &str)]) -> Shared {
        let pins = pins
            .iter()
            .map(|(n, ip)| (n.to_string(), ip.parse().unwrap()))
            .collect();
        Shared::new(
            Arc::new(policy),
            pins,
            Arc::new(Mutex::new(Vec::new())),
            usize::MAX,
            None,
        )
    }

    fn run(shared: &Shared, host: &str, port: u16) -> Verdict {
        let host = parse_host(host).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(decide(shared, &host, port))
    }

    const SPECIAL: &[&str] = &[
        "169.254.169.254",
        "fd00:ec2::254",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.0.1",
        "100.64.0.1",
        "0.0.0.0",
        "fc00::1",
        "64:ff9b::7f00:1",
        "::127.0.0.1",
        "::ffff:10.0.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "127.0.0.1",
        "fe80::1",
    ];

    #[test]
    fn special_addresses_behind_an_allowed_name_are_denied() {
        for ip in SPECIAL {
            let s = shared(policy(&["inside.test"], &[], true), &[("inside.test", ip)]);
            match run(&s, "inside.test", 80) {
                Verdict::Deny { rule, address } => {
                    assert!(rule.starts_with("http.block_private_ips"), "{ip}: {rule}");
                    assert_eq!(address, Some(canonical(ip.parse().unwrap())));
                }
                other => panic!("{ip}: {other:?}"),
            }
        }
    }

    #[test]
    fn special_addresses_need_an_ip_rule() {
        for ip in SPECIAL {
            let target = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_string()
            };
            let s = shared(policy(&["*"], &[], true), &[]);
            assert!(matches!(run(&s, &target, 80), Verdict::Deny { .. }), "{ip}");
            let exact = if ip.contains(':') && !ip.starts_with("::ffff:") {
                format!("[{ip}]:80")
            } else {
                format!("{}:80", canonical(ip.parse().unwrap()))
            };
            let s = shared(policy(&[&exact], &[], true), &[]);
            assert!(
                matches!(run(&s, &target, 80), Verdict::Allow { .. }),
                "{ip} allowed by {exact}"
            );
            // The same address on another port is still refused.
            assert!(
                matches!(run(&s, &target, 81), Verdict::Deny { .. }),
                "{ip}:81"
            );
        }
    }

    #[test]
    fn broad_cidrs_do_not_open_special_addresses() {
        // `0.0.0.0/0` and `::/0` match every address, but reaching loopback, private ranges or
        // the metadata address takes a rule written for that range.
        for ip in SPECIAL {
            let target = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_string()
            };
            let s = shared(policy(&["0.0.0.0/0", "::/0"], &[], true), &[]);
            match run(&s, &target, 80) {
                Verdict::Deny { rule, .. } => {
                    assert!(rule.starts_with("http.block_private_ips"), "{ip}: {rule}")
                }
                other => panic!("{ip}: {other:?}"),
            }
        }
    }

    #[test]
    fn block_private_ips_off_lets_allowed_names_reach_private_addresses() {
        let s = shared(
            policy(&["inside.test"], &[], false),
            &[("inside.test", "10.0.0.1")],
        );
        assert_eq!(
            run(&s, "inside.test", 80),
            Verdict::Allow {
                rule: "allow.net[0] (inside.test)".into(),
                addrs: vec!["10.0.0.1".parse().unwrap()]
            }
        );
    }

    #[test]
    fn deny_cidr_applies_to_resolved_addresses() {
        let s = shared(
            policy(
                &["app.test"],
                &["203.0.113.0/24", "198.51.100.7:443"],
                false,
            ),
            &[("app.test", "203.0.113.9"), ("other.test", "198.51.100.7")],
        );
        assert!(
            matches!(run(&s, "app.test", 80), Verdict::Deny { rule, .. } if rule == "deny.net[0] (203.0.113.0/24)")
        );
        let s2 = shared(
            policy(&["other.test"], &["198.51.100.7:443"], false),
            &[("other.test", "198.51.100.7")],
        );
        assert!(matches!(run(&s2, "other.test", 443), Verdict::Deny { .. }));
        assert!(matches!(run(&s2, "other.test", 80), Verdict::Allow { .. }));
    }

    #[test]
    fn every_resolved_address_is_checked() {
        let s = shared(
            policy(&["mixed.test"], &[], true),
            &[
                ("mixed.test", "93.184.215.14"),
                ("mixed.test", "::ffff:127.0.0.1"),
            ],
        );
        assert!(
            matches!(run(&s, "mixed.test", 80), Verdict::Deny { address: Some(a), .. } if a.to_string() == "127.0.0.1")
        );
        let s = shared(
            policy(&["public.test"], &[], true),
            &[("public.test", "93.184.215.14")],
        );
        assert!(matches!(run(&s, "public.test", 80), Verdict::Allow { .. }));
    }
}
