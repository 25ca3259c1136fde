//! The HTTP proxy: absolute-form `http://` requests are forwarded, CONNECT opens a tunnel.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, HOST};
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::decide::{decide, Verdict};
use crate::record::{Direction, Entry, LimitHit, RequestRecord, Shared};
use crate::target::{connect_target, connection_tokens, forward_target, is_hop_by_hop, Authority};
use crate::tunnel::{relay, Timeouts};

type BodyError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BodyError>;

/// Connecting without `http.request_timeout` still gives up after this long.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle timeout of tunnels and response bodies when `http.request_timeout` is not set.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Bytes one HTTP connection may make the proxy hold: hyper's read buffer, where a request or
/// response head must fit whole (a longer one is refused: 431 to the program, a 502 for a
/// server's), and its write buffer, each at most this. hyper's default, 408 KiB, let 120
/// unfinished heads hold 51 MiB of the supervisor; with [`crate::MAX_CONNECTIONS`] this bounds
/// the heads of all connections together to 128 × 2 × 64 KiB = 16 MiB. 64 KiB is four times
/// what common servers accept in a head (nginx 32 KiB at most, Node.js 16 KiB).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves one connection from the program.
pub(crate) async fn serve_connection(shared: Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req| handle(Arc::clone(&shared), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    if req.method() == Method::CONNECT {
        Ok(handle_connect(shared, req).await)
    } else {
        Ok(handle_forward(shared, req).await)
    }
}

/// Timeouts from the policy.
pub(crate) fn timeouts(shared: &Shared) -> Timeouts {
    let request = shared.policy.http.request_timeout;
    Timeouts {
        first_byte: request,
        idle: Some(request.unwrap_or(DEFAULT_IDLE_TIMEOUT)),
    }
}

/// The outcome of the checks every request goes through before anything is sent.
pub(crate) enum Admission {
    Go {
        entry: Arc<Entry>,
        addrs: Vec<IpAddr>,
    },
    /// Refused; `status` and the message for the program (the rule is already recorded).
    Refused { status: StatusCode, message: String },
}

/// Decides, counts the request against the run's limits, and records the decision.
pub(crate) async fn admit(
    shared: &Arc<Shared>,
    kind: &'static str,
    method: &str,
    authority: &Authority,
) -> Admission {
    let (host, port) = (authority.host.to_string(), authority.port);
    let base =
        |allowed: bool, rule: String, address: Option<IpAddr>, limit: Option<&str>| RequestRecord {
            kind: kind.to_string(),
            host: host.clone(),
            port,
            address: address.map(|a| a.to_string()),
            allowed,
            rule,
            bytes_sent: 0,
            bytes_received: 0,
            duration_ms: 0.0,
            limit: limit.map(str::to_string),
        };
    if shared.saturated() {
        shared.record(base(
            false,
            "too many decisions".into(),
            None,
            Some("max_decisions"),
        ));
        return Admission::Refused {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "bunker: refused {method} {host}:{port}: too many requests in this run"
            ),
        };
    }
    match decide(shared, &authority.host, port).await {
        Verdict::Deny { rule, address } => {
            let message = format!("bunker: denied {method} {host}:{port} by {rule}");
            shared.record(base(false, rule, address, None));
            Admission::Refused {
                status: StatusCode::FORBIDDEN,
                message,
            }
        }
        Verdict::Unresolved { rule, error } => {
            let message = format!("bunker: {error}");
            shared.record(base(true, rule, None, None));
            Admission::Refused {
                status: StatusCode::BAD_GATEWAY,
                message,
            }
        }
        Verdict::Allow { rule, addrs } => {
            if let Err(LimitHit(limit)) = shared.take_request() {
                let rule = format!("http.{limit}");
                let message = format!("bunker: refused {method} {host}:{port}: {rule} reached");
                shared.record(base(false, rule, None, Some(limit)));
                return Admission::Refused {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    message,
                };
            }
            let entry = shared.record(base(true, rule, addrs.first().copied(), None));
            Admission::Go { entry, addrs }
        }
    }
}

/// Connects to the first reachable checked address, within the request timeout.
pub(crate) async fn connect(
    shared: &Shared,
    entry: &Entry,
    addrs: &[IpAddr],
    port: u16,
) -> Result<TcpStream, ConnectError> {
    let limit = shared
        .policy
        .http
        .request_timeout
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let attempt = async {
        let mut last = None;
        for &ip in addrs {
            match TcpStream::connect((ip, port)).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    entry.set_address(ip);
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
    };
    match tokio::time::timeout(
        limit.saturating_sub(Duration::from_millis(entry.elapsed_ms())),
        attempt,
    )
    .await
    {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(ConnectError::Io(e)),
        Err(_) => {
            if shared.policy.http.request_timeout.is_some() {
                entry.set_limit("request_timeout");
            }
            Err(ConnectError::Timeout(limit))
        }
    }
}

/// Why connecting to the server failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect: {0}")]
    Io(std::io::Error),
    #[error("connect: timed out after {0:?}")]
    Timeout(Duration),
}

