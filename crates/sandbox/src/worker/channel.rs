//! bunker's end of a worker's channel (docs/workers.md, "The channel"): the control socket for
//! the doorbells (`R`: a request waits in `in`; `D`: a reply waits in `out`) and the shared
//! memfd holding the two rings. Everything the worker writes is checked here before use; any
//! failure is a [`ChannelError`] whose [`is_protocol_error`](ChannelError::is_protocol_error)
//! says the worker broke the protocol, and its sandbox must be killed.
//!
//! The control socket is non-blocking: a daemon wraps [`Channel::control_fd`] in its reactor
//! (tokio's `AsyncFd`) and calls [`Channel::poll_doorbell`] when it is readable; a blocking
//! caller uses [`Channel::wait_reply`].

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use bunker_sys::shm::{self, SharedMap};
use bunker_sys::{event, fd, SysError};

use super::ring::{End, Ring, RingError};
use super::{WorkerReply, WorkerRequest};

/// The request doorbell.
pub const DOORBELL_REQUEST: &[u8] = b"R";
/// The reply doorbell.
pub const DOORBELL_DONE: &[u8] = b"D";

/// Sizes of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Data bytes of the `in` ring (bunker → worker).
    pub in_capacity: u64,
    /// Data bytes of the `out` ring (worker → bunker).
    pub out_capacity: u64,
}

impl Default for ChannelConfig {
    /// 1 MiB each way (memory is only used as far as records reach).
    fn default() -> Self {
        ChannelConfig {
            in_capacity: 1 << 20,
            out_capacity: 1 << 20,
        }
    }
}

/// Smallest ring capacity accepted (a record needs its 4-byte prefix and some JSON).
pub const MIN_CAPACITY: u64 = 64;

/// Why a channel operation failed.
#[derive(Debug)]
pub enum ChannelError {
    /// A ring header or record failed its checks.
    Ring(RingError),
    /// The worker rang something other than `D`, or attached descriptors.
    Doorbell(String),
    /// The reply record is not UTF-8 JSON of the reply's shape, or breaks the request's cap.
    Reply(String),
    /// A reply arrived when none was asked for.
    Unexpected,
    /// The request does not fit in the `in` ring.
    RequestTooLarge { bytes: usize, capacity: u64 },
    /// A system call of bunker's own failed.
    Sys(SysError),
    /// The worker's end is closed (it ended).
    Closed,
}

impl ChannelError {
    /// Whether this is the worker's fault: a protocol error (the sandbox is to be killed).
    pub fn is_protocol_error(&self) -> bool {
        matches!(
            self,
            ChannelError::Ring(_)
                | ChannelError::Doorbell(_)
                | ChannelError::Reply(_)
                | ChannelError::Unexpected
        )
    }
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::Ring(e) => write!(f, "{e}"),
            ChannelError::Doorbell(d) => write!(f, "control socket: {d}"),
            ChannelError::Reply(d) => write!(f, "reply record: {d}"),
            ChannelError::Unexpected => f.write_str("a reply doorbell with no request pending"),
            ChannelError::RequestTooLarge { bytes, capacity } => write!(
                f,
                "the request is {bytes} bytes of JSON, the worker's in ring holds {capacity}"
            ),
            ChannelError::Sys(e) => write!(f, "{e}"),
            ChannelError::Closed => f.write_str("the worker closed its channel"),
        }
    }
}

impl std::error::Error for ChannelError {}

impl From<RingError> for ChannelError {
    fn from(e: RingError) -> Self {
        ChannelError::Ring(e)
    }
}

impl From<SysError> for ChannelError {
    fn from(e: SysError) -> Self {
        ChannelError::Sys(e)
    }
}

/// The worker's end: its fds 3 (control socket) and 4 (the memfd).
#[derive(Debug)]
pub struct WorkerFds {
    pub control: OwnedFd,
    pub memfd: OwnedFd,
}

impl WorkerFds {
    /// In the order of [`crate::spawn::Program::extra_fds`]: fd 3, fd 4.
    pub fn into_extra_fds(self) -> Vec<OwnedFd> {
        vec![self.control, self.memfd]
    }
}

/// What [`Channel::poll_doorbell`] found.
#[derive(Debug, PartialEq)]
pub enum Doorbell {
    /// Nothing yet (the socket would block).
    Nothing,
    /// A reply, read and checked.
    Reply(Box<WorkerReply>),
    /// The worker's end is closed with no reply pending.
    Closed,
}

/// bunker's end of one worker's channel.
#[derive(Debug)]
pub struct Channel {
    control: OwnedFd,
    map: SharedMap,
    input: Ring,
    output: Ring,
    /// The console cap of the request in flight; `None` when no reply is due.
    awaiting: Option<u64>,
}

