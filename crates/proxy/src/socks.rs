//! The SOCKS5 proxy: no authentication, CONNECT only.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::addr::{canonical, parse_host, HostSpec};
use crate::http::{admit, connect, timeouts, Admission, ConnectError};
use crate::record::{RequestRecord, Shared};
use crate::socks5::{
    encode_reply, method_reply, parse_greeting, parse_request, reply, Command, Destination, Parsed,
    Socks5Error,
};
use crate::target::Authority;
use crate::tunnel::relay;

/// The whole handshake must arrive within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest possible greeting or request (a 255-byte domain plus headers), with room to spare.
const MAX_MESSAGE: usize = 600;

/// Serves one SOCKS5 connection from the program.
pub(crate) async fn serve_connection(shared: Arc<Shared>, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(MAX_MESSAGE);
    let handshake = async {
        let (greeting, used) = read_message(&mut stream, &mut buf, parse_greeting).await?;
        buf.drain(..used);
        stream.write_all(&method_reply(&greeting)).await.ok()?;
        if !greeting.no_auth {
            return None;
        }
        match read_message(&mut stream, &mut buf, parse_request).await {
            Some((request, used)) => {
                buf.drain(..used);
                Some(Ok(request))
            }
            None => Some(Err(())),
        }
    };
    let request = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Some(Ok(request))) => request,
        Ok(Some(Err(()))) => {
            // An unsupported address type gets its reply; any other malformed request only
            // a general failure.
            let code = match parse_request(&buf) {
                Err(Socks5Error::AddressType(_)) => reply::ADDRESS_TYPE_NOT_SUPPORTED,
                _ => reply::GENERAL_FAILURE,
            };
            let _ = stream.write_all(&encode_reply(code, None)).await;
            return;
        }
        _ => return,
    };

    let shown = match &request.destination {
        Destination::Ip(ip) => HostSpec::Ip(canonical(*ip)).to_string(),
        Destination::Domain(d) => d.clone(),
    };
    let refuse = |rule: String| RequestRecord {
        kind: "socks5".to_string(),
        host: shown.clone(),
        port: request.port,
        address: None,
        allowed: false,
        rule,
        bytes_sent: 0,
        bytes_received: 0,
        duration_ms: 0.0,
        limit: None,
    };
    if request.command != Command::Connect {
        let name = match request.command {
            Command::Bind => "BIND".to_string(),
            Command::UdpAssociate => "UDP ASSOCIATE".to_string(),
            Command::Connect => "CONNECT".to_string(),
            Command::Other(c) => format!("command {c:#04x}"),
        };
        shared.record(refuse(format!(
            "socks5 ({name} is not supported; only CONNECT)"
        )));
        let _ = stream
            .write_all(&encode_reply(reply::COMMAND_NOT_SUPPORTED, None))
            .await;
        return;
    }
    let host = match &request.destination {
        Destination::Ip(ip) => Ok(HostSpec::Ip(canonical(*ip))),
        Destination::Domain(d) => parse_host(d),
    };
    let host = match host {
        Ok(h) => h,
        Err(e) => {
            shared.record(refuse(format!("invalid host ({e})")));
            let _ = stream
                .write_all(&encode_reply(reply::NOT_ALLOWED, None))
                .await;
            return;
        }
    };
    let authority = Authority {
        host,
        port: request.port,
    };
    let (entry, addrs) = match admit(&shared, "socks5", "CONNECT", &authority).await {
        Admission::Go { entry, addrs } => (entry, addrs),
        Admission::Refused { status, .. } => {
            let code = if status == hyper::StatusCode::BAD_GATEWAY {
                reply::HOST_UNREACHABLE
            } else {
                reply::NOT_ALLOWED
            };
            let _ = stream.write_all(&encode_reply(code, None)).await;
            return;
        }
    };
    let upstream = match connect(&shared, &entry, &addrs, authority.port).await {
        Ok(s) => s,
        Err(e) => {
            let code = match e {
                ConnectError::Timeout(_) => reply::TTL_EXPIRED,
                ConnectError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    reply::CONNECTION_REFUSED
                }
                ConnectError::Io(_) => reply::HOST_UNREACHABLE,
            };
            let _ = stream.write_all(&encode_reply(code, None)).await;
            return;
        }
    };
    let bound = upstream.local_addr().ok();
    if stream
        .write_all(&encode_reply(reply::SUCCEEDED, bound))
        .await
        .is_err()
    {
        return;
    }
    let _ = relay(stream, upstream, &buf, &entry, timeouts(&shared)).await;
}

/// Reads until `parse` has a complete message; `None` on a malformed message, end of stream or
/// an oversized one.
async fn read_message<T>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    parse: fn(&[u8]) -> Result<Parsed<T>, Socks5Error>,
) -> Option<(T, usize)> {
    loop {
        match parse(buf) {
            Ok(Parsed::Done(message, used)) => return Some((message, used)),
            Ok(Parsed::Incomplete) => {}
            Err(_) => return None,
        }
        if buf.len() >= MAX_MESSAGE {
            return None;
        }
        let mut chunk = [0u8; MAX_MESSAGE];
        let n = stream
            .read(&mut chunk[..MAX_MESSAGE - buf.len()])
            .await
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
