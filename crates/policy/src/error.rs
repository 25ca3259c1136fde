//! Load errors: which file, where in it, and what was expected.

use std::fmt;

use serde::Serialize;

/// Stable error codes, for clients that branch on the kind of mistake. Serialized (and
/// returned by [`ErrorKind::code`]) in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// Not valid JSON.
    Syntax,
    /// A key the language does not have.
    UnknownKey,
    /// A value of the wrong type or an unknown enum value.
    InvalidValue,
    /// A size that is not a size.
    InvalidSize,
    /// A duration that is not a duration.
    InvalidDuration,
    /// A limit that is zero or negative.
    InvalidLimit,
    /// A path that cannot be resolved.
    InvalidPath,
    /// A glob that does not compile, or a glob in an allow list.
    InvalidGlob,
    /// A net rule that is not a host, wildcard, address or CIDR.
    InvalidNetRule,
    /// An environment variable name that cannot be one.
    InvalidEnvName,
    /// An empty string.
    EmptyString,
    /// The same thing both allowed and denied.
    Contradiction,
    /// `~` used while HOME is not set.
    MissingHome,
    /// `extends` loops back on itself.
    ExtendsCycle,
    /// `extends` names a built-in profile that does not exist.
    UnknownProfile,
    /// A runtime profile whose program is not on PATH.
    RuntimeNotFound,
    /// A setting no layer of this version enforces (see `unenforced`).
    NotEnforced,
}

impl ErrorKind {
    /// The stable code, e.g. `"unknown_key"`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::Syntax => "syntax",
            ErrorKind::UnknownKey => "unknown_key",
            ErrorKind::InvalidValue => "invalid_value",
            ErrorKind::InvalidSize => "invalid_size",
            ErrorKind::InvalidDuration => "invalid_duration",
            ErrorKind::InvalidLimit => "invalid_limit",
            ErrorKind::InvalidPath => "invalid_path",
            ErrorKind::InvalidGlob => "invalid_glob",
            ErrorKind::InvalidNetRule => "invalid_net_rule",
            ErrorKind::InvalidEnvName => "invalid_env_name",
            ErrorKind::EmptyString => "empty_string",
            ErrorKind::Contradiction => "contradiction",
            ErrorKind::MissingHome => "missing_home",
            ErrorKind::ExtendsCycle => "extends_cycle",
            ErrorKind::UnknownProfile => "unknown_profile",
            ErrorKind::RuntimeNotFound => "runtime_not_found",
            ErrorKind::NotEnforced => "not_enforced",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

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

/// Classifies a message produced while deserializing (by serde or by this crate's visitors).
pub(crate) fn kind_of_message(message: &str) -> ErrorKind {
    if message.starts_with("unknown key") {
        ErrorKind::UnknownKey
    } else if message.starts_with(crate::units::SIZE_EXPECTED) || message.starts_with("size ") {
        ErrorKind::InvalidSize
    } else if message.starts_with(crate::units::DURATION_EXPECTED)
        || message.starts_with("duration ")
    {
        ErrorKind::InvalidDuration
    } else if message.starts_with(crate::units::COUNT_EXPECTED)
        || message.starts_with(crate::units::CORES_EXPECTED)
    {
        ErrorKind::InvalidLimit
    } else {
        ErrorKind::InvalidValue
    }
}
