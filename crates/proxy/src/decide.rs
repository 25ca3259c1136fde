//! The egress decision: policy rules for the name or address, then resolution (once), then a
//! check of every resolved address. The caller connects only to the addresses returned here, so
//! a second DNS answer (rebinding) can never be used.

use std::net::IpAddr;
use std::time::Duration;

use bunker_policy::net::HostPattern;
use bunker_policy::Policy;

use crate::addr::{canonical, special_range, HostSpec};
#[allow(unused_imports)]
use crate::interim::InterimPolicy;
use crate::record::Shared;

/// How long a DNS lookup may take when `http.request_timeout` does not say.
const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The outcome of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Connect to one of `addrs` (each checked), in order.
    Allow { rule: String, addrs: Vec<IpAddr> },
    /// Refused by `rule`; `address` is the resolved address that was refused, if any.
    Deny { rule: String, address: Option<IpAddr> },
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
                return Verdict::Deny { rule, address: Some(ip) };
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
                if let Some(rule) = denied_by_ip_rule(policy, ip, port) {
                    return Verdict::Deny { rule, address: Some(ip) };
                }
                if let Some(rule) = private_denial(policy, ip, port) {
                    return Verdict::Deny { rule, address: Some(ip) };
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
    let range = special_range(ip)?;
    if policy.ip_explicitly_allowed(ip, port) {
        return None;
    }
    Some(format!(
        "http.block_private_ips ({ip} is {range}; allow it by IP or CIDR to permit)"
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
    let limit = shared.policy.http.request_timeout.unwrap_or(DEFAULT_RESOLVE_TIMEOUT);
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
