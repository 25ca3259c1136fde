//! Errors of cgroup detection and management.

use std::path::PathBuf;

/// A cgroup operation that failed, naming the file or directory.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A file operation on cgroupfs (or procfs) failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was attempted: `mkdir`, `write "52428800" to`, `read`, `rmdir`.
        op: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No mounted hierarchy holds the controller (or the supervisor's cgroup is not reachable
    /// through the mounts).
    #[error("no cgroup hierarchy with the {controller} controller is mounted")]
    NotMounted { controller: String },
    /// The hierarchy exists but the controller cannot be used below the supervisor's cgroup.
    #[error("{controller} controller unavailable in {}: {reason}", path.display())]
    Unavailable {
        controller: String,
        path: PathBuf,
        reason: String,
    },
    /// A cgroup or proc file had unexpected contents.
    #[error("cannot parse {}: {detail}", path.display())]
    Parse { path: PathBuf, detail: String },
    /// A value that cannot be written as a limit.
    #[error("invalid {what}: {detail}")]
    Invalid { what: String, detail: String },
}

impl CgroupError {
    pub(crate) fn io(
        op: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        CgroupError::Io {
            op: op.into(),
            path: path.into(),
            source,
        }
    }

    /// Whether this is a permission problem (rootless without delegation, read-only cgroupfs),
    /// as opposed to a missing controller or a bug.
    pub fn is_permission_denied(&self) -> bool {
        match self {
            CgroupError::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS)
            ),
            _ => false,
        }
    }
}
