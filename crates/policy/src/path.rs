//! Path rules: absolute paths for grants; absolute paths or globs for denials.

use std::path::PathBuf;

use serde::Serialize;

/// One entry of a deny list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathPattern {
    /// This path and everything under it.
    Path(PathBuf),
    /// A glob over absolute paths (`**/*.key`; a bare `.env` means `**/.env`).
    Glob(String),
}
