//! Times the deny-glob walk alone (no sandbox around it) on a host tree:
//! `walk_globs <tree> [glob...]` (default glob `**/*.key`). Prints entries, matches, the median
//! wall time of 5 walks and their mean CPU time (user + system, all threads) in milliseconds;
//! scripts/bench-globs.sh runs it beside `find`. CPU time is the figure to compare on a shared
//! machine: wall time there includes waiting for a core.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bunker_policy::PathGlob;
use bunker_sandbox::mounts::{DenyGlob, DenyKind, Grant};
use bunker_sandbox::walk;
use bunker_sys::fd;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let tree = PathBuf::from(args.next().ok_or("usage: walk_globs <tree> [glob...]")?);
    let mut globs: Vec<DenyGlob> = args
        .map(|pattern| {
            Ok(DenyGlob {
                kind: DenyKind::Read,
                pattern: PathGlob::new(&pattern)?,
                best_effort: false,
            })
        })
        .collect::<Result<_, String>>()?;
    if globs.is_empty() {
        globs.push(DenyGlob {
            kind: DenyKind::Read,
            pattern: PathGlob::new("**/*.key")?,
            best_effort: false,
        });
    }
    // The walk resolves granted paths beneath a root fd: the host's / here.
    let root = fd::openat2(None, Path::new("/"), libc::O_PATH | libc::O_CLOEXEC, 0, 0)?;
    let grants = [Grant {
        path: tree,
        write: false,
        exec: false,
    }];
    let mut times = Vec::new();
    let mut last = walk::Scan::default();
    let cpu_before = cpu_ms()?;
    for _ in 0..5 {
        let start = Instant::now();
        last = walk::scan(&root, &grants, &globs);
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let cpu = (cpu_ms()? - cpu_before) / times.len() as f64;
    times.sort_by(f64::total_cmp);
    println!(
        "entries {} matches {} unchecked {} median_ms {:.1} cpu_ms {:.1}",
        last.entries,
        last.found.len(),
        last.unchecked.len(),
        times[times.len() / 2],
        cpu
    );
    Ok(())
}

/// User + system time of this process so far (its finished threads included), from
/// /proc/self/stat, in milliseconds (10 ms resolution at the usual 100 ticks a second).
fn cpu_ms() -> Result<f64, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let after = stat.rsplit(") ").next().ok_or("bad /proc/self/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .ok_or("short /proc/self/stat")?
        .iter()
        .map(|f| f.parse::<f64>())
        .sum::<Result<f64, _>>()?;
    Ok(ticks * 10.0)
}
