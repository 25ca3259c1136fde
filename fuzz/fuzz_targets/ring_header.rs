//! Fuzzes what bunker parses of a worker's ring (`bunker_sandbox::worker::ring`): a whole-ring
//! snapshot (header, then data) read with the reader's own capacity, head and bound, the same
//! steps the live reader takes over the shared mapping. The first input bytes pick bunker's
//! side (capacity, head, bound); the rest is the ring as the worker left it.
#![no_main]

use bunker_sandbox::worker::ring::{parse_header, read_record_snapshot, HEADER_LEN, LEN_PREFIX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((own, ring)) = data.split_first_chunk::<3>() else {
        return;
    };
    let capacity = u64::from(own[0]) + 1;
    let head = u64::from(own[1]);
    let bound = u64::from(own[2]);
    if let Ok(h) = parse_header(ring, capacity) {
        assert!(h.head <= h.tail && h.tail - h.head <= capacity);
        assert_eq!(h.capacity, capacity);
    }
    if let Ok(Some((record, new_head))) = read_record_snapshot(ring, capacity, head, bound) {
        assert!(record.len() as u64 <= bound);
        assert_eq!(new_head, head + LEN_PREFIX + record.len() as u64);
        assert!(ring.len() >= HEADER_LEN);
    }
});
