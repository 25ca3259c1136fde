//! The parts of an HTTP proxy request bunker interprets itself: the request target (absolute-form
//! for forwarded requests, authority-form for CONNECT), its agreement with the `Host` header, and
//! which headers must not be forwarded. Pure functions over bytes, so they can be fuzzed.

use crate::addr::{parse_host, HostError, HostSpec};

/// A target host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub host: HostSpec,
    pub port: u16,
}

/// Where a forwarded `http://` request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardTarget {
    pub authority: Authority,
    /// Origin-form target for the upstream server: path and query, never empty.
    pub path_and_query: String,
}

/// Why a request target was refused (the proxy answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("request target is not valid UTF-8")]
    NotUtf8,
    #[error("only http:// URLs can be forwarded; use CONNECT for {0}://")]
    Scheme(String),
    #[error("request target {0:?} is not an absolute http:// URL")]
    NotAbsolute(String),
    #[error("user information in the URL is not allowed")]
    UserInfo,
    #[error("port in {0:?} is missing or invalid")]
    Port(String),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("Host header {header:?} does not match the request target {target}")]
    HostMismatch { header: String, target: String },
    #[error("more than one Host header")]
    DuplicateHost,
}

/// Parses `host[:port]` (`[v6]:port` for IPv6). Without a port, `default_port` is used; with
/// none, the port is required.
pub fn parse_authority(raw: &str, default_port: Option<u16>) -> Result<Authority, TargetError> {
    if raw.contains('@') {
        return Err(TargetError::UserInfo);
    }
    let (host, port) = if raw.starts_with('[') {
        match raw.find(']') {
            Some(end) => {
                let rest = &raw[end + 1..];
                let port = match rest.strip_prefix(':') {
                    Some(p) => Some(p),
                    None if rest.is_empty() => None,
                    None => return Err(TargetError::Port(raw.to_string())),
                };
                (&raw[..=end], port)
            }
            None => return Err(HostError::BadIpv6(raw.to_string()).into()),
        }
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        }
    };
    let port = match port {
        Some(p) => parse_port(p).ok_or_else(|| TargetError::Port(raw.to_string()))?,
        None => default_port.ok_or_else(|| TargetError::Port(raw.to_string()))?,
    };
    Ok(Authority {
        host: parse_host(host)?,
        port,
    })
}

/// A decimal port 1-65535 (no sign, no spaces).
fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok().filter(|&port| port != 0)
}

/// The target of a CONNECT request: `host:port`, port required.
pub fn connect_target(target: &[u8]) -> Result<Authority, TargetError> {
    let target = std::str::from_utf8(target).map_err(|_| TargetError::NotUtf8)?;
    parse_authority(target, None)
}

/// The target of a forwarded request: an absolute `http://` URL. `host_headers` are the values
/// of every `Host` header; when present, the one header must name the same host and port.
pub fn forward_target(target: &[u8], host_headers: &[&[u8]]) -> Result<ForwardTarget, TargetError> {
    let target = std::str::from_utf8(target).map_err(|_| TargetError::NotUtf8)?;
    let (scheme, rest) = target
        .split_once("://")
        .ok_or_else(|| TargetError::NotAbsolute(target.to_string()))?;
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(TargetError::Scheme(scheme.to_ascii_lowercase()));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = parse_authority(authority, Some(80))?;
    // The fragment never goes to the server.
    let tail = tail.split('#').next().unwrap_or("");
    let path_and_query = if tail.starts_with('/') {
        tail.to_string()
    } else {
        format!("/{tail}")
    };
    match host_headers {
        [] => {}
        [header] => {
            let text = std::str::from_utf8(header).map_err(|_| TargetError::NotUtf8)?;
            let from_header =
                parse_authority(text.trim(), Some(80)).map_err(|_| TargetError::HostMismatch {
                    header: text.to_string(),
                    target: format!("{}:{}", authority.host, authority.port),
                })?;
            if from_header != authority {
                return Err(TargetError::HostMismatch {
                    header: text.to_string(),
                    target: format!("{}:{}", authority.host, authority.port),
                });
            }
        }
        _ => return Err(TargetError::DuplicateHost),
    }
    Ok(ForwardTarget {
        authority,
        path_and_query,
    })
}

/// Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1), besides every
/// `Proxy-*` header and the names listed in `Connection`.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a header must be dropped when forwarding. `connection_tokens` are the lower-cased
/// names listed in the message's `Connection` headers.
pub fn is_hop_by_hop(name: &str, connection_tokens: &[String]) -> bool {
    let lower = name.to_ascii_lowercase();
    HOP_BY_HOP.contains(&lower.as_str())
        || lower.starts_with("proxy-")
        || connection_tokens.contains(&lower)
}

/// The header names listed in `Connection` header values, lower-cased.
pub fn connection_tokens<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    values
        .into_iter()
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ip(s: &str) -> HostSpec {
        HostSpec::Ip(s.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn forward_targets() {
        let t = forward_target(b"http://Example.com/a?b#c", &[b"example.com"]).unwrap();
        assert_eq!(t.authority.host, HostSpec::Name("example.com".into()));
        assert_eq!(t.authority.port, 80);
        assert_eq!(t.path_and_query, "/a?b");
        let t = forward_target(b"HTTP://example.com:8080", &[]).unwrap();
        assert_eq!((t.authority.port, t.path_and_query.as_str()), (8080, "/"));
        let t = forward_target(b"http://example.com?q", &[]).unwrap();
        assert_eq!(t.path_and_query, "/?q");
        let t = forward_target(b"http://2130706433:81/", &[b"127.0.0.1:81"]).unwrap();
        assert_eq!(t.authority.host, ip("127.0.0.1"));
        let t = forward_target(b"http://[::ffff:127.0.0.1]/", &[]).unwrap();
        assert_eq!(t.authority.host, ip("127.0.0.1"));
    }

    #[test]
    fn forward_refusals() {
        assert_eq!(
            forward_target(b"https://a.com/", &[]),
            Err(TargetError::Scheme("https".into()))
        );
        assert!(matches!(
            forward_target(b"/path", &[]),
            Err(TargetError::NotAbsolute(_))
        ));
        assert_eq!(
            forward_target(b"http://u:p@a.com/", &[]),
            Err(TargetError::UserInfo)
        );
        assert!(matches!(
            forward_target(b"http://a.com/", &[b"b.com"]),
            Err(TargetError::HostMismatch { .. })
        ));
        assert!(matches!(
            forward_target(b"http://a.com/", &[b"a.com:81"]),
            Err(TargetError::HostMismatch { .. })
        ));
        assert!(forward_target(b"http://a.com/", &[b"A.com:80"]).is_ok());
        assert_eq!(
            forward_target(b"http://a.com/", &[b"a.com", b"a.com"]),
            Err(TargetError::DuplicateHost)
        );
        assert!(matches!(
            forward_target(b"http://a.com:0/", &[]),
            Err(TargetError::Port(_))
        ));
        assert!(matches!(
            forward_target(b"http://a.com:+80/", &[]),
            Err(TargetError::Port(_))
        ));
        assert!(matches!(
            forward_target(b"http://a.com:65536/", &[]),
            Err(TargetError::Port(_))
        ));
        assert!(matches!(
            forward_target(b"http://1.2.3.4.5/", &[]),
            Err(TargetError::Host(_))
        ));
        assert_eq!(
            forward_target(b"http://\xff/", &[]),
            Err(TargetError::NotUtf8)
        );
    }

    #[test]
    fn connect_targets() {
        assert_eq!(connect_target(b"a.com:443").unwrap().port, 443);
        assert!(matches!(
            connect_target(b"a.com"),
            Err(TargetError::Port(_))
        ));
        assert_eq!(connect_target(b"[::1]:443").unwrap().host, ip("::1"));
        assert_eq!(connect_target(b"0x7f.1:443").unwrap().host, ip("127.0.0.1"));
        assert_eq!(
            connect_target(b"127.0.0.1.:443").unwrap().host,
            ip("127.0.0.1")
        );
        assert!(matches!(
            connect_target(b"[::1]x:443"),
            Err(TargetError::Port(_))
        ));
    }

    #[test]
    fn hop_by_hop_headers() {
        let tokens = connection_tokens([b"close, X-Secret".as_slice()]);
        assert!(is_hop_by_hop("Proxy-Authorization", &tokens));
        assert!(is_hop_by_hop("x-secret", &tokens));
        assert!(is_hop_by_hop("Keep-Alive", &tokens));
        assert!(!is_hop_by_hop("Accept", &tokens));
    }
}
