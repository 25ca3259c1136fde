//! The page cache of one file: how much of it is resident, and bringing the rest in.
//!
//! A page entering the page cache is charged to the memory cgroup of the task that brought it
//! in, and stays charged there while it is cached; `spawn.rs` uses these calls so that the
//! program's own code is charged to the supervisor rather than to the sandbox.

use std::os::fd::RawFd;

use crate::error::{SysError, SysResult};

/// `cachestat(2)`'s syscall number (Linux 6.5+; the same on every architecture).
const SYS_CACHESTAT: libc::c_long = 451;

/// `struct cachestat_range`.
#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

/// `struct cachestat`: counts in pages.
#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// The page size, for turning a file length into pages.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let r = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if r > 0 {
        r as u64
    } else {
        4096
    }
}

/// How many pages of the whole file behind `fd` are in the page cache (including pages whose
/// read is still in flight), by `cachestat(2)`: one walk of the file's cache index, with no
/// mapping made. ENOSYS before Linux 6.5 (then [`resident_pages_mincore`] answers).
pub fn cached_pages(fd: RawFd) -> SysResult<u64> {
    // `len: 0` is "to the end of the file".
    let range = CachestatRange { off: 0, len: 0 };
    let mut stat = Cachestat::default();
    // SAFETY: `range` and `stat` are valid, properly laid out structs that outlive the call;
    // the kernel reads the first and writes the second. Flags must be 0.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            fd,
            &range as *const CachestatRange,
            &mut stat as *mut Cachestat,
            0 as libc::c_uint,
        )
    };
    if r != 0 {
        return Err(SysError::last(format!("cachestat(fd {fd}, 0..end)")));
    }
    Ok(stat.nr_cache)
}

/// How many of the first `len` bytes' pages of the file behind `fd` are resident, by mapping
/// them (without touching them) and asking `mincore(2)`: the fallback for kernels without
/// `cachestat`.
pub fn resident_pages_mincore(fd: RawFd, len: u64) -> SysResult<u64> {
    if len == 0 {
        return Ok(0);
    }
    let call = || format!("mincore(mmap(fd {fd}, {len} bytes, PROT_READ, MAP_SHARED))");
    let len_usize = usize::try_from(len).map_err(|_| SysError::from_errno(call(), libc::EFBIG))?;
    // SAFETY: a fresh read-only shared mapping at an address of the kernel's choosing: it
    // aliases no Rust object, and is never read here, only unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len_usize,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(SysError::last(call()));
    }
    let pages = len_usize.div_ceil(page_size() as usize);
    let mut vec = vec![0u8; pages];
    // SAFETY: `addr..addr+len_usize` is the mapping made above; `vec` holds one byte per page
    // of it, as mincore requires.
    let r = unsafe { libc::mincore(addr, len_usize, vec.as_mut_ptr()) };
    let result = if r != 0 {
        Err(SysError::last(call()))
    } else {
        Ok(vec.iter().filter(|b| **b & 1 != 0).count() as u64)
    };
    // SAFETY: unmaps exactly the mapping made above, which nothing refers to any more.
    unsafe { libc::munmap(addr, len_usize) };
    result
}

/// `posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED)`: the kernel allocates page cache for every
/// missing page of the file (charging it to the caller's memory cgroup) and starts reading it;
/// it returns without waiting for the reads to finish.
pub fn fadvise_willneed(fd: RawFd) -> SysResult<()> {
    // SAFETY: no memory is passed; an invalid fd is reported as EBADF.
    let r = unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_WILLNEED) };
    if r != 0 {
        // posix_fadvise returns the error number instead of setting errno.
        return Err(SysError::from_errno(
            format!("posix_fadvise(fd {fd}, 0, 0, POSIX_FADV_WILLNEED)"),
            r,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_file_just_written_is_all_cached_by_either_measure() {
        let path = std::env::temp_dir().join(format!("bunker-cache-test-{}", std::process::id()));
        let mut f = std::fs::File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f.write_all(&vec![7u8; 3 * 4096 + 5]).unwrap();
        let pages = (3 * 4096 + 5u64).div_ceil(page_size());
        match cached_pages(f.as_raw_fd()) {
            Ok(n) => assert_eq!(n, pages),
            Err(e) => assert_eq!(e.errno, libc::ENOSYS, "{e}"),
        }
        assert_eq!(
            resident_pages_mincore(f.as_raw_fd(), 3 * 4096 + 5).unwrap(),
            pages
        );
        fadvise_willneed(f.as_raw_fd()).unwrap();
    }

    #[test]
    fn errors_name_the_call_and_fd() {
        let e = fadvise_willneed(-1).unwrap_err();
        assert_eq!(e.errno, libc::EBADF);
        assert!(e.call.contains("posix_fadvise(fd -1"), "{}", e.call);
        let e = cached_pages(-1).unwrap_err();
        assert!(e.call.starts_with("cachestat(fd -1"), "{}", e.call);
    }
}
