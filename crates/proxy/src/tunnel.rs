//! Byte relays for CONNECT and SOCKS5 tunnels: both directions at once, counted against the
//! request's and the run's limits, with first-byte and idle timeouts.
//!
//! Bytes move with splice(2) through a pipe per direction, so they never enter the proxy's
//! memory and cost it no copies. Readiness comes from tokio; the splices are non-blocking.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use crate::record::{Direction, Entry, LimitHit};

/// Pipe capacity asked for (the kernel may give less; the relay works with any size).
const PIPE_SIZE: i32 = 1024 * 1024;

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

/// The timing state both directions of a tunnel share.
#[derive(Clone, Copy)]
struct Clock<'a> {
    entry: &'a Entry,
    last_activity: &'a AtomicU64,
    awaiting_first_byte: &'a AtomicBool,
    timeouts: Timeouts,
}

/// Relays between the program (`client`, after `client_prefix`, bytes it already sent) and the
/// server until both sides have finished, or a limit or timeout cuts both.
pub(crate) async fn relay(
    client: TcpStream,
    mut upstream: TcpStream,
    client_prefix: &[u8],
    entry: &Entry,
    timeouts: Timeouts,
) -> Result<(), RelayError> {
    let last_activity = AtomicU64::new(entry.elapsed_ms());
    // While the server's first byte is awaited, that deadline governs, not the idle timeout.
    let awaiting_first_byte = AtomicBool::new(timeouts.first_byte.is_some());
    if !client_prefix.is_empty() {
        entry.account(Direction::Up, client_prefix.len() as u64)?;
        upstream.write_all(client_prefix).await?;
    }
    let clock = Clock {
        entry,
        last_activity: &last_activity,
        awaiting_first_byte: &awaiting_first_byte,
        timeouts,
    };
    let up = pump(&client, &upstream, Direction::Up, clock);
    let down = pump(&upstream, &client, Direction::Down, clock);
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

/// A non-blocking pipe and its capacity.
fn pipe() -> io::Result<(OwnedFd, OwnedFd, usize)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    // A bigger pipe means fewer splices; refusal (pipe-max-size, per-user limits) is harmless.
    let capacity = fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE))
        .or_else(|_| fcntl(&write, FcntlArg::F_GETPIPE_SZ))
        .map_err(io::Error::from)?;
    Ok((
        read,
        write,
        usize::try_from(capacity).unwrap_or(4096).max(4096),
    ))
}

/// What became ready.
enum Ready {
    Read,
    Write,
}

/// Moves one direction until end of stream, then half-closes the writer. The pipe is a buffer
/// between the two sockets: it is filled while the source has bytes and drained while the
/// destination takes them, both at once, so neither side waits for the other.
async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    direction: Direction,
    clock: Clock<'_>,
) -> Result<(), RelayError> {
    let (pipe_read, pipe_write, capacity) = pipe()?;
    let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
    let mut awaiting_first_byte =
        direction == Direction::Down && clock.timeouts.first_byte.is_some();
    let (mut in_pipe, mut eof) = (0usize, false);
    loop {
        if eof && in_pipe == 0 {
            socket2::SockRef::from(dst)
                .shutdown(std::net::Shutdown::Write)
                .or_else(ignore_not_connected)?;
            return Ok(());
        }
        // Read no more than the limits allow, so exactly the allowed bytes get through; with
        // nothing left, one byte is read (once the pipe is empty) to see whether more comes.
        let (allowance, _) = clock.entry.allowance(direction);
        let can_fill = !eof && in_pipe < capacity && (allowance > 0 || in_pipe == 0);
        let can_drain = in_pipe > 0;
        let room = capacity.saturating_sub(in_pipe).max(1);
        let want = usize::try_from(allowance)
            .unwrap_or(usize::MAX)
            .clamp(1, room);
        let ready = async {
            tokio::select! {
                r = src.readable(), if can_fill => r.map(|()| Ready::Read),
                r = dst.writable(), if can_drain => r.map(|()| Ready::Write),
            }
        };
        let ready = match time_left(clock, awaiting_first_byte)? {
            Some(left) => match tokio::time::timeout(left, ready).await {
                Ok(r) => r?,
                // Look at the clocks again: the other direction may have moved meanwhile.
                Err(_) => continue,
            },
            None => ready.await?,
        };
        match ready {
            Ready::Read => {
                let moved = src.try_io(Interest::READABLE, || {
                    splice(src.as_fd(), None, pipe_write.as_fd(), None, want, flags)
                        .map_err(io::Error::from)
                });
                match moved {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        if awaiting_first_byte {
                            awaiting_first_byte = false;
                            clock.awaiting_first_byte.store(false, Ordering::Relaxed);
                        }
                        clock.entry.account(direction, n as u64)?;
                        clock
                            .last_activity
                            .store(clock.entry.elapsed_ms(), Ordering::Relaxed);
                        in_pipe += n;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ready::Write => {
                let moved = dst.try_io(Interest::WRITABLE, || {
                    splice(pipe_read.as_fd(), None, dst.as_fd(), None, in_pipe, flags)
                        .map_err(io::Error::from)
                });
                match moved {
                    Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                    Ok(m) => {
                        in_pipe -= m;
                        clock
                            .last_activity
                            .store(clock.entry.elapsed_ms(), Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

/// The peer may already be gone when its write side is shut.
fn ignore_not_connected(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotConnected {
        Ok(())
    } else {
        Err(e)
    }
}

/// How long this direction may still wait: until the server's first byte is due (when it is
/// awaited here), or until the tunnel has been idle — no byte in either direction — for the
/// idle timeout. An expired clock ends the tunnel with the limit recorded.
fn time_left(clock: Clock<'_>, first_byte: bool) -> Result<Option<Duration>, RelayError> {
    let entry = clock.entry;
    let elapsed = Duration::from_millis(entry.elapsed_ms());
    if first_byte {
        let left = clock
            .timeouts
            .first_byte
            .unwrap_or_default()
            .saturating_sub(elapsed);
        if left.is_zero() {
            entry.set_limit("request_timeout");
            return Err(RelayError::Timeout(
                "no first byte from the server within http.request_timeout",
            ));
        }
        return Ok(Some(left));
    }
    let Some(idle) = clock.timeouts.idle else {
        return Ok(None);
    };
    if clock.awaiting_first_byte.load(Ordering::Relaxed) {
        // The first-byte deadline cuts the tunnel if the server stays silent.
        return Ok(Some(idle));
    }
    let quiet = elapsed.saturating_sub(Duration::from_millis(
        clock.last_activity.load(Ordering::Relaxed),
    ));
    let left = idle.saturating_sub(quiet);
    if left.is_zero() {
        entry.set_limit("idle_timeout");
        return Err(RelayError::Timeout("idle timeout"));
    }
    Ok(Some(left))
}
