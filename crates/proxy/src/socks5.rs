//! The SOCKS5 handshake (RFC 1928), as pure functions over the bytes received so far, so the
//! parsing can be fuzzed apart from the network code.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Result of parsing a prefix of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// More bytes are needed.
    Incomplete,
    /// A complete message and the number of bytes it used.
    Done(T, usize),
}

/// The client's greeting: which authentication methods it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Whether "no authentication" (0x00), the only method bunker accepts, is offered.
    pub no_auth: bool,
}

/// The command in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Connect,
    Bind,
    UdpAssociate,
    Other(u8),
}

/// The destination in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Ip(IpAddr),
    /// The domain field as sent (still to be parsed as a host: it may spell an address).
    Domain(String),
}

/// A client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    pub destination: Destination,
    pub port: u16,
}

/// A malformed handshake; the connection is closed (after a reply where one is defined).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Socks5Error {
    #[error("SOCKS version {0} is not 5")]
    Version(u8),
    #[error("greeting offers no authentication method")]
    NoMethods,
    #[error("address type {0:#04x} is not supported")]
    AddressType(u8),
    #[error("the domain name is empty or not UTF-8")]
    Domain,
}

/// Reply codes (RFC 1928 §6).
pub mod reply {
    pub const SUCCEEDED: u8 = 0x00;
    pub const GENERAL_FAILURE: u8 = 0x01;
    pub const NOT_ALLOWED: u8 = 0x02;
    pub const NETWORK_UNREACHABLE: u8 = 0x03;
    pub const HOST_UNREACHABLE: u8 = 0x04;
    pub const CONNECTION_REFUSED: u8 = 0x05;
    pub const TTL_EXPIRED: u8 = 0x06;
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x07;
    pub const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;
}

/// The method-selection answer: 0x00 (no authentication) or 0xFF (no acceptable method).
pub fn method_reply(greeting: &Greeting) -> [u8; 2] {
    [5, if greeting.no_auth { 0x00 } else { 0xff }]
}

/// Parses `VER NMETHODS METHODS...`.
pub fn parse_greeting(buf: &[u8]) -> Result<Parsed<Greeting>, Socks5Error> {
    let Some(&version) = buf.first() else {
        return Ok(Parsed::Incomplete);
    };
    if version != 5 {
        return Err(Socks5Error::Version(version));
    }
    let Some(&count) = buf.get(1) else {
        return Ok(Parsed::Incomplete);
    };
    if count == 0 {
        return Err(Socks5Error::NoMethods);
    }
    let end = 2 + usize::from(count);
    match buf.get(2..end) {
        None => Ok(Parsed::Incomplete),
        Some(methods) => Ok(Parsed::Done(
            Greeting {
                no_auth: methods.contains(&0x00),
            },
            end,
        )),
    }
}

/// Parses `VER CMD RSV ATYP DST.ADDR DST.PORT`.
pub fn parse_request(buf: &[u8]) -> Result<Parsed<Request>, Socks5Error> {
    if buf.len() < 4 {
        if let Some(&version) = buf.first() {
            if version != 5 {
                return Err(Socks5Error::Version(version));
            }
        }
        return Ok(Parsed::Incomplete);
    }
    if buf[0] != 5 {
        return Err(Socks5Error::Version(buf[0]));
    }
    let command = match buf[1] {
        0x01 => Command::Connect,
        0x02 => Command::Bind,
        0x03 => Command::UdpAssociate,
        other => Command::Other(other),
    };
    // buf[2] is reserved; its value is ignored, as most servers do.
    let (destination, addr_end) = match buf[3] {
        0x01 => match buf.get(4..8) {
            None => return Ok(Parsed::Incomplete),
            Some(b) => (
                Destination::Ip(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
                8,
            ),
        },
        0x04 => match buf.get(4..20) {
            None => return Ok(Parsed::Incomplete),
            Some(b) => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(b);
                (Destination::Ip(IpAddr::V6(Ipv6Addr::from(octets))), 20)
            }
        },
        0x03 => {
            let Some(&len) = buf.get(4) else {
                return Ok(Parsed::Incomplete);
            };
            let end = 5 + usize::from(len);
            match buf.get(5..end) {
                None => return Ok(Parsed::Incomplete),
                Some(name) => {
                    let name = std::str::from_utf8(name).map_err(|_| Socks5Error::Domain)?;
                    if name.is_empty() {
                        return Err(Socks5Error::Domain);
                    }
                    (Destination::Domain(name.to_string()), end)
                }
            }
        }
        other => return Err(Socks5Error::AddressType(other)),
    };
    match buf.get(addr_end..addr_end + 2) {
        None => Ok(Parsed::Incomplete),
        Some(p) => Ok(Parsed::Done(
            Request {
                command,
                destination,
                port: u16::from_be_bytes([p[0], p[1]]),
            },
            addr_end + 2,
        )),
    }
}

