//! The ring format (docs/workers.md, "Ring layout") and its validation: pure functions over byte
//! snapshots, which never trust a value the other side wrote. The live side ([`Ring`]) copies a
//! snapshot out of the shared mapping and runs it through the same functions the fuzz target
//! (fuzz/fuzz_targets/ring_header.rs) drives.
//!
//! A ring is a 64-byte header followed by `capacity` bytes of data:
//!
//! | offset | field | written by |
//! |---|---|---|
//! | 0 | `magic` u32 = 0x474E5242 (`BRNG` little endian) | bunker, at creation |
//! | 4 | `version` u32 = 1 | bunker, at creation |
//! | 8 | `capacity` u64 | bunker, at creation |
//! | 16 | `head` u64: bytes consumed | the reader |
//! | 24 | `tail` u64: bytes produced | the writer |
//! | 32–63 | zero | — |
//!
//! All little endian. A record is a u32 length and that many bytes, at position `p` stored at
//! data offset `p % capacity`, wrapping.

use std::fmt;

use bunker_sys::shm::SharedMap;

/// Bytes of a ring header.
pub const HEADER_LEN: usize = 64;
/// `BRNG` as a little-endian u32.
pub const MAGIC: u32 = 0x474E_5242;
/// The one ring version.
pub const VERSION: u32 = 1;
/// Bytes of a record's length prefix.
pub const LEN_PREFIX: u64 = 4;

const OFF_HEAD: usize = 16;
const OFF_TAIL: usize = 24;

/// A ring header as parsed (the values are the other side's claims, checked against ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub capacity: u64,
    pub head: u64,
    pub tail: u64,
}

/// Why a ring (or a record in it) is not acceptable. Any of these is a protocol error of the
/// worker's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingError {
    /// Fewer bytes than a header (a snapshot too short to hold one).
    Short {
        len: usize,
    },
    BadMagic(u32),
    BadVersion(u32),
    /// The header's capacity is not the one bunker made the ring with.
    CapacityChanged {
        header: u64,
        own: u64,
    },
    /// A position bunker owns was changed by the other side.
    PositionChanged {
        field: &'static str,
        header: u64,
        own: u64,
    },
    /// `head > tail`, or more bytes pending than the ring holds.
    BadPositions {
        head: u64,
        tail: u64,
        capacity: u64,
    },
    /// A record's length exceeds what is pending or the bound.
    BadLength {
        len: u64,
        available: u64,
        bound: u64,
    },
    /// A record to write does not fit in the free space.
    Full {
        needed: u64,
        free: u64,
    },
    /// The mapping refused an access (an offset bunker computed; should not happen).
    Access(String),
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::Short { len } => write!(f, "ring header: {len} bytes, need {HEADER_LEN}"),
            RingError::BadMagic(m) => {
                write!(f, "ring header: magic {m:#010x}, expected {MAGIC:#010x}")
            }
            RingError::BadVersion(v) => write!(f, "ring header: version {v}, expected {VERSION}"),
            RingError::CapacityChanged { header, own } => {
                write!(
                    f,
                    "ring header: capacity {header}, the ring was made with {own}"
                )
            }
            RingError::PositionChanged { field, header, own } => {
                write!(f, "ring header: {field} {header}, bunker's own is {own}")
            }
            RingError::BadPositions {
                head,
                tail,
                capacity,
            } => write!(
                f,
                "ring header: head {head}, tail {tail} are impossible for capacity {capacity}"
            ),
            RingError::BadLength {
                len,
                available,
                bound,
            } => write!(
                f,
                "ring record: length {len} with {available} bytes pending (bound {bound})"
            ),
            RingError::Full { needed, free } => {
                write!(f, "ring full: a record of {needed} bytes, {free} free")
            }
            RingError::Access(detail) => write!(f, "ring access: {detail}"),
        }
    }
}

impl std::error::Error for RingError {}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Parses a header snapshot, checking magic, version and that the capacity is `own_capacity`
/// (bunker's copy, never the header's) and the positions consistent: `head <= tail`,
/// `tail - head <= capacity`.
pub fn parse_header(bytes: &[u8], own_capacity: u64) -> Result<Header, RingError> {
    if bytes.len() < HEADER_LEN {
        return Err(RingError::Short { len: bytes.len() });
    }
    let magic = u32_at(bytes, 0);
    if magic != MAGIC {
        return Err(RingError::BadMagic(magic));
    }
    let version = u32_at(bytes, 4);
    if version != VERSION {
        return Err(RingError::BadVersion(version));
    }
    let capacity = u64_at(bytes, 8);
    if capacity != own_capacity {
        return Err(RingError::CapacityChanged {
            header: capacity,
            own: own_capacity,
        });
    }
    let (head, tail) = (u64_at(bytes, OFF_HEAD), u64_at(bytes, OFF_TAIL));
    if head > tail || tail - head > capacity {
        return Err(RingError::BadPositions {
            head,
            tail,
            capacity,
        });
    }
    Ok(Header {
        capacity,
        head,
        tail,
    })
}

