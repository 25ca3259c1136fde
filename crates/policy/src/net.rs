//! Network rules: host patterns (matched label by label), IP literals and CIDRs, with ports.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

/// One entry of `allow.net` or `deny.net`, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// `*`: every host name (not IP literals: those need an IP rule).
    AnyName,
    /// One address.
    Ip(IpAddr),
    /// A CIDR block.
    Cidr(IpNet),
}
