//! The program's own code in the page cache before the sandbox starts, charged to the
//! supervisor's memory cgroup (spawn.rs, step 2).
//!
//! A page entering the page cache is charged to the cgroup of whoever faults or reads it in
//! first, and stays charged there while it is cached. With a cold cache the runtime's binary
//! (Bun's is 100 MB) would be charged to the sandbox, and its memory limit would count the
//! runtime's code rather than what the program allocates — a limit that a warm cache (pages
//! charged elsewhere) does not have. So when the policy has a memory limit the supervisor
//! brings the executable and its ELF interpreter in first. Shared libraries are not followed:
//! the usual ones (libc, libm, …) are resident on any host that runs programs.
//!
//! Everything here is best effort: a file that cannot be found, opened or read (or is over
//! 1 GiB) is left to the program's own faults, and so charged to the sandbox as without
//! this step.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bunker_sys::cache;

/// Brings the program `argv0` (looked up as init will: itself when it holds a `/`, else the
/// first executable file on `search_path`; a relative path from `cwd`) and its ELF
/// interpreter into the page cache. For a script, the same for the interpreter its `#!` line
/// names (one level), and for `#!/usr/bin/env NAME` for NAME on `search_path` too. Returns the
/// files it looked at.
pub fn program(argv0: &OsStr, search_path: &str, cwd: Option<&Path>) -> Vec<PathBuf> {
    let mut seen = Vec::new();
    if let Some((path, file)) = resolve(argv0, search_path, cwd) {
        executable(path, &file, search_path, true, &mut seen);
    }
    seen
}

/// Warms `file` (at `path`), then what the kernel loads to run it: its ELF interpreter, or, when
/// `follow_script`, its `#!` interpreter (and `env`'s program).
fn executable(
    path: PathBuf,
    file: &File,
    search_path: &str,
    follow_script: bool,
    seen: &mut Vec<PathBuf>,
) {
    warm(file);
    seen.push(path);
    if let Some(interp) = elf_interpreter(file) {
        if let Some(f) = open_regular(&interp) {
            warm(&f);
        }
        seen.push(interp);
        return;
    }
    let Some((interp, arg)) = follow_script.then(|| script_interpreter(file)).flatten() else {
        return;
    };
    let via_env = interp.file_name() == Some(OsStr::new("env"));
    if let Some(f) = open_regular(&interp) {
        executable(interp, &f, search_path, false, seen);
    }
    if let (true, Some(name)) = (via_env, arg) {
        if let Some((p, f)) = resolve(&name, search_path, None) {
            executable(p, &f, search_path, false, seen);
        }
    }
}

/// The absolute interpreter path of a `#!` line and its first argument that is not an option
/// (`#!/usr/bin/env -S bun run` → (`/usr/bin/env`, `bun`)).
fn script_interpreter(file: &File) -> Option<(PathBuf, Option<std::ffi::OsString>)> {
    let mut line = [0u8; 256];
    let n = file.read_at(&mut line, 0).ok()?;
    let line = line.get(..n)?.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|b| *b == b'\n')?];
    let mut words = line
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|w| !w.is_empty());
    let interp = words.next().filter(|w| w.starts_with(b"/"))?;
    let arg = words
        .find(|w| !w.starts_with(b"-"))
        .map(|w| OsStr::from_bytes(w).to_os_string());
    Some((PathBuf::from(OsStr::from_bytes(interp)), arg))
}

/// The file init will execute for `argv0`, opened for reading.
fn resolve(argv0: &OsStr, search_path: &str, cwd: Option<&Path>) -> Option<(PathBuf, File)> {
    let candidates: Vec<PathBuf> = if argv0.as_bytes().contains(&b'/') {
        vec![cwd.map_or_else(|| PathBuf::from(argv0), |d| d.join(argv0))]
    } else {
        search_path
            .split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| Path::new(d).join(argv0))
            .collect()
    };
    candidates.into_iter().find_map(|p| {
        let f = open_regular(&p)?;
        let executable = f.metadata().ok()?.permissions().mode() & 0o111 != 0;
        executable.then_some((p, f))
    })
}

/// `path` opened for reading if it is a regular file. Non-blocking and without taking a
/// controlling terminal, so that a FIFO or a device named as the program neither hangs the
/// supervisor nor is acted on; nothing is read from those.
fn open_regular(path: &Path) -> Option<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    f.metadata().ok()?.is_file().then_some(f)
}