/// A reply `VER REP RSV ATYP BND.ADDR BND.PORT`; the bound address is 0.0.0.0:0 when unknown.
pub fn encode_reply(code: u8, bound: Option<SocketAddr>) -> Vec<u8> {
    let bound = bound.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut out = vec![5, code, 0];
    match bound.ip() {
        IpAddr::V4(ip) => {
            out.push(0x01);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(0x04);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&bound.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting() {
        assert_eq!(parse_greeting(&[]), Ok(Parsed::Incomplete));
        assert_eq!(parse_greeting(&[5]), Ok(Parsed::Incomplete));
        assert_eq!(parse_greeting(&[5, 2, 0]), Ok(Parsed::Incomplete));
        assert_eq!(
            parse_greeting(&[5, 2, 2, 0, 9]),
            Ok(Parsed::Done(Greeting { no_auth: true }, 4))
        );
        assert_eq!(
            parse_greeting(&[5, 1, 2]),
            Ok(Parsed::Done(Greeting { no_auth: false }, 3))
        );
        assert_eq!(parse_greeting(&[4, 1, 0]), Err(Socks5Error::Version(4)));
        assert_eq!(parse_greeting(&[5, 0]), Err(Socks5Error::NoMethods));
    }

    #[test]
    fn requests() {
        let v4 = [5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90];
        for cut in 0..v4.len() {
            assert_eq!(parse_request(&v4[..cut]), Ok(Parsed::Incomplete), "{cut}");
        }
        assert_eq!(
            parse_request(&v4),
            Ok(Parsed::Done(
                Request {
                    command: Command::Connect,
                    destination: Destination::Ip("127.0.0.1".parse().unwrap()),
                    port: 8080
                },
                10
            ))
        );
        let mut dom = vec![5, 3, 0, 3, 5];
        dom.extend_from_slice(b"a.com");
        dom.extend_from_slice(&[0, 80]);
        let Ok(Parsed::Done(req, used)) = parse_request(&dom) else {
            panic!("domain request not parsed");
        };
        assert_eq!(
            (req.command, req.destination, req.port, used),
            (
                Command::UdpAssociate,
                Destination::Domain("a.com".into()),
                80,
                12
            )
        );
        let mut v6 = vec![5, 2, 0, 4];
        v6.extend_from_slice(&"::1".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&[1, 0]);
        assert!(matches!(
            parse_request(&v6),
            Ok(Parsed::Done(
                Request {
                    command: Command::Bind,
                    port: 256,
                    ..
                },
                22
            ))
        ));
        assert_eq!(
            parse_request(&[5, 1, 0, 9, 0, 0]),
            Err(Socks5Error::AddressType(9))
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 3, 0, 0, 80]),
            Err(Socks5Error::Domain)
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 3, 1, 0xff, 0, 80]),
            Err(Socks5Error::Domain)
        );
        assert_eq!(parse_request(&[4]), Err(Socks5Error::Version(4)));
    }

    #[test]
    fn replies() {
        assert_eq!(
            encode_reply(reply::NOT_ALLOWED, None),
            vec![5, 2, 0, 1, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(encode_reply(0, Some("[::1]:80".parse().unwrap())).len(), 22);
    }
}
