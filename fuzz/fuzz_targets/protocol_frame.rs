//! Fuzzes what `bunker serve` parses of a client's bytes: the frame at the start of a buffer
//! (`bunker_api::protocol::parse_frame`) and the JSON of a complete frame as a client frame.
//! The first input byte picks the size bound (so small bounds are reached), the rest is the
//! stream.
#![no_main]

use bunker_api::protocol::{encode_frame, parse_frame, ClientFrame, FrameError, LENGTH_PREFIX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&bound, stream)) = data.split_first() else {
        return;
    };
    let max = usize::from(bound) * 16;
    match parse_frame(stream, max) {
        Ok(Some(frame)) => {
            assert_eq!(frame.consumed, LENGTH_PREFIX + frame.payload.len());
            assert!(frame.payload.len() <= max && !frame.payload.is_empty());
            // The frame is exactly what encoding its payload gives back.
            let encoded = encode_frame(frame.payload.as_bytes()).unwrap_or_default();
            assert_eq!(&stream[..frame.consumed], encoded.as_slice());
            let _ = serde_json::from_str::<ClientFrame>(frame.payload);
        }
        // Incomplete: no frame fits in what is there, and the prefix announced nothing too big.
        Ok(None) => {
            if let Some(prefix) = stream.first_chunk::<LENGTH_PREFIX>() {
                let length = u32::from_be_bytes(*prefix) as usize;
                assert!(length <= max && stream.len() < LENGTH_PREFIX + length);
            }
        }
        Err(FrameError::TooLarge { length, max: m }) => assert!(length > m as u64 && m == max),
        Err(FrameError::Empty) => assert_eq!(&stream[..LENGTH_PREFIX], &[0, 0, 0, 0]),
        Err(FrameError::NotUtf8 { valid_up_to }) => {
            let length = u32::from_be_bytes(*stream.first_chunk::<LENGTH_PREFIX>().unwrap_or(&[0; 4]));
            assert!(valid_up_to < length as usize);
        }
    }
});
