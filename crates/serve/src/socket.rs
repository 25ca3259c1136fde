//! The listening socket (created once, refusing a live one, replacing a stale one) and each
//! connection's frame reader: bounded buffer, descriptors received with the bytes they came
//! on, a deadline for a frame once its first byte is in.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use bunker_api::protocol::{parse_frame, FrameError, LENGTH_PREFIX};
use tokio::io::Interest;
use tokio::net::unix::OwnedReadHalf;
use tokio::time::Instant;

/// Binds `path`: refuses when a daemon answers there, removes a stale socket file, and sets the
/// mode (0600, or 0660 and the group with `group`).
pub fn bind(path: &Path, group: Option<u32>) -> Result<std::os::unix::net::UnixListener, String> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(format!(
                "{shown} exists and is not a socket; not replacing it"
            ));
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(format!("another daemon is serving on {shown}")),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)
                    .map_err(|e| format!("remove the stale socket {shown}: {e}"))?;
            }
            Err(e) => return Err(format!("{shown}: {e}")),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{shown}: {e}")),
    }
    let listener =
        std::os::unix::net::UnixListener::bind(path).map_err(|e| format!("bind {shown}: {e}"))?;
    // Until the mode is set the umask decides who could connect; every connection is checked
    // against its peer's credentials anyway.
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(|e| format!("chown {shown} to group {gid}: {e}"))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {mode:o} {shown}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("{shown}: {e}"))?;
    Ok(listener)
}

/// Why a connection's reading ended.
#[derive(Debug)]
pub enum ReadEnd {
    /// The peer closed between frames.
    Closed,
    /// A bad frame: the message for the `protocol_error`.
    Protocol(String),
    /// The socket failed.
    Io(io::Error),
}

/// One frame: its JSON text and the descriptors that came with its bytes.
#[derive(Debug)]
pub struct Received {
    pub payload: String,
    pub fds: Vec<OwnedFd>,
}

/// Reads bytes per `recvmsg` (the kernel never merges bytes sent with descriptors into the
/// bytes before them, so each batch of fds arrives with the first byte it was sent on).
const READ_CHUNK: usize = 64 * 1024;

/// Reads frames off one connection.
pub struct FrameReader {
    buf: Vec<u8>,
    /// Descriptors received, with the stream offset of the first byte they came with.
    fds: VecDeque<(u64, OwnedFd)>,
    /// Stream offset of `buf[0]`.
    offset: u64,
    max_frame: usize,
    frame_timeout: Duration,
    /// When the first byte of the frame being read arrived.
    frame_started: Option<Instant>,
}

impl FrameReader {
    pub fn new(max_frame: usize, frame_timeout: Duration) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            fds: VecDeque::new(),
            offset: 0,
            max_frame,
            frame_timeout,
            frame_started: None,
        }
    }

    /// The next frame.
    pub async fn next(&mut self, stream: &OwnedReadHalf) -> Result<Received, ReadEnd> {
        loop {
            match parse_frame(&self.buf, self.max_frame) {
                Ok(Some(frame)) => {
                    let payload = frame.payload.to_string();
                    let end = self.offset + frame.consumed as u64;
                    let consumed = frame.consumed;
                    let mut fds = Vec::new();
                    while self.fds.front().is_some_and(|(at, _)| *at < end) {
                        if let Some((_, fd)) = self.fds.pop_front() {
                            fds.push(fd);
                        }
                    }
                    self.buf.drain(..consumed);
                    self.offset = end;
                    self.frame_started = (!self.buf.is_empty()).then(Instant::now);
                    return Ok(Received { payload, fds });
                }
                Ok(None) => {}
                Err(e @ FrameError::TooLarge { .. }) => {
                    return Err(ReadEnd::Protocol(e.to_string()))
                }
                Err(e) => return Err(ReadEnd::Protocol(e.to_string())),
            }
            self.fill(stream).await?;
        }
    }

    async fn fill(&mut self, stream: &OwnedReadHalf) -> Result<(), ReadEnd> {
        let raw = stream.as_ref().as_raw_fd();
        let read = stream.as_ref().async_io(Interest::READABLE, || {
            bunker_sys::fd::recv_with_fds(raw, READ_CHUNK)
                .map_err(|e| io::Error::from_raw_os_error(e.errno))
        });
        let (bytes, fds) = match self.frame_started {
            Some(started) => {
                let deadline = started + self.frame_timeout;
                match tokio::time::timeout_at(deadline, read).await {
                    Ok(r) => r.map_err(ReadEnd::Io)?,
                    Err(_) => {
                        return Err(ReadEnd::Protocol(format!(
                            "frame not complete within {} ms of its first byte ({} of its bytes arrived)",
                            self.frame_timeout.as_millis(),
                            self.buf.len()
                        )))
                    }
                }
            }
            None => read.await.map_err(ReadEnd::Io)?,
        };
        if bytes.is_empty() && fds.is_empty() {
            return if self.buf.is_empty() {
                Err(ReadEnd::Closed)
            } else {
                Err(ReadEnd::Protocol(format!(
                    "connection closed in the middle of a frame ({} bytes of it)",
                    self.buf.len()
                )))
            };
        }
        if bytes.is_empty() {
            // Descriptors with no byte: nothing to attach them to.
            return Err(ReadEnd::Protocol(
                "descriptors sent without a frame byte".to_string(),
            ));
        }
        let at = self.offset + self.buf.len() as u64;
        if self.fds.len() + fds.len() > bunker_api::protocol::MAX_FDS * 2 {
            return Err(ReadEnd::Protocol(format!(
                "too many descriptors ({}) for the frames in flight",
                self.fds.len() + fds.len()
            )));
        }
        self.fds.extend(fds.into_iter().map(|fd| (at, fd)));
        if self.buf.is_empty() {
            self.frame_started = Some(Instant::now());
        }
        self.buf.extend_from_slice(&bytes);
        debug_assert!(self.buf.len() <= LENGTH_PREFIX + self.max_frame + READ_CHUNK);
        Ok(())
    }
}