fn text_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(format!("{message}\n")))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

async fn handle_connect(shared: Arc<Shared>, req: Request<Incoming>) -> Response<ProxyBody> {
    let target = req
        .uri()
        .authority()
        .map(|a| a.as_str().as_bytes().to_vec())
        .unwrap_or_default();
    let authority = match connect_target(&target) {
        Ok(a) => a,
        Err(e) => {
            return text_response(
                StatusCode::BAD_REQUEST,
                &format!("bunker: bad CONNECT target: {e}"),
            )
        }
    };
    let (entry, addrs) = match admit(&shared, "connect", "CONNECT", &authority).await {
        Admission::Go { entry, addrs } => (entry, addrs),
        Admission::Refused { status, message } => return text_response(status, &message),
    };
    let upstream = match connect(&shared, &entry, &addrs, authority.port).await {
        Ok(s) => s,
        Err(e) => {
            let status = match e {
                ConnectError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                ConnectError::Io(_) => StatusCode::BAD_GATEWAY,
            };
            return text_response(
                status,
                &format!("bunker: CONNECT {}:{}: {e}", authority.host, authority.port),
            );
        }
    };
    let timeouts = timeouts(&shared);
    tokio::spawn(shared.tasks.track(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else {
            return;
        };
        // The program's connection, unwrapped from hyper, with any bytes it sent early.
        let (client, prefix) = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => (parts.io.into_inner(), parts.read_buf),
            Err(_) => return,
        };
        let _ = relay(client, upstream, &prefix, &entry, timeouts).await;
    }));
    Response::new(
        http_body_util::Empty::new()
            .map_err(|e| match e {})
            .boxed_unsync(),
    )
}

async fn handle_forward(shared: Arc<Shared>, req: Request<Incoming>) -> Response<ProxyBody> {
    let target = req.uri().to_string();
    let host_headers: Vec<&[u8]> = req
        .headers()
        .get_all(HOST)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let forward = match forward_target(target.as_bytes(), &host_headers) {
        Ok(t) => t,
        Err(e) => return text_response(StatusCode::BAD_REQUEST, &format!("bunker: {e}")),
    };
    let authority = forward.authority;
    let method = req.method().clone();
    let (entry, addrs) = match admit(&shared, "http", method.as_str(), &authority).await {
        Admission::Go { entry, addrs } => (entry, addrs),
        Admission::Refused { status, message } => return text_response(status, &message),
    };
    let limits = &shared.policy.http;
    let (parts, body) = req.into_parts();

    // Build the request for the server: origin-form target, this hop's headers removed, Host
    // set from the checked target.
    let tokens = connection_tokens(
        parts
            .headers
            .get_all(CONNECTION)
            .iter()
            .map(HeaderValue::as_bytes),
    );
    let mut upstream_req = Request::builder()
        .method(parts.method)
        .uri(forward.path_and_query.as_str())
        .version(Version::HTTP_11);
    let host_value = match (&authority.host, authority.port) {
        (host, 80) => host.to_string(),
        (host, port) => format!("{host}:{port}"),
    };
    let mut head_bytes =
        (method.as_str().len() + forward.path_and_query.len() + 11 + host_value.len() + 8) as u64;
    if let Some(headers) = upstream_req.headers_mut() {
        for (name, value) in parts.headers.iter() {
            if name == HOST || is_hop_by_hop(name.as_str(), &tokens) {
                continue;
            }
            head_bytes += (name.as_str().len() + value.len() + 4) as u64;
            headers.append(name.clone(), value.clone());
        }
        if let Ok(v) = HeaderValue::from_str(&host_value) {
            headers.insert(HOST, v);
        }
    }
    if let Some(max) = limits.max_request_bytes {
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if head_bytes + declared > max {
            entry.set_limit("max_request_bytes");
            discard_body(body).await;
            return text_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "bunker: request to {}:{} exceeds http.max_request_bytes ({max})",
                    authority.host, authority.port
                ),
            );
        }
    }
    if let Err(hit) = entry.account(Direction::Up, head_bytes) {
        return text_response(StatusCode::PAYLOAD_TOO_LARGE, &hit.to_string());
    }
    let idle = timeouts(&shared).idle;
    let upstream_body = Limited::new(body, Arc::clone(&entry), Direction::Up, idle);
    let upstream_req = match upstream_req.body(upstream_body) {
        Ok(r) => r,
        Err(e) => return text_response(StatusCode::BAD_REQUEST, &format!("bunker: {e}")),
    };

    // Connect and wait for the response head within http.request_timeout.
    let exchange = async {
        let stream = connect(&shared, &entry, &addrs, authority.port).await?;
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_HEAD_BYTES)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ForwardError::Upstream(e.to_string()))?;
        tokio::spawn(shared.tasks.track(async move {
            let _ = conn.await;
        }));
        sender
            .send_request(upstream_req)
            .await
            .map_err(|e| ForwardError::Upstream(e.to_string()))
    };
    let response = match limits.request_timeout {
        Some(limit) => match tokio::time::timeout(limit, exchange).await {
            Ok(r) => r,
            Err(_) => Err(ForwardError::Timeout(limit)),
        },
        None => exchange.await,
    };
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            let status = match &e {
                ForwardError::Timeout(_) | ForwardError::Connect(ConnectError::Timeout(_)) => {
                    if limits.request_timeout.is_some() {
                        entry.set_limit("request_timeout");
                    }
                    StatusCode::GATEWAY_TIMEOUT
                }
                _ => StatusCode::BAD_GATEWAY,
            };
            return text_response(
                status,
                &format!(
                    "bunker: {method} {}:{}: {e}",
                    authority.host, authority.port
                ),
            );
        }
    };

    let (mut parts, body) = response.into_parts();
    let tokens = connection_tokens(
        parts
            .headers
            .get_all(CONNECTION)
            .iter()
            .map(HeaderValue::as_bytes),
    );
    let names: Vec<_> = parts
        .headers
        .keys()
        .filter(|n| is_hop_by_hop(n.as_str(), &tokens))
        .cloned()
        .collect();
    for name in names {
        parts.headers.remove(name);
    }
    let head_bytes = 17
        + parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().len() + v.len() + 4) as u64)
            .sum::<u64>();
    if let Err(hit) = entry.account(Direction::Down, head_bytes) {
        return text_response(StatusCode::BAD_GATEWAY, &hit.to_string());
    }
    parts.version = Version::HTTP_11;
    Response::from_parts(
        parts,
        Limited::new(body, entry, Direction::Down, idle).boxed_unsync(),
    )
}