impl Channel {
    /// A new channel: the socket pair, and the memfd sized for both rings, sealed against
    /// resizing (`F_SEAL_GROW|F_SEAL_SHRINK|F_SEAL_SEAL`) and mapped, its headers written.
    pub fn new(config: ChannelConfig) -> Result<(Channel, WorkerFds), SysError> {
        for cap in [config.in_capacity, config.out_capacity] {
            if !(MIN_CAPACITY..=u64::from(u32::MAX)).contains(&cap) {
                return Err(SysError::from_errno(
                    format!("a worker ring of {cap} bytes (allowed {MIN_CAPACITY}..=4 GiB)"),
                    libc::EINVAL,
                ));
            }
        }
        let (control, worker_control) = fd::seqpacket_pair()?;
        event::set_nonblocking(control.as_fd())?;
        let memfd = shm::memfd_create("bunker-worker")?;
        let out_base = Ring::footprint(config.in_capacity);
        let total = out_base + Ring::footprint(config.out_capacity);
        shm::ftruncate(memfd.as_fd(), total)?;
        shm::add_seals(memfd.as_fd(), shm::SIZE_SEALS)?;
        let map = SharedMap::map(memfd.as_fd(), total as usize)?;
        let ring_err = |e: RingError| SysError::from_errno(e.to_string(), libc::EFAULT);
        let input = Ring::create(&map, 0, config.in_capacity, End::Writer).map_err(ring_err)?;
        let output = Ring::create(&map, out_base as usize, config.out_capacity, End::Reader)
            .map_err(ring_err)?;
        Ok((
            Channel {
                control,
                map,
                input,
                output,
                awaiting: None,
            },
            WorkerFds {
                control: worker_control,
                memfd,
            },
        ))
    }