/// A new ring's header.
pub fn encode_header(capacity: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&capacity.to_le_bytes());
    h
}

/// For the reader: the bytes pending, given its own `head` (which the header must repeat).
pub fn pending(header: &Header, own_head: u64) -> Result<u64, RingError> {
    if header.head != own_head {
        return Err(RingError::PositionChanged {
            field: "head",
            header: header.head,
            own: own_head,
        });
    }
    Ok(header.tail - header.head)
}

/// For the writer: the free bytes, given its own `tail` (which the header must repeat).
pub fn free(header: &Header, own_tail: u64) -> Result<u64, RingError> {
    if header.tail != own_tail {
        return Err(RingError::PositionChanged {
            field: "tail",
            header: header.tail,
            own: own_tail,
        });
    }
    Ok(header.capacity - (header.tail - header.head))
}

/// Checks a record length prefix: the record must be wholly pending and within `bound`.
pub fn check_length(len: u32, available: u64, bound: u64) -> Result<u64, RingError> {
    let len = u64::from(len);
    if len > bound || LEN_PREFIX + len > available {
        return Err(RingError::BadLength {
            len,
            available,
            bound,
        });
    }
    Ok(len)
}

/// The data segments (offset into the data area, length) holding `count` bytes at position
/// `pos` of a ring of `capacity` (`count <= capacity`): one, or two when they wrap.
fn segments(capacity: u64, pos: u64, count: u64) -> [(u64, u64); 2] {
    let start = pos % capacity;
    let first = count.min(capacity - start);
    [(start, first), (0, count - first)]
}

/// Reads the next record of a whole-ring snapshot (header then data), as the live reader does:
/// the record's bytes and the reader's new head. `None` when nothing is pending. Pure, for the
/// fuzz target and tests; [`Ring::read_record`] is the same over the mapping.
pub fn read_record_snapshot(
    ring: &[u8],
    own_capacity: u64,
    own_head: u64,
    bound: u64,
) -> Result<Option<(Vec<u8>, u64)>, RingError> {
    let data_len = ring.len().saturating_sub(HEADER_LEN) as u64;
    if data_len < own_capacity || own_capacity == 0 {
        return Err(RingError::Short { len: ring.len() });
    }
    let copy = |offset: u64, out: &mut [u8]| -> Result<(), RingError> {
        let start = HEADER_LEN + offset as usize;
        let src = ring
            .get(start..start + out.len())
            .ok_or_else(|| RingError::Access(format!("offset {offset}")))?;
        out.copy_from_slice(src);
        Ok(())
    };
    read_with(&ring[..HEADER_LEN], own_capacity, own_head, bound, copy)
}

/// The reader's steps over a header snapshot and a way to copy data out.
fn read_with(
    header: &[u8],
    capacity: u64,
    own_head: u64,
    bound: u64,
    copy: impl Fn(u64, &mut [u8]) -> Result<(), RingError>,
) -> Result<Option<(Vec<u8>, u64)>, RingError> {
    let header = parse_header(header, capacity)?;
    let available = pending(&header, own_head)?;
    if available == 0 {
        return Ok(None);
    }
    if available < LEN_PREFIX {
        return Err(RingError::BadLength {
            len: 0,
            available,
            bound,
        });
    }
    let mut prefix = [0u8; LEN_PREFIX as usize];
    copy_wrapped(capacity, own_head, &mut prefix, &copy)?;
    let len = check_length(u32::from_le_bytes(prefix), available, bound)?;
    let mut record = vec![0u8; len as usize];
    copy_wrapped(capacity, own_head + LEN_PREFIX, &mut record, &copy)?;
    Ok(Some((record, own_head + LEN_PREFIX + len)))
}

fn copy_wrapped(
    capacity: u64,
    pos: u64,
    out: &mut [u8],
    copy: &impl Fn(u64, &mut [u8]) -> Result<(), RingError>,
) -> Result<(), RingError> {
    // Never more than the ring holds (a read past it would reach the next ring's bytes).
    if out.len() as u64 > capacity {
        return Err(RingError::Access(format!(
            "{} bytes from a ring of {capacity}",
            out.len()
        )));
    }
    let [(a_off, a_len), (b_off, _)] = segments(capacity, pos, out.len() as u64);
    let (a, b) = out.split_at_mut(a_len as usize);
    copy(a_off, a)?;
    if !b.is_empty() {
        copy(b_off, b)?;
    }
    Ok(())
}