/// Upper bound on what is read and thrown away before a refusal is sent.
const DISCARD_LIMIT: u64 = 16 << 20;
/// How long reading a refused body may take.
const DISCARD_TIME: Duration = Duration::from_secs(2);

/// Reads (and drops) a refused request's body, within bounds, so that the client, which may
/// still be sending it, reads the refusal instead of a connection reset.
async fn discard_body(mut body: Incoming) {
    let drain = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > DISCARD_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}

/// Why a forwarded request failed before its response head arrived.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("no response within http.request_timeout ({0:?})")]
    Timeout(Duration),
}

/// A body streamed frame by frame, counted against the limits; it fails (and so cuts the
/// connection) when a limit is exceeded or nothing arrives for the idle timeout.
struct Limited {
    inner: Incoming,
    entry: Arc<Entry>,
    direction: Direction,
    idle: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
    /// A limit was reached by the last frame; the next poll fails.
    exceeded: Option<LimitHit>,
}

impl Limited {
    fn new(
        inner: Incoming,
        entry: Arc<Entry>,
        direction: Direction,
        idle: Option<Duration>,
    ) -> Limited {
        Limited {
            inner,
            entry,
            direction,
            idle,
            timer: None,
            exceeded: None,
        }
    }
}

impl Body for Limited {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some(hit) = this.exceeded.take() {
            return Poll::Ready(Some(Err(hit.into())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.timer = None;
                let data = match frame.into_data() {
                    Ok(data) => data,
                    Err(other) => return Poll::Ready(Some(Ok(other))),
                };
                let (allowance, limit) = this.entry.allowance(this.direction);
                let len = data.len() as u64;
                if len <= allowance {
                    this.entry.account(this.direction, len)?;
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // Deliver exactly what the limit allows; the next poll cuts the stream.
                this.entry.set_limit(limit);
                this.exceeded = Some(LimitHit(limit));
                if allowance == 0 {
                    return Poll::Ready(Some(Err(LimitHit(limit).into())));
                }
                let allowed = usize::try_from(allowance).unwrap_or(usize::MAX);
                this.entry.account(this.direction, allowance)?;
                Poll::Ready(Some(Ok(Frame::data(data.slice(..allowed)))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let Some(idle) = this.idle else {
                    return Poll::Pending;
                };
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.entry.set_limit("idle_timeout");
                        Poll::Ready(Some(Err("bunker: idle timeout".into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