    /// The control socket (non-blocking), for a reactor to wait on: readable when a doorbell
    /// or the worker's end arrives.
    pub fn control_fd(&self) -> BorrowedFd<'_> {
        self.control.as_fd()
    }

    /// Writes `request` into the `in` ring and rings `R`. The worker may not have started
    /// yet: the record and the doorbell wait for it.
    pub fn send_request(&mut self, request: &WorkerRequest) -> Result<(), ChannelError> {
        let json = serde_json::to_vec(request)
            .map_err(|e| ChannelError::Reply(format!("encoding the request: {e}")))?;
        if json.len() as u64 + super::ring::LEN_PREFIX > self.input.capacity() {
            return Err(ChannelError::RequestTooLarge {
                bytes: json.len(),
                capacity: self.input.capacity(),
            });
        }
        self.input.write_record(&self.map, &json)?;
        self.awaiting = Some(request.console_bytes);
        fd::send_with_fds(self.control.as_raw_fd(), DOORBELL_REQUEST, &[])?;
        Ok(())
    }

    /// Takes one packet off the control socket without blocking: `D` and a checked reply, the
    /// worker's end closed, or nothing yet. Anything else is a protocol error.
    pub fn poll_doorbell(&mut self) -> Result<Doorbell, ChannelError> {
        let (packet, fds) = match fd::recv_with_fds(self.control.as_raw_fd(), 16) {
            Ok(got) => got,
            Err(e) if e.errno == libc::EAGAIN => return Ok(Doorbell::Nothing),
            Err(e) => return Err(e.into()),
        };
        if !fds.is_empty() {
            return Err(ChannelError::Doorbell(format!(
                "{} descriptor(s) attached to a doorbell",
                fds.len()
            )));
        }
        if packet.is_empty() {
            return Ok(Doorbell::Closed);
        }
        if packet != DOORBELL_DONE {
            return Err(ChannelError::Doorbell(format!(
                "unexpected packet {:?}",
                String::from_utf8_lossy(&packet[..packet.len().min(16)])
            )));
        }
        self.read_reply().map(|r| Doorbell::Reply(Box::new(r)))
    }

    /// Reads and checks the reply record in `out` (after `D`).
    fn read_reply(&mut self) -> Result<WorkerReply, ChannelError> {
        let Some(console_cap) = self.awaiting.take() else {
            return Err(ChannelError::Unexpected);
        };
        let bound = self.output.capacity() - super::ring::LEN_PREFIX;
        let record = self
            .output
            .read_record(&self.map, bound)?
            .ok_or_else(|| ChannelError::Reply("the doorbell rang with no record in out".into()))?;
        let text = std::str::from_utf8(&record)
            .map_err(|e| ChannelError::Reply(format!("not UTF-8: {e}")))?;
        let reply: WorkerReply = serde_json::from_str(text)
            .map_err(|e| ChannelError::Reply(format!("not a reply: {e}")))?;
        if reply.console_output.len() as u64 > console_cap {
            return Err(ChannelError::Reply(format!(
                "console_output of {} bytes breaks the cap of {console_cap}",
                reply.console_output.len()
            )));
        }
        Ok(reply)
    }

    /// Blocks until the reply (`Some`), the worker's end closing first (`None`), or `timeout`
    /// (`None`; `None` waits for ever).
    pub fn wait_reply(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<WorkerReply>, ChannelError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            match self.poll_doorbell()? {
                Doorbell::Reply(r) => return Ok(Some(*r)),
                Doorbell::Closed => return Ok(None),
                Doorbell::Nothing => {}
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) => Some(left),
                    None => return Ok(None),
                },
                None => None,
            };
            event::poll(&[self.control.as_fd()], left)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::ring;

    fn request() -> WorkerRequest {
        WorkerRequest {
            code: "1+1".into(),
            function: None,
            args: Vec::new(),
            globals: Default::default(),
            console_bytes: 10,
            keep_open: false,
        }
    }

    /// Plays the worker: reads the request from `in`, writes `reply` into `out`, rings `D`.
    fn fake_worker(fds: &WorkerFds, reply: &[u8]) -> Vec<u8> {
        let (packet, _) = fd::recv_with_fds(fds.control.as_raw_fd(), 16).unwrap_or_default();
        assert_eq!(packet, DOORBELL_REQUEST);
        let config = ChannelConfig::default();
        let total = Ring::footprint(config.in_capacity) + Ring::footprint(config.out_capacity);
        let map =
            SharedMap::map(fds.memfd.as_fd(), total as usize).unwrap_or_else(|e| panic!("{e}"));
        let mut input = Ring::view(0, config.in_capacity, End::Reader);
        let got = input
            .read_record(&map, 1 << 20)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_default();
        let mut output = Ring::view(
            Ring::footprint(config.in_capacity) as usize,
            config.out_capacity,
            End::Writer,
        );
        output
            .write_record(&map, reply)
            .unwrap_or_else(|e| panic!("{e}"));
        fd::send_with_fds(fds.control.as_raw_fd(), DOORBELL_DONE, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        got
    }

    #[test]
    fn a_request_goes_in_and_a_reply_comes_out() {
        let (mut ch, fds) =
            Channel::new(ChannelConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        ch.send_request(&request())
            .unwrap_or_else(|e| panic!("{e}"));
        let got = fake_worker(
            &fds,
            br#"{"value":2,"console_output":"hi","console_truncated":false,"error":null}"#,
        );
        let sent: WorkerRequest = serde_json::from_slice(&got).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sent, request());
        let reply = ch.wait_reply(None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reply.map(|r| r.value), Some(serde_json::json!(2)));
        drop(fds);
        assert_eq!(ch.poll_doorbell().ok(), Some(Doorbell::Closed));
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        for bad in [
            &b"not json"[..],
            br#"{"value":2}"#,
            br#"{"value":2,"console_output":"far too long","console_truncated":false,"error":null}"#,
            br#"{"value":2,"console_output":"","console_truncated":false,"error":{"kind":"timeout","message":""}}"#,
        ] {
            let (mut ch, fds) = Channel::new(ChannelConfig::default()).unwrap_or_else(|e| panic!("{e}"));
            ch.send_request(&request()).unwrap_or_else(|e| panic!("{e}"));
            fake_worker(&fds, bad);
            let err = ch.wait_reply(None).err().unwrap_or(ChannelError::Closed);
            assert!(err.is_protocol_error(), "{err}");
        }
        // A scribbled header: the capacity changed under bunker.
        let (mut ch, fds) =
            Channel::new(ChannelConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        ch.send_request(&request())
            .unwrap_or_else(|e| panic!("{e}"));
        let config = ChannelConfig::default();
        let total = Ring::footprint(config.in_capacity) + Ring::footprint(config.out_capacity);
        let map =
            SharedMap::map(fds.memfd.as_fd(), total as usize).unwrap_or_else(|e| panic!("{e}"));
        let out_base = Ring::footprint(config.in_capacity) as usize;
        map.copy_in(out_base + 8, &u64::MAX.to_le_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        fd::send_with_fds(fds.control.as_raw_fd(), DOORBELL_DONE, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let err = ch.wait_reply(None).err().unwrap_or(ChannelError::Closed);
        assert!(
            matches!(
                err,
                ChannelError::Ring(ring::RingError::CapacityChanged { .. })
            ),
            "{err}"
        );
        // A doorbell nobody asked for.
        fd::send_with_fds(fds.control.as_raw_fd(), DOORBELL_DONE, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let err = ch.wait_reply(None).err().unwrap_or(ChannelError::Closed);
        assert!(err.is_protocol_error(), "{err}");
    }
}
