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

/// How many pages of `len` bytes from `offset` in the file behind `fd` are in the page cache
/// (including pages whose read is still in flight), by `cachestat(2)`: a walk of that part of
/// the file's cache index, with no mapping made. ENOSYS before Linux 6.5 (then
/// [`resident_pages_mincore`] answers). `len` 0 means to the end of the file.
pub fn cached_pages(fd: RawFd, offset: u64, len: u64) -> SysResult<u64> {
    let range = CachestatRange { off: offset, len };
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
        return Err(SysError::last(format!(
            "cachestat(fd {fd}, offset {offset}, len {len})"
        )));
    }
    Ok(stat.nr_cache)
}

/// How many pages of the given `(offset, len)` ranges of the file behind `fd` (`file_len`
/// bytes long; offsets page-aligned) are resident, by mapping the file (without touching it)
/// and asking `mincore(2)` about each range: the fallback for kernels without `cachestat`.
pub fn resident_pages_mincore(fd: RawFd, file_len: u64, ranges: &[(u64, u64)]) -> SysResult<u64> {
    if file_len == 0 {
        return Ok(0);
    }
    let call = || format!("mincore(mmap(fd {fd}, {file_len} bytes, PROT_READ, MAP_SHARED))");
    let map_len =
        usize::try_from(file_len).map_err(|_| SysError::from_errno(call(), libc::EFBIG))?;
    // SAFETY: a fresh read-only shared mapping at an address of the kernel's choosing: it
    // aliases no Rust object, and is never read here, only unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(SysError::last(call()));
    }
    let page = page_size() as usize;
    let mut resident = 0;
    let mut result = Ok(());
    for &(offset, len) in ranges {
        // Clipped to the mapping: offsets past it are not asked about.
        let (Ok(start), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            continue;
        };
        let len = len.min(map_len.saturating_sub(start));
        if len == 0 || start % page != 0 {
            continue;
        }
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: `addr+start..addr+start+len` lies inside the mapping made above (page-aligned
        // start, clipped length); `vec` holds one byte per page of it, as mincore requires.
        let r =
            unsafe { libc::mincore(addr.cast::<u8>().add(start).cast(), len, vec.as_mut_ptr()) };
        if r != 0 {
            result = Err(SysError::last(format!("{} at offset {start}", call())));
            break;
        }
        resident += vec.iter().filter(|b| **b & 1 != 0).count() as u64;
    }
    // SAFETY: unmaps exactly the mapping made above, which nothing refers to any more.
    unsafe { libc::munmap(addr, map_len) };
    result.map(|()| resident)
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
        match cached_pages(f.as_raw_fd(), 0, 0) {
            Ok(n) => assert_eq!(n, pages),
            Err(e) => assert_eq!(e.errno, libc::ENOSYS, "{e}"),
        }
        if let Ok(n) = cached_pages(f.as_raw_fd(), 4096, 4096) {
            assert_eq!(n, 1);
        }
        let len = 3 * 4096 + 5;
        assert_eq!(
            resident_pages_mincore(f.as_raw_fd(), len, &[(0, len)]).unwrap(),
            pages
        );
        // Ranges past the end are clipped; pages are counted per range.
        assert_eq!(
            resident_pages_mincore(f.as_raw_fd(), len, &[(0, 4096), (8192, 1 << 20)]).unwrap(),
            3
        );
        fadvise_willneed(f.as_raw_fd()).unwrap();
    }

    #[test]
    fn errors_name_the_call_and_fd() {
        let e = fadvise_willneed(-1).unwrap_err();
        assert_eq!(e.errno, libc::EBADF);
        assert!(e.call.contains("posix_fadvise(fd -1"), "{}", e.call);
        let e = cached_pages(-1, 0, 0).unwrap_err();
        assert!(e.call.starts_with("cachestat(fd -1"), "{}", e.call);
    }
}