/// The `PT_INTERP` path of an ELF executable (`/lib64/ld-linux-x86-64.so.2`), if it has one.
fn elf_interpreter(file: &File) -> Option<PathBuf> {
    const PT_INTERP: u32 = 3;
    let mut header = [0u8; 64];
    let n = file.read_at(&mut header, 0).ok()?;
    let header = header.get(..n)?;
    if header.get(..4)? != b"\x7fELF" {
        return None;
    }
    let wide = match header.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match header.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let field = |at: usize, len: usize| -> Option<u64> {
        let b = header.get(at..at + len)?;
        Some(read_uint(b, little))
    };
    let (phoff, phentsize, phnum) = if wide {
        (field(32, 8)?, field(54, 2)?, field(56, 2)?)
    } else {
        (field(28, 4)?, field(42, 2)?, field(44, 2)?)
    };
    let mut table = vec![0u8; usize::try_from(phentsize * phnum).ok()?.min(64 << 10)];
    file.read_exact_at(&mut table, phoff).ok()?;
    for entry in table.chunks_exact(usize::try_from(phentsize).ok()?.max(1)) {
        let at =
            |start: usize, len: usize| entry.get(start..start + len).map(|b| read_uint(b, little));
        if at(0, 4)? != u64::from(PT_INTERP) {
            continue;
        }
        let (offset, size) = if wide {
            (at(8, 8)?, at(32, 8)?)
        } else {
            (at(4, 4)?, at(16, 4)?)
        };
        let mut path = vec![0u8; usize::try_from(size).ok()?.min(4096)];
        file.read_exact_at(&mut path, offset).ok()?;
        let end = path.iter().position(|b| *b == 0).unwrap_or(path.len());
        path.truncate(end);
        return Some(PathBuf::from(OsStr::from_bytes(&path)));
    }
    None
}

fn read_uint(bytes: &[u8], little: bool) -> u64 {
    let fold = |acc: u64, b: &u8| (acc << 8) | u64::from(*b);
    if little {
        bytes.iter().rev().fold(0, fold)
    } else {
        bytes.iter().fold(0, fold)
    }
}

/// Larger files are left alone: the page cache they would fill is charged to the caller, and
/// no runtime's executable comes near it.
const MAX_BYTES: u64 = 1 << 30;
/// Files up to this size are checked page by page (a `cachestat` walks ~5 ns a page here)...
const FULL_CHECK_BYTES: u64 = 4 << 20;
/// ...larger ones at this many evenly spread windows...
const SAMPLE_WINDOWS: u64 = 64;
/// ...of this many pages: checking all of Bun's 100 MB took 150 µs a start, these 64 × 16 KiB
/// take ~15 µs.
const SAMPLE_PAGES: u64 = 4;

/// The page-aligned `(offset, len)` windows of a `len`-byte file whose residency stands for the
/// whole file's: all of it when it is small, else [`SAMPLE_WINDOWS`] spread from its first page
/// to its last. A file evicted only in part can pass; its missing pages are then charged to
/// whoever faults them, as without this step.
fn windows(len: u64, page: u64) -> Vec<(u64, u64)> {
    let pages = len.div_ceil(page);
    if len <= FULL_CHECK_BYTES || pages <= SAMPLE_WINDOWS * SAMPLE_PAGES {
        return vec![(0, pages * page)];
    }
    let last_start = pages - SAMPLE_PAGES;
    (0..SAMPLE_WINDOWS)
        .map(|i| {
            (
                last_start * i / (SAMPLE_WINDOWS - 1) * page,
                SAMPLE_PAGES * page,
            )
        })
        .collect()
}

/// Whether every page of `windows` of `file` (`len` bytes) is in the page cache.
fn resident(file: &File, len: u64, windows: &[(u64, u64)], page: u64) -> bool {
    let fd = file.as_raw_fd();
    let expected: u64 = windows
        .iter()
        .map(|&(off, n)| (off + n).min(len).saturating_sub(off).div_ceil(page))
        .sum();
    let mut cached = 0;
    for &(off, n) in windows {
        match cache::cached_pages(fd, off, n) {
            Ok(c) => cached += c,
            // Before Linux 6.5, or a seccomp filter of the host's that does not know it.
            Err(e) if e.errno == libc::ENOSYS || e.errno == libc::EPERM => {
                return cache::resident_pages_mincore(fd, len, windows)
                    .is_ok_and(|c| c >= expected);
            }
            Err(_) => return false,
        }
    }
    cached >= expected
}

