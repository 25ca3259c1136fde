//! TEMPORARY stand-in for the policy crate's decision methods until they land; inherent methods
//! on `Policy` take precedence over this trait, so it is simply deleted then.
use std::net::IpAddr;

use bunker_policy::net::{HostPattern, NetRule};
use bunker_policy::Policy;

pub struct InterimDecision {
    pub allowed: bool,
    pub rule: String,
}

pub trait InterimPolicy {
    fn net_decision(&self, host: &str, port: u16) -> InterimDecision;
    fn ip_decision(&self, ip: IpAddr, port: u16) -> InterimDecision;
    fn ip_explicitly_allowed(&self, ip: IpAddr, port: u16) -> bool;
}

fn name_matches(rule: &NetRule, host: &str, port: u16) -> bool {
    rule.port.is_none_or(|p| p == port)
        && match &rule.host {
            HostPattern::Name(n) => n == host,
            HostPattern::Subdomains(s) => {
                host.len() > s.len() + 1
                    && host.ends_with(s.as_str())
                    && host.as_bytes()[host.len() - s.len() - 1] == b'.'
            }
            HostPattern::AnyName => true,
            _ => false,
        }
}

fn ip_matches(rule: &NetRule, ip: IpAddr, port: u16) -> bool {
    rule.port.is_none_or(|p| p == port)
        && match &rule.host {
            HostPattern::Ip(a) => *a == ip,
            HostPattern::Cidr(n) => n.contains(&ip),
            _ => false,
        }
}

fn decide(p: &Policy, what: &str, m: impl Fn(&NetRule) -> bool) -> InterimDecision {
    if let Some((i, r)) = p.deny.net.iter().enumerate().find(|(_, r)| m(r)) {
        return InterimDecision {
            allowed: false,
            rule: format!("deny.net[{i}] ({})", r.text),
        };
    }
    if let Some((i, r)) = p.allow.net.iter().enumerate().find(|(_, r)| m(r)) {
        return InterimDecision {
            allowed: true,
            rule: format!("allow.net[{i}] ({})", r.text),
        };
    }
    InterimDecision {
        allowed: false,
        rule: format!("allow.net (no rule matches {what})"),
    }
}

impl InterimPolicy for Policy {
    fn net_decision(&self, host: &str, port: u16) -> InterimDecision {
        decide(self, &format!("{host}:{port}"), |r| {
            name_matches(r, host, port)
        })
    }
    fn ip_decision(&self, ip: IpAddr, port: u16) -> InterimDecision {
        decide(self, &format!("{ip}:{port}"), |r| ip_matches(r, ip, port))
    }
    fn ip_explicitly_allowed(&self, ip: IpAddr, port: u16) -> bool {
        self.allow.net.iter().any(|r| ip_matches(r, ip, port))
    }
}