/// Which end of a ring this side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Consumes records and owns `head`.
    Reader,
    /// Produces records and owns `tail`.
    Writer,
}

/// One ring in a shared mapping, from one side: its place, its capacity and the position this
/// side owns, all bunker's own copies.
#[derive(Debug)]
pub struct Ring {
    /// Offset of the header in the mapping.
    base: usize,
    capacity: u64,
    end: End,
    /// `head` for a reader, `tail` for a writer.
    own: u64,
}

impl Ring {
    /// The ring at `base` of `capacity`, writing its fresh header into `map`.
    pub fn create(
        map: &SharedMap,
        base: usize,
        capacity: u64,
        end: End,
    ) -> Result<Ring, RingError> {
        map.copy_in(base, &encode_header(capacity))
            .map_err(|e| RingError::Access(e.to_string()))?;
        Ok(Ring {
            base,
            capacity,
            end,
            own: 0,
        })
    }

    /// The ring at `base` of `capacity` as it is, this side's position at 0 (the other end's
    /// view of a ring bunker created).
    pub fn view(base: usize, capacity: u64, end: End) -> Ring {
        Ring {
            base,
            capacity,
            end,
            own: 0,
        }
    }

    /// Bytes of mapping a ring of `capacity` takes.
    pub fn footprint(capacity: u64) -> u64 {
        HEADER_LEN as u64 + capacity
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn header(&self, map: &SharedMap) -> Result<[u8; HEADER_LEN], RingError> {
        let mut h = [0u8; HEADER_LEN];
        map.copy_out(self.base, &mut h)
            .map_err(|e| RingError::Access(e.to_string()))?;
        Ok(h)
    }

    fn copy_data_out(&self, map: &SharedMap, offset: u64, out: &mut [u8]) -> Result<(), RingError> {
        map.copy_out(self.base + HEADER_LEN + offset as usize, out)
            .map_err(|e| RingError::Access(e.to_string()))
    }

    /// The next record, checked (header, positions, length within `bound`), and `head`
    /// advanced past it in the header; `None` when nothing is pending.
    pub fn read_record(
        &mut self,
        map: &SharedMap,
        bound: u64,
    ) -> Result<Option<Vec<u8>>, RingError> {
        debug_assert_eq!(self.end, End::Reader);
        let header = self.header(map)?;
        let read = read_with(&header, self.capacity, self.own, bound, |off, out| {
            self.copy_data_out(map, off, out)
        })?;
        let Some((record, head)) = read else {
            return Ok(None);
        };
        self.own = head;
        map.copy_in(self.base + OFF_HEAD, &head.to_le_bytes())
            .map_err(|e| RingError::Access(e.to_string()))?;
        Ok(Some(record))
    }

    /// Appends one record (length prefix and `data`), then publishes the new `tail`.
    pub fn write_record(&mut self, map: &SharedMap, data: &[u8]) -> Result<(), RingError> {
        debug_assert_eq!(self.end, End::Writer);
        let header = parse_header(&self.header(map)?, self.capacity)?;
        let room = free(&header, self.own)?;
        let needed = LEN_PREFIX + data.len() as u64;
        let len = u32::try_from(data.len()).map_err(|_| RingError::Full { needed, free: room })?;
        if needed > room {
            return Err(RingError::Full { needed, free: room });
        }
        let mut bytes = Vec::with_capacity(needed as usize);
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(data);
        let mut from = 0usize;
        for (off, n) in segments(self.capacity, self.own, needed) {
            let n = n as usize;
            map.copy_in(
                self.base + HEADER_LEN + off as usize,
                &bytes[from..from + n],
            )
            .map_err(|e| RingError::Access(e.to_string()))?;
            from += n;
        }
        self.own += needed;
        map.copy_in(self.base + OFF_TAIL, &self.own.to_le_bytes())
            .map_err(|e| RingError::Access(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(capacity: u64, head: u64, tail: u64, data: &[(u64, &[u8])]) -> Vec<u8> {
        let mut r = encode_header(capacity).to_vec();
        r[OFF_HEAD..OFF_HEAD + 8].copy_from_slice(&head.to_le_bytes());
        r[OFF_TAIL..OFF_TAIL + 8].copy_from_slice(&tail.to_le_bytes());
        r.resize(HEADER_LEN + capacity as usize, 0);
        for (pos, bytes) in data {
            for (i, b) in bytes.iter().enumerate() {
                r[HEADER_LEN + ((pos + i as u64) % capacity) as usize] = *b;
            }
        }
        r
    }

    #[test]
    fn a_record_is_read_and_a_wrapped_one_too() {
        let r = ring(16, 0, 7, &[(0, &[3, 0, 0, 0, b'a', b'b', b'c'])]);
        assert_eq!(
            read_record_snapshot(&r, 16, 0, 100),
            Ok(Some((b"abc".to_vec(), 7)))
        );
        let r = ring(16, 30, 37, &[(30, &[3, 0, 0, 0, b'x', b'y', b'z'])]);
        assert_eq!(
            read_record_snapshot(&r, 16, 30, 100),
            Ok(Some((b"xyz".to_vec(), 37)))
        );
        let empty = ring(16, 5, 5, &[]);
        assert_eq!(read_record_snapshot(&empty, 16, 5, 100), Ok(None));
    }

    #[test]
    fn every_lie_of_the_header_is_refused() {
        let ok = ring(16, 0, 7, &[(0, &[3, 0, 0, 0, b'a', b'b', b'c'])]);
        let mut bad = ok.clone();
        bad[0] ^= 1;
        assert!(matches!(
            read_record_snapshot(&bad, 16, 0, 100),
            Err(RingError::BadMagic(_))
        ));
        let mut bad = ok.clone();
        bad[4] = 2;
        assert!(matches!(
            read_record_snapshot(&bad, 16, 0, 100),
            Err(RingError::BadVersion(2))
        ));
        let mut bad = ok.clone();
        bad[8] = 8;
        assert!(matches!(
            read_record_snapshot(&bad, 16, 0, 100),
            Err(RingError::CapacityChanged { .. })
        ));
        let behind = ring(16, 9, 7, &[]);
        assert!(matches!(
            read_record_snapshot(&behind, 16, 9, 100),
            Err(RingError::BadPositions { .. })
        ));
        let overfull = ring(16, 0, 17, &[]);
        assert!(matches!(
            read_record_snapshot(&overfull, 16, 0, 100),
            Err(RingError::BadPositions { .. })
        ));
        assert!(matches!(
            read_record_snapshot(&ok, 16, 2, 100),
            Err(RingError::PositionChanged { .. })
        ));
        let huge = ring(16, 0, 7, &[(0, &[0xff, 0xff, 0xff, 0xff])]);
        assert!(matches!(
            read_record_snapshot(&huge, 16, 0, 100),
            Err(RingError::BadLength { .. })
        ));
        assert!(matches!(
            read_record_snapshot(&ok, 16, 0, 2),
            Err(RingError::BadLength { .. })
        ));
        assert!(matches!(
            read_record_snapshot(&ok[..10], 16, 0, 100),
            Err(RingError::Short { .. })
        ));
    }
}

/// The fuzz target's property on stable, over random rings: whatever the worker wrote, the
/// reader never panics, and what it accepts is consistent with bunker's own positions.
#[cfg(test)]
mod random_rings {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn random_bytes_never_break_the_reader(
            capacity in 1u64..200,
            head in 0u64..400,
            bound in 0u64..300,
            ring in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            if let Ok(Some((record, new_head))) = read_record_snapshot(&ring, capacity, head, bound) {
                prop_assert!(record.len() as u64 <= bound);
                prop_assert_eq!(new_head, head + LEN_PREFIX + record.len() as u64);
            }
        }

        #[test]
        fn a_plausible_header_with_random_positions_is_checked(
            capacity in 8u64..64,
            head in 0u64..1000,
            tail in 0u64..1000,
            len in any::<u32>(),
            data in proptest::collection::vec(any::<u8>(), 64),
        ) {
            let mut ring = encode_header(capacity).to_vec();
            ring[OFF_HEAD..OFF_HEAD + 8].copy_from_slice(&head.to_le_bytes());
            ring[OFF_TAIL..OFF_TAIL + 8].copy_from_slice(&tail.to_le_bytes());
            ring.extend_from_slice(&data[..capacity as usize]);
            for (i, b) in len.to_le_bytes().iter().enumerate() {
                let pos = HEADER_LEN + ((head % capacity) as usize + i) % capacity as usize;
                ring[pos] = *b;
            }
            match read_record_snapshot(&ring, capacity, head, 1 << 20) {
                Ok(Some((record, _))) => {
                    prop_assert!(tail >= head && tail - head <= capacity);
                    prop_assert_eq!(record.len() as u64, u64::from(len));
                    prop_assert!(LEN_PREFIX + u64::from(len) <= tail - head);
                }
                Ok(None) => prop_assert_eq!(head, tail),
                Err(_) => {}
            }
        }
    }
}