/// Makes the pages of `file` resident, charged to this process's cgroup if they were not. The
/// warm path is a residency check ([`windows`]), no I/O. Missing pages are allocated by
/// `POSIX_FADV_WILLNEED` over the whole file — each page is charged as it enters the cache, so
/// the reads it starts need not be waited for (the program's faults wait on them like on any
/// read in flight) — and the file is read outright if the kernel declined (its readahead gives
/// up under memory pressure).
fn warm(file: &File) -> bool {
    let Some(len) = file
        .metadata()
        .ok()
        .map(|m| m.len())
        .filter(|l| *l <= MAX_BYTES)
    else {
        return false;
    };
    let page = cache::page_size();
    let windows = windows(len, page);
    if resident(file, len, &windows, page) {
        return true;
    }
    if cache::fadvise_willneed(file.as_raw_fd()).is_ok() && resident(file, len, &windows, page) {
        return true;
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut reader = file;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_program_on_path_and_its_elf_interpreter() {
        let seen = program(
            OsStr::new("true"),
            "relative:/nonexistent:/usr/bin:/bin",
            None,
        );
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[0].ends_with("true"), "{seen:?}");
        assert!(seen[1].to_string_lossy().contains("ld-"), "{seen:?}");
        assert!(seen[1].is_absolute(), "{seen:?}");
    }

    #[test]
    fn a_path_with_a_slash_is_taken_as_is_and_a_script_brings_its_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("run.sh");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let seen = program(OsStr::new("./run.sh"), "/usr/bin", Some(dir.path()));
        // The script, then /bin/sh and its ELF interpreter.
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(
            seen[..2],
            [dir.path().join("./run.sh"), PathBuf::from("/bin/sh")]
        );
        // `env NAME`: env and NAME, each with its interpreter.
        std::fs::write(&script, "#!/usr/bin/env -S true --flag\n").unwrap();
        let seen = program(
            OsStr::new("./run.sh"),
            "/nonexistent:/usr/bin",
            Some(dir.path()),
        );
        assert_eq!(seen.len(), 5, "{seen:?}");
        assert_eq!(seen[1], PathBuf::from("/usr/bin/env"));
        assert_eq!(seen[3], PathBuf::from("/usr/bin/true"));
        // A relative interpreter, or no line end within 256 bytes: the script alone.
        std::fs::write(&script, "#!sh\n").unwrap();
        let seen = program(OsStr::new("./run.sh"), "/usr/bin", Some(dir.path()));
        assert_eq!(seen.len(), 1, "{seen:?}");
        std::fs::write(&script, format!("#!/bin/sh {}", "x".repeat(300))).unwrap();
        assert_eq!(
            program(OsStr::new("./run.sh"), "", Some(dir.path())).len(),
            1
        );
        // Not executable, or not there: nothing.
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(program(OsStr::new("./run.sh"), "", Some(dir.path())).is_empty());
        assert!(program(OsStr::new("no-such-program"), "/usr/bin", None).is_empty());
        // A FIFO (opening it for reading would wait for a writer) or a directory: skipped.
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(dir.path().join("true")).unwrap();
        let d = dir.path().to_str().unwrap();
        assert!(program(OsStr::new("fifo"), d, None).is_empty());
        assert_eq!(
            program(OsStr::new("true"), &format!("{d}:/usr/bin"), None)[0],
            PathBuf::from("/usr/bin/true")
        );
    }

    #[test]
    fn reads_pt_interp_of_a_32_bit_big_endian_elf_and_nothing_from_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut elf = vec![0u8; 84];
        elf[..6].copy_from_slice(b"\x7fELF\x01\x02");
        elf[28..32].copy_from_slice(&52u32.to_be_bytes()); // e_phoff
        elf[42..44].copy_from_slice(&32u16.to_be_bytes()); // e_phentsize
        elf[44..46].copy_from_slice(&1u16.to_be_bytes()); // e_phnum
        elf[52..56].copy_from_slice(&3u32.to_be_bytes()); // PT_INTERP
        elf[56..60].copy_from_slice(&84u32.to_be_bytes()); // p_offset
        elf[68..72].copy_from_slice(&12u32.to_be_bytes()); // p_filesz
        elf.extend_from_slice(b"/lib/ld.so\0\0");
        let path = dir.path().join("elf");
        std::fs::write(&path, &elf).unwrap();
        let interp = elf_interpreter(&File::open(&path).unwrap());
        assert_eq!(interp, Some(PathBuf::from("/lib/ld.so")));
        // Truncated inside the program headers, or not an ELF file at all.
        std::fs::write(&path, &elf[..60]).unwrap();
        assert_eq!(elf_interpreter(&File::open(&path).unwrap()), None);
        std::fs::write(&path, b"#!/bin/sh\n").unwrap();
        assert_eq!(elf_interpreter(&File::open(&path).unwrap()), None);
    }

    #[test]
    fn a_file_is_resident_after_warming() {
        let exe = std::env::current_exe().unwrap();
        let file = File::open(&exe).unwrap();
        assert!(warm(&file));
        let len = file.metadata().unwrap().len();
        let pages = len.div_ceil(cache::page_size());
        assert_eq!(
            cache::resident_pages_mincore(file.as_raw_fd(), len, &[(0, len)]).unwrap(),
            pages
        );
    }

    #[test]
    fn small_files_are_checked_whole_large_ones_at_spread_windows() {
        let page = 4096;
        assert_eq!(windows(0, page), vec![(0, 0)]);
        assert_eq!(windows(5, page), vec![(0, page)]);
        assert_eq!(windows(FULL_CHECK_BYTES, page), vec![(0, FULL_CHECK_BYTES)]);
        let len = 100 << 20;
        let w = windows(len + 1, page);
        assert_eq!(w.len() as u64, SAMPLE_WINDOWS);
        assert_eq!(w[0], (0, SAMPLE_PAGES * page));
        // The last window ends at the last (partial) page.
        assert_eq!(w[w.len() - 1].0 + SAMPLE_PAGES * page, len + page);
        assert!(w.windows(2).all(|p| p[0].0 + p[0].1 <= p[1].0), "{w:?}");
        assert!(w.iter().all(|(off, _)| off % page == 0));
    }
}
