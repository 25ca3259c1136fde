//! Bytes that travel as JSON without loss: UTF-8 text as it is, anything else as base64.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A program's bytes. Serialized as `{"utf8": "text"}` when the bytes are valid UTF-8 and as
/// `{"base64": "..."}` (standard alphabet, padded) otherwise, so a reader can always get back the
/// exact bytes (`Data::to_bytes`) and text stays readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Data {
    /// The bytes, which are valid UTF-8.
    Utf8(String),
    /// The bytes, base64-encoded (RFC 4648, standard alphabet, with padding).
    Base64(String),
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

impl Data {
    /// The bytes as text when they are UTF-8, otherwise base64.
    pub fn from_bytes(bytes: Vec<u8>) -> Data {
        match String::from_utf8(bytes) {
            Ok(text) => Data::Utf8(text),
            Err(e) => Data::Base64(encode(e.as_bytes())),
        }
    }

    /// The exact bytes; `None` when a `base64` value is not valid base64.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Data::Utf8(text) => Some(text.as_bytes().to_vec()),
            Data::Base64(b64) => decode(b64),
        }
    }

    /// The text, when the bytes are UTF-8.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Data::Utf8(text) => Some(text),
            Data::Base64(_) => None,
        }
    }
}

fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for (index, quad) in text.chunks(4).enumerate() {
        let last = index == text.len() / 4 - 1;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            let v = ALPHABET.iter().position(|&a| a == c)?;
            n = (n << 6) | v as u32;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_stays_text_and_other_bytes_round_trip_through_base64() {
        assert_eq!(
            Data::from_bytes(b"hi\n".to_vec()),
            Data::Utf8("hi\n".into())
        );
        for bytes in [
            &b"\xff"[..],
            b"\xff\xfe",
            b"\xff\xfe\xfd",
            b"\x00\xc3\x28 binary \x80",
        ] {
            let data = Data::from_bytes(bytes.to_vec());
            assert!(matches!(data, Data::Base64(_)), "{data:?}");
            assert_eq!(data.to_bytes().as_deref(), Some(bytes));
        }
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(decode("Zm8="), Some(b"fo".to_vec()));
        assert_eq!(decode("Zm8"), None);
        assert_eq!(decode("Z=8="), None);
        assert_eq!(decode("Zm8*"), None);
    }

    #[test]
    fn serialized_as_a_tagged_object() {
        let json = serde_json::to_string(&Data::from_bytes(vec![0xff])).unwrap_or_default();
        assert_eq!(json, r#"{"base64":"/w=="}"#);
        let back: Data =
            serde_json::from_str(r#"{"utf8":"ok"}"#).unwrap_or(Data::Utf8(String::new()));
        assert_eq!(back.as_text(), Some("ok"));
    }
}
