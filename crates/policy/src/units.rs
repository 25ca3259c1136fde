//! Human units: byte sizes ("50MB", "1.5GiB", 1024) and durations ("1.5s", "200ms", "2m").

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A byte count, written as an integer or a string with a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ByteSize {
    Bytes(u64),
    Text(String),
}

/// A duration, written as a string with a unit ("5s", "250ms") or a number of seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Span {
    Seconds(f64),
    Text(String),
}

#[allow(dead_code)]
fn _unused(_: Duration) {}
