//! Byte relays for CONNECT and SOCKS5 tunnels: both directions at once, 64 KiB at a time,
//! counted against the request's and the run's limits, with first-byte and idle timeouts.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::record::{Direction, Entry, LimitHit};

/// Large enough that loopback transfers are not dominated by syscalls.
const BUFFER_SIZE: usize = 256 * 1024;

/// Why a tunnel ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    #[error(transparent)]
    Limit(#[from] LimitHit),
    #[error("{0}")]
    Timeout(&'static str),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Timeouts of one tunnel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// The server's first byte must arrive within this time of the tunnel opening.
    pub first_byte: Option<Duration>,
    /// The tunnel is cut after this long without a byte in either direction.
    pub idle: Option<Duration>,
}

/// Relays between the program (`client`, after `client_prefix`, bytes it already sent) and the
/// server until both sides have finished, or a limit or timeout cuts both.
pub(crate) async fn relay<C>(
    client: C,
    mut upstream: TcpStream,
    client_prefix: &[u8],
    entry: &Entry,
    timeouts: Timeouts,
) -> Result<(), RelayError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let last_activity = AtomicU64::new(entry.elapsed_ms());
    // While the server's first byte is awaited, that deadline governs, not the idle timeout.
    let awaiting_first_byte = AtomicBool::new(timeouts.first_byte.is_some());
    if !client_prefix.is_empty() {
        entry.account(Direction::Up, client_prefix.len() as u64)?;
        upstream.write_all(client_prefix).await?;
    }
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = upstream.split();
    let clock = Clock {
        entry,
        last_activity: &last_activity,
        awaiting_first_byte: &awaiting_first_byte,
        timeouts,
    };
    let up = pump(&mut client_read, &mut upstream_write, Direction::Up, clock);
    let down = pump(
        &mut upstream_read,
        &mut client_write,
        Direction::Down,
        clock,
    );
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            result = &mut up, if !up_done => { result?; up_done = true; }
            result = &mut down, if !down_done => { result?; down_done = true; }
        }
    }
    Ok(())
}

/// The timing state both directions of a tunnel share.
#[derive(Clone, Copy)]
struct Clock<'a> {
    entry: &'a Entry,
    last_activity: &'a AtomicU64,
    awaiting_first_byte: &'a AtomicBool,
    timeouts: Timeouts,
}

/// Copies one direction until end of stream, then half-closes the writer.
async fn pump<R, W>(
    reader: &mut R,
    writer: &mut W,
    direction: Direction,
    clock: Clock<'_>,
) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Clock {
        entry,
        last_activity,
        timeouts,
        ..
    } = clock;
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut awaiting_first_byte = direction == Direction::Down && timeouts.first_byte.is_some();
    loop {
        let n = if awaiting_first_byte {
            let limit = timeouts.first_byte.unwrap_or_default();
            let left = limit.saturating_sub(Duration::from_millis(entry.elapsed_ms()));
            match tokio::time::timeout(left, reader.read(&mut buf)).await {
                Ok(n) => n?,
                Err(_) => {
                    entry.set_limit("request_timeout");
                    return Err(RelayError::Timeout(
                        "no first byte from the server within http.request_timeout",
                    ));
                }
            }
        } else {
            read_until_idle(reader, &mut buf, clock).await?
        };
        if awaiting_first_byte {
            awaiting_first_byte = false;
            clock.awaiting_first_byte.store(false, Ordering::Relaxed);
        }
        if n == 0 {
            writer.shutdown().await?;
            return Ok(());
        }
        entry.account(direction, n as u64)?;
        last_activity.store(entry.elapsed_ms(), Ordering::Relaxed);
        match timeouts.idle {
            Some(idle) => tokio::time::timeout(idle, writer.write_all(&buf[..n]))
                .await
                .map_err(|_| {
                    entry.set_limit("idle_timeout");
                    RelayError::Timeout("the other side stopped reading")
                })??,
            None => writer.write_all(&buf[..n]).await?,
        }
    }
}

/// Reads, giving up only when neither direction has moved for `idle`.
async fn read_until_idle<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
    clock: Clock<'_>,
) -> Result<usize, RelayError> {
    let Some(idle) = clock.timeouts.idle else {
        return Ok(reader.read(buf).await?);
    };
    let entry = clock.entry;
    loop {
        let quiet_for = entry
            .elapsed_ms()
            .saturating_sub(clock.last_activity.load(Ordering::Relaxed));
        let mut left = idle.saturating_sub(Duration::from_millis(quiet_for));
        if clock.awaiting_first_byte.load(Ordering::Relaxed) {
            // The first-byte deadline cuts the tunnel if the server stays silent.
            left = left.max(idle);
        } else if left.is_zero() {
            entry.set_limit("idle_timeout");
            return Err(RelayError::Timeout("idle timeout"));
        }
        if let Ok(n) = tokio::time::timeout(left, reader.read(&mut *buf)).await {
            return Ok(n?);
        }
    }
}
