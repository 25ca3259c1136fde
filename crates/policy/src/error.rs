//! Load errors: which file, where in it, and what was expected.

use std::fmt;

use bunker_api::{ApiError, ErrorCode, PolicyProblem};
use serde::Serialize;

/// The kind of mistake, as a stable `snake_case` code. Defined in the API contract, where
/// clients see it (`ApiError::policy`).
pub use bunker_api::PolicyErrorKind as ErrorKind;

/// A policy that cannot be loaded. Displays as `<file>: <json path>: <message>`, e.g.
/// `policy.json: limits.memory: expected a size like "64MB" or a number of bytes, found "lots"`
/// (without the JSON path when the error is about the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct PolicyError {
    /// What kind of mistake, as a stable code.
    pub kind: ErrorKind,
    /// The policy file as named by the caller or by `extends`, a built-in profile name
    /// (`runtime:bun`), or `command line` for flags.
    pub file: String,
    /// Where in the document: `allow.net[2]`, `limits.memory`; empty for the whole file.
    pub json_path: String,
    /// What was expected and what was found.
    pub message: String,
}

impl PolicyError {
    pub fn new(
        kind: ErrorKind,
        file: impl Into<String>,
        json_path: impl Into<String>,
        message: impl Into<String>,
    ) -> PolicyError {
        PolicyError {
            kind,
            file: file.into(),
            json_path: json_path.into(),
            message: message.into(),
        }
    }

    /// The kind of mistake.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.json_path.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.json_path, self.message)
        }
    }
}

impl From<&PolicyError> for ApiError {
    fn from(e: &PolicyError) -> ApiError {
        ApiError {
            code: ErrorCode::PolicyInvalid,
            message: e.to_string(),
            step: None,
            policy: Some(PolicyProblem {
                kind: e.kind,
                file: e.file.clone(),
                json_path: e.json_path.clone(),
            }),
        }
    }
}

/// A mistake found before its place in the document is known: its kind, decided where it is
/// found, and what was expected and found. [`PolicyError`] adds the file and JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ErrorKind,
    pub message: String,
}

impl Problem {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Problem {
        Problem {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

thread_local! {
    /// The last error this crate's visitors raised while deserializing: serde carries only the
    /// message out, so its kind is kept here (on the deserializing thread) for [`raised_kind`].
    static RAISED: std::cell::RefCell<Option<Problem>> = const { std::cell::RefCell::new(None) };
}

/// A deserialization error of `kind`, raised by one of this crate's visitors.
pub(crate) fn invalid<E: serde::de::Error>(kind: ErrorKind, message: String) -> E {
    let error = E::custom(&message);
    RAISED.with(|r| *r.borrow_mut() = Some(Problem { kind, message }));
    error
}

/// The kind of the error a visitor raised with exactly `message`, if one did (and forgets it);
/// `None` for serde's own errors.
pub(crate) fn raised_kind(message: &str) -> Option<ErrorKind> {
    RAISED
        .with(|r| r.borrow_mut().take())
        .filter(|p| p.message == message)
        .map(|p| p.kind)
}
