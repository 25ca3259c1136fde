//! The one error type of the syscall layer.

use std::fmt;

/// A failed system call: which call, with what arguments, and the errno it returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysError {
    /// The syscall and its arguments, e.g. `mount("/data", "/newroot/data", MS_BIND)`.
    pub call: String,
    /// The raw errno.
    pub errno: i32,
}

impl SysError {
    /// Captures `errno` right after a failed call.
    pub fn last(call: impl Into<String>) -> SysError {
        SysError {
            call: call.into(),
            errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        }
    }

    /// Builds an error from an explicit errno value.
    pub fn from_errno(call: impl Into<String>, errno: i32) -> SysError {
        SysError {
            call: call.into(),
            errno,
        }
    }

    /// The symbolic errno name (`ENOENT`), for messages users can search for.
    pub fn errno_name(&self) -> &'static str {
        errno_name(self.errno)
    }
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ({})",
            self.call,
            self.errno_name(),
            std::io::Error::from_raw_os_error(self.errno)
        )
    }
}

impl std::error::Error for SysError {}

/// Result of a syscall wrapper.
pub type SysResult<T> = Result<T, SysError>;

/// Symbolic names of the errno values sandbox setup can meet.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ELOOP => "ELOOP",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::EPIPE => "EPIPE",
        libc::ENOTCONN => "ENOTCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        _ => "E?",
    }
}

/// `A|B|C` for the named bits set in `flags` (or `0`), so errors show flags as a reader writes
/// them: `mount(..., MS_BIND|MS_REC)`.
pub fn flag_names(flags: u64, names: &[(u64, &str)]) -> String {
    let set: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    if set.is_empty() {
        "0".to_string()
    } else {
        set.join("|")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_names_spell_set_bits_or_zero() {
        let names = [(1, "A"), (2, "B"), (8, "D")];
        assert_eq!(flag_names(0, &names), "0");
        assert_eq!(flag_names(1 | 8, &names), "A|D");
        assert_eq!(flag_names(4, &names), "0", "unnamed bits are not shown");
        assert_eq!(
            crate::process::clone_flags_str(libc::CLONE_NEWUSER | libc::CLONE_NEWNET),
            "CLONE_NEWUSER|CLONE_NEWNET"
        );
        assert_eq!(
            crate::mount::ms_flags_str(libc::MS_BIND | libc::MS_REC),
            "MS_BIND|MS_REC"
        );
    }
}
