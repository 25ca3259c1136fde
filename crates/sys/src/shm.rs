//! Shared memory between bunker and a sandboxed worker: a sealed memfd and a shared mapping of
//! it. The other side of the mapping is hostile and runs concurrently, so [`SharedMap`] never
//! hands out a reference into it: bytes are copied in and out at bounds-checked offsets, and
//! whatever is read is a snapshot to be validated by the caller.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::error::{SysError, SysResult};

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`.
pub fn memfd_create(name: &str) -> SysResult<OwnedFd> {
    let call = || format!("memfd_create({name:?}, MFD_CLOEXEC|MFD_ALLOW_SEALING)");
    let cname = CString::new(name).map_err(|_| SysError::from_errno(call(), libc::EINVAL))?;
    // SAFETY: a NUL-terminated name and integer flags.
    let fd =
        unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(SysError::last(call()));
    }
    // SAFETY: memfd_create returned a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `ftruncate(fd, len)`.
pub fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> SysResult<()> {
    let call = || format!("ftruncate(fd {}, {len})", fd.as_raw_fd());
    let len = libc::off_t::try_from(len).map_err(|_| SysError::from_errno(call(), libc::EFBIG))?;
    // SAFETY: integer arguments only.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } != 0 {
        return Err(SysError::last(call()));
    }
    Ok(())
}

/// The seals that fix a memfd's size for good: no grow, no shrink, no further seal.
pub const SIZE_SEALS: libc::c_int = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;

/// `fcntl(fd, F_ADD_SEALS, seals)`.
pub fn add_seals(fd: BorrowedFd<'_>, seals: libc::c_int) -> SysResult<()> {
    // SAFETY: integer arguments only.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(SysError::last(format!(
            "fcntl(fd {}, F_ADD_SEALS, {seals:#x})",
            fd.as_raw_fd()
        )));
    }
    Ok(())
}

/// `fcntl(fd, F_GET_SEALS)`.
pub fn seals(fd: BorrowedFd<'_>) -> SysResult<libc::c_int> {
    // SAFETY: integer arguments only.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if r < 0 {
        return Err(SysError::last(format!(
            "fcntl(fd {}, F_GET_SEALS)",
            fd.as_raw_fd()
        )));
    }
    Ok(r)
}

/// A `MAP_SHARED` read/write mapping of a whole file, shared with a process that may write to it
/// at any moment. Access is by copy only ([`copy_out`](Self::copy_out),
/// [`copy_in`](Self::copy_in)), bounds-checked against the length it was mapped with; the file
/// must be sealed against shrinking (a shrunk file would turn accesses into SIGBUS).
#[derive(Debug)]
pub struct SharedMap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; every access copies through raw
// pointers, never through references, so sharing the value between threads is no different
// from sharing it with the other process.
unsafe impl Send for SharedMap {}
// SAFETY: as above.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)`.
    pub fn map(fd: BorrowedFd<'_>, len: usize) -> SysResult<SharedMap> {
        let call = || {
            format!(
                "mmap(NULL, {len}, PROT_READ|PROT_WRITE, MAP_SHARED, fd {}, 0)",
                fd.as_raw_fd()
            )
        };
        if len == 0 {
            return Err(SysError::from_errno(call(), libc::EINVAL));
        }
        // SAFETY: a new mapping chosen by the kernel; nothing of ours is overlapped.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(SysError::last(call()));
        }
        Ok(SharedMap {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The mapped length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: [`map`](Self::map) refuses a zero length).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: usize, count: usize, what: &str) -> SysResult<()> {
        match offset.checked_add(count) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(SysError::from_errno(
                format!(
                    "{what} {count} bytes at offset {offset} of a {}-byte mapping",
                    self.len
                ),
                libc::EFAULT,
            )),
        }
    }

    /// Copies `out.len()` bytes at `offset` into `out`: a snapshot, which the other side may
    /// change right after (or during) the copy.
    pub fn copy_out(&self, offset: usize, out: &mut [u8]) -> SysResult<()> {
        self.check(offset, out.len(), "copy out")?;
        // SAFETY: `offset + out.len() <= self.len` (checked above), so the source lies inside
        // the live mapping; `out` is a distinct local buffer. The other process may write the
        // source concurrently: the bytes copied are then some mix of old and new values, which
        // callers treat as untrusted input; no reference into the mapping is ever formed.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.add(offset), out.as_mut_ptr(), out.len());
        }
        Ok(())
    }

    /// Copies `data` into the mapping at `offset`.
    pub fn copy_in(&self, offset: usize, data: &[u8]) -> SysResult<()> {
        self.check(offset, data.len(), "copy in")?;
        // SAFETY: the destination lies inside the live mapping (checked above) and `data` is a
        // distinct buffer; concurrent access by the other process can only garble the bytes it
        // reads, which its side validates.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(offset), data.len());
        }
        Ok(())
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once; no reference into it exists.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_sealed_memfd_keeps_its_size_and_maps_shared() {
        let fd = memfd_create("bunker-test").unwrap_or_else(|e| panic!("{e}"));
        ftruncate(fd.as_fd(), 8192).unwrap_or_else(|e| panic!("{e}"));
        add_seals(fd.as_fd(), SIZE_SEALS).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(seals(fd.as_fd()).unwrap_or(0) & SIZE_SEALS, SIZE_SEALS);
        assert!(
            ftruncate(fd.as_fd(), 4096).is_err(),
            "shrink must be refused"
        );
        assert!(
            ftruncate(fd.as_fd(), 16384).is_err(),
            "grow must be refused"
        );
        assert!(
            add_seals(fd.as_fd(), libc::F_SEAL_WRITE).is_err(),
            "sealed for seals"
        );
        let a = SharedMap::map(fd.as_fd(), 8192).unwrap_or_else(|e| panic!("{e}"));
        let b = SharedMap::map(fd.as_fd(), 8192).unwrap_or_else(|e| panic!("{e}"));
        a.copy_in(8190, b"hi").unwrap_or_else(|e| panic!("{e}"));
        let mut got = [0u8; 2];
        b.copy_out(8190, &mut got).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&got, b"hi");
        assert!(a.copy_in(8191, b"hi").is_err());
        assert!(b.copy_out(usize::MAX, &mut got).is_err());
    }
}
