//! One sandbox's cgroup: a directory `bunker-<supervisor pid>-<n>` under the supervisor's own
//! cgroup in each hierarchy it needs (one on v2; one per controller hierarchy on v1).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::CgroupError;
use crate::layout::{Controller, Hierarchy, Layout, Version};

/// Distinguishes the sandboxes of one supervisor process.
static COUNTER: AtomicU64 = AtomicU64::new(0);
/// The pid sandbox groups are named after, when not this process's own ([`name_groups_after`]).
static OWNER_PID: AtomicU32 = AtomicU32::new(0);

/// Names the sandbox groups this process makes after process `pid` instead of itself: a fork
/// server's groups belong to the daemon that forked it and supervises their sandboxes, and
/// it is the daemon's death, not the fork server's, that makes them stale
/// ([`clean_stale`](crate::clean_stale)). The daemon makes no groups itself, so names stay unique.
pub fn name_groups_after(pid: u32) {
    OWNER_PID.store(pid, Ordering::Relaxed);
}

/// v1/v2 CFS period: 100 ms, the kernel's default.
const CPU_PERIOD_US: u64 = 100_000;
/// The kernel refuses quotas under 1 ms.
const CPU_MIN_QUOTA_US: u64 = 1_000;
/// How long removal keeps retrying a cgroup that is still busy (processes still exiting).
const REMOVE_PATIENCE: Duration = Duration::from_secs(2);

/// What the memory limit covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimitOutcome {
    /// Swap is limited too (v2 `memory.swap.max` = 0, v1 `memory.memsw.limit_in_bytes`).
    pub swap_limited: bool,
    /// An OOM kills the whole group at once (v2 `memory.oom.group`); on v1 the supervisor
    /// kills the rest itself.
    pub group_kill: bool,
}

/// Memory counters of the group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Processes the kernel OOM-killed in the group.
    pub oom_kills: u64,
    /// Peak usage in bytes (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`).
    pub peak_bytes: Option<u64>,
}

/// What the memory watch reads each tick at the limit ([`crate::ThrashWatch`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemorySample {
    /// Charged bytes (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub usage: u64,
    /// Pages faulted back after eviction, file and anonymous (`workingset_refault_*` in
    /// `memory.stat`).
    pub refaults: u64,
    /// Faults that waited for the disk (`pgmajfault` in `memory.stat`).
    pub major_faults: u64,
    /// Page cache on the LRU lists, all reclaim can still free without swap
    /// (`active_file` + `inactive_file`).
    pub file_bytes: u64,
}

#[derive(Debug)]
struct GroupDir {
    version: Version,
    /// The supervisor's own cgroup this one was created under (identifies the hierarchy).
    own_dir: PathBuf,
    path: PathBuf,
    controllers: Vec<Controller>,
}

/// One directory of a [`SandboxGroup`], as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDirParts {
    pub version: Version,
    /// The cgroup it was created under (identifies the hierarchy).
    pub own_dir: PathBuf,
    pub path: PathBuf,
    pub controllers: Vec<Controller>,
}

/// One sandbox's cgroup across hierarchies. Dropping it kills whatever is still inside and
/// removes the directories.
#[derive(Debug)]
pub struct SandboxGroup {
    name: String,
    dirs: Vec<GroupDir>,
}

impl Default for SandboxGroup {
    fn default() -> Self {
        SandboxGroup::new()
    }
}

impl SandboxGroup {
    /// A group named `bunker-<our pid>-<n>` (or the pid of [`name_groups_after`]), not created
    /// anywhere yet.
    pub fn new() -> SandboxGroup {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let owner = match OWNER_PID.load(Ordering::Relaxed) {
            0 => std::process::id(),
            pid => pid,
        };
        SandboxGroup::with_name(format!("bunker-{owner}-{n}"))
    }

    /// The group as plain data, to hand it to another process ([`from_parts`](Self::from_parts)
    /// there): this value no longer removes the directories when dropped.
    pub fn into_parts(mut self) -> (String, Vec<GroupDirParts>) {
        let dirs = std::mem::take(&mut self.dirs)
            .into_iter()
            .map(|d| GroupDirParts {
                version: d.version,
                own_dir: d.own_dir,
                path: d.path,
                controllers: d.controllers,
            })
            .collect();
        (std::mem::take(&mut self.name), dirs)
    }

    /// A group another process made and handed over ([`into_parts`](Self::into_parts)):
    /// dropping it kills what is inside and removes the directories, as for one made here.
    pub fn from_parts(name: String, dirs: Vec<GroupDirParts>) -> SandboxGroup {
        SandboxGroup {
            name,
            dirs: dirs
                .into_iter()
                .map(|d| GroupDir {
                    version: d.version,
                    own_dir: d.own_dir,
                    path: d.path,
                    controllers: d.controllers,
                })
                .collect(),
        }
    }

    /// A group with an explicit name (tests).
    pub fn with_name(name: impl Into<String>) -> SandboxGroup {
        SandboxGroup {
            name: name.into(),
            dirs: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directories created so far.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    /// The directory that holds `controller`, once enabled.
    pub fn path_for(&self, controller: Controller) -> Option<&Path> {
        self.dir(controller).map(|d| d.path.as_path())
    }

    fn dir(&self, controller: Controller) -> Option<&GroupDir> {
        self.dirs
            .iter()
            .find(|d| d.controllers.contains(&controller))
    }

    fn require_dir(&self, controller: Controller) -> Result<&GroupDir, CgroupError> {
        self.dir(controller)
            .ok_or_else(|| CgroupError::Unavailable {
                controller: controller.v1_name().to_string(),
                path: PathBuf::from(&self.name),
                reason: "not enabled for this sandbox's cgroup".to_string(),
            })
    }

    /// Makes `controller` available to the group: creates the group's directory in the
    /// hierarchy that holds it (once per hierarchy) and, on v2, enables the controller for our
    /// children in our own `cgroup.subtree_control` when it is not already.
    pub fn enable(
        &mut self,
        layout: &Layout,
        controller: Controller,
    ) -> Result<&Path, CgroupError> {
        if let Some(i) = self
            .dirs
            .iter()
            .position(|d| d.controllers.contains(&controller))
        {
            return Ok(&self.dirs[i].path);
        }
        let hierarchy = layout.require(controller)?;
        if hierarchy.version == Version::V2 {
            enable_in_subtree(hierarchy, controller)?;
        }
        if let Some(i) = self
            .dirs
            .iter()
            .position(|d| d.own_dir == hierarchy.own_dir)
        {
            self.dirs[i].controllers.push(controller);
            return Ok(&self.dirs[i].path);
        }
        let path = hierarchy.own_dir.join(&self.name);
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // Our names are unique within this process, so this was left by an earlier
                // process that had our pid and was killed before it could clean up.
                remove_group_dir(&path)?;
                std::fs::create_dir(&path).map_err(|e| CgroupError::io("mkdir", &path, e))?;
            }
            Err(e) => return Err(CgroupError::io("mkdir", &path, e)),
        }
        self.dirs.push(GroupDir {
            version: hierarchy.version,
            own_dir: hierarchy.own_dir.clone(),
            path,
            controllers: vec![controller],
        });
        let last = self.dirs.len() - 1;
        Ok(&self.dirs[last].path)
    }

    /// Sets the hard memory limit, with swap limited and the OOM killer taking the whole group
    /// where the kernel offers it.
    pub fn set_memory_limit(&self, bytes: u64) -> Result<MemoryLimitOutcome, CgroupError> {
        let dir = self.require_dir(Controller::Memory)?;
        let value = bytes.to_string();
        match dir.version {
            Version::V1 => {
                // limit_in_bytes first: memsw must never be below it.
                write_file(&dir.path.join("memory.limit_in_bytes"), &value)?;
                let memsw = dir.path.join("memory.memsw.limit_in_bytes");
                let swap_limited = memsw.exists();
                if swap_limited {
                    write_file(&memsw, &value)?;
                }
                Ok(MemoryLimitOutcome {
                    swap_limited,
                    group_kill: false,
                })
            }
            Version::V2 => {
                write_file(&dir.path.join("memory.max"), &value)?;
                let swap = dir.path.join("memory.swap.max");
                let swap_limited = swap.exists();
                if swap_limited {
                    write_file(&swap, "0")?;
                }
                let oom_group = dir.path.join("memory.oom.group");
                let group_kill = oom_group.exists();
                if group_kill {
                    write_file(&oom_group, "1")?;
                }
                Ok(MemoryLimitOutcome {
                    swap_limited,
                    group_kill,
                })
            }
        }
    }

    /// Sets the maximum number of processes and threads.
    pub fn set_pids_limit(&self, max: u64) -> Result<(), CgroupError> {
        let dir = self.require_dir(Controller::Pids)?;
        write_file(&dir.path.join("pids.max"), &max.to_string())
    }

    /// Limits CPU bandwidth to `cores` CPUs (0.5 = half of one core) over 100 ms periods.
    pub fn set_cpu_limit(&self, cores: f64) -> Result<(), CgroupError> {
        if !cores.is_finite() || cores <= 0.0 {
            return Err(CgroupError::Invalid {
                what: "cpu limit".to_string(),
                detail: format!("{cores} cores (must be a positive number)"),
            });
        }
        let quota = ((cores * CPU_PERIOD_US as f64).round() as u64).max(CPU_MIN_QUOTA_US);
        let dir = self.require_dir(Controller::Cpu)?;
        match dir.version {
            Version::V1 => {
                write_file(
                    &dir.path.join("cpu.cfs_period_us"),
                    &CPU_PERIOD_US.to_string(),
                )?;
                write_file(&dir.path.join("cpu.cfs_quota_us"), &quota.to_string())
            }
            Version::V2 => write_file(
                &dir.path.join("cpu.max"),
                &format!("{quota} {CPU_PERIOD_US}"),
            ),
        }
    }

    /// Moves the process `pid` (with all its threads) into the group, in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            write_file(&dir.path.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Opens the `tasks` file of each v1 hierarchy of the group for writing. A single-threaded
    /// process that writes "0" to each of them (see [`join_self`]) moves itself into the group:
    /// moving one's own thread takes no global lock, whereas writing a pid to `cgroup.procs`
    /// takes the kernel's threadgroup lock for writing, which waits for an RCU grace period
    /// (5–15 ms measured on cgroup v1). v2 has no per-thread move for a whole process: its
    /// hierarchies are left to [`add_process_v2`](Self::add_process_v2).
    pub fn open_self_join(&self) -> Result<Vec<File>, CgroupError> {
        self.dirs
            .iter()
            .filter(|d| d.version == Version::V1)
            .map(|d| {
                let path = d.path.join("tasks");
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| CgroupError::io("open", &path, e))
            })
            .collect()
    }

    /// Moves the process `pid` into the group's v2 hierarchy, if it has one (the v1 ones are
    /// joined through [`open_self_join`](Self::open_self_join)).
    pub fn add_process_v2(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in self.dirs.iter().filter(|d| d.version == Version::V2) {
            write_file(&dir.path.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// CPU time used by the group so far, when CPU accounting is enabled.
    pub fn cpu_usage(&self) -> Result<Option<Duration>, CgroupError> {
        let Some(dir) = self.dir(Controller::CpuAcct) else {
            return Ok(None);
        };
        match dir.version {
            Version::V1 => {
                let path = dir.path.join("cpuacct.usage");
                let ns = parse_u64(&path, read_file(&path)?.trim())?;
                Ok(Some(Duration::from_nanos(ns)))
            }
            Version::V2 => {
                let path = dir.path.join("cpu.stat");
                let us = keyed(&path, &read_file(&path)?, "usage_usec")?;
                Ok(Some(Duration::from_micros(us.unwrap_or(0))))
            }
        }
    }

    /// OOM kills and peak usage, when the memory controller is enabled.
    pub fn memory_stats(&self) -> Result<Option<MemoryStats>, CgroupError> {
        let Some(dir) = self.dir(Controller::Memory) else {
            return Ok(None);
        };
        let (events_file, peak_file) = match dir.version {
            Version::V1 => ("memory.oom_control", "memory.max_usage_in_bytes"),
            Version::V2 => ("memory.events", "memory.peak"),
        };
        let events = dir.path.join(events_file);
        let oom_kills = keyed(&events, &read_file(&events)?, "oom_kill")?.unwrap_or(0);
        let peak = dir.path.join(peak_file);
        // memory.peak is new in Linux 5.19; without it the peak is unknown, not an error.
        let peak_bytes = match read_kernel_file(&peak) {
            Ok(text) => Some(parse_u64(&peak, text.trim())?),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(CgroupError::io("read", peak, e)),
        };
        Ok(Some(MemoryStats {
            oom_kills,
            peak_bytes,
        }))
    }

    /// Charged memory in bytes, when the memory controller is enabled: the watch's cheap read
    /// on every tick.
    pub fn memory_usage(&self) -> Result<Option<u64>, CgroupError> {
        let Some(dir) = self.dir(Controller::Memory) else {
            return Ok(None);
        };
        let path = dir.path.join(match dir.version {
            Version::V1 => "memory.usage_in_bytes",
            Version::V2 => "memory.current",
        });
        parse_u64(&path, read_file(&path)?.trim()).map(Some)
    }

    /// Usage with the refault and major-fault counters, when the memory controller is enabled.
    pub fn memory_sample(&self) -> Result<Option<MemorySample>, CgroupError> {
        let Some(usage) = self.memory_usage()? else {
            return Ok(None);
        };
        let Some(dir) = self.dir(Controller::Memory) else {
            return Ok(None);
        };
        let path = dir.path.join("memory.stat");
        let text = read_file(&path)?;
        // v1 prefixes the counters of the cgroup and its descendants with `total_`; v2's are
        // hierarchical already. Before Linux 5.9 one `workingset_refault` counted both kinds.
        let prefix = match dir.version {
            Version::V1 => "total_",
            Version::V2 => "",
        };
        let mut refaults = 0;
        for kind in [
            "workingset_refault_file",
            "workingset_refault_anon",
            "workingset_refault",
        ] {
            refaults += keyed(&path, &text, &format!("{prefix}{kind}"))?.unwrap_or(0);
        }
        let major_faults = keyed(&path, &text, &format!("{prefix}pgmajfault"))?.unwrap_or(0);
        let mut file_bytes = 0;
        for list in ["active_file", "inactive_file"] {
            file_bytes += keyed(&path, &text, &format!("{prefix}{list}"))?.unwrap_or(0);
        }
        Ok(Some(MemorySample {
            usage,
            refaults,
            major_faults,
            file_bytes,
        }))
    }

    /// How many times a fork or clone failed because of the pids limit, when enabled.
    pub fn pids_limit_hits(&self) -> Result<Option<u64>, CgroupError> {
        let Some(dir) = self.dir(Controller::Pids) else {
            return Ok(None);
        };
        let events = dir.path.join("pids.events");
        Ok(Some(
            keyed(&events, &read_file(&events)?, "max")?.unwrap_or(0),
        ))
    }

    /// Processes in the group (any hierarchy), host pids.
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        let mut all = Vec::new();
        for dir in &self.dirs {
            for pid in read_procs(&dir.path)? {
                if !all.contains(&pid) {
                    all.push(pid);
                }
            }
        }
        Ok(all)
    }

    /// Kills whatever is left in the group and removes its directories. Idempotent; the
    /// directories that could not be removed are kept for another try (or [`crate::clean_stale`]).
    pub fn destroy(&mut self) -> Result<(), CgroupError> {
        let mut first_error = None;
        let mut kept = Vec::new();
        while let Some(dir) = self.dirs.pop() {
            if let Err(e) = remove_group_dir(&dir.path) {
                first_error.get_or_insert(e);
                kept.push(dir);
            }
        }
        self.dirs = kept;
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for SandboxGroup {
    fn drop(&mut self) {
        if !self.dirs.is_empty() {
            let _ = self.destroy();
        }
    }
}

/// On v2, a child cgroup only has a controller's files when its parent lists the controller in
/// `cgroup.subtree_control`.
fn enable_in_subtree(hierarchy: &Hierarchy, controller: Controller) -> Result<(), CgroupError> {
    let Some(name) = controller.v2_name() else {
        return Ok(());
    };
    let path = hierarchy.own_dir.join("cgroup.subtree_control");
    let current = read_file(&path)?;
    if current.split_whitespace().any(|c| c == name) {
        return Ok(());
    }
    std::fs::write(&path, format!("+{name}")).map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc::EBUSY) {
            " (the supervisor's own cgroup has processes in it, and v2 only enables \
             controllers for the children of a cgroup without processes of its own: start \
             bunker in a delegated cgroup whose cgroup.subtree_control already lists it)"
        } else {
            ""
        };
        CgroupError::Unavailable {
            controller: name.to_string(),
            path: path.clone(),
            reason: format!("cannot write \"+{name}\": {e}{hint}"),
        }
    })
}

/// Moves the calling thread into the cgroup whose `tasks` file `tasks` is (opened by
/// [`SandboxGroup::open_self_join`], possibly in another process). In a single-threaded process
/// that moves the whole process.
pub fn join_self(tasks: &mut impl Write) -> std::io::Result<()> {
    tasks.write_all(b"0")
}

pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|e| CgroupError::io(format!("write {value:?} to"), path, e))
}

fn read_file(path: &Path) -> Result<String, CgroupError> {
    read_kernel_file(path).map_err(|e| CgroupError::io("read", path, e))
}

/// Reads a small file of a kernel filesystem (cgroupfs, procfs) whole. `read_to_string` asks
/// for its size first (0 there) and then reads in growing chunks from 32 bytes, each read of
/// a seq_file regenerating it from the start; one 4 KiB read plus the end-of-file read is all
/// these files need.
pub(crate) fn read_kernel_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))
}

fn parse_u64(path: &Path, text: &str) -> Result<u64, CgroupError> {
    text.parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        detail: format!("expected a number, found {text:?}"),
    })
}

/// The value of `key` in a flat-keyed file (`key value` per line).
fn keyed(path: &Path, text: &str, key: &str) -> Result<Option<u64>, CgroupError> {
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(' ') {
            if k == key {
                return parse_u64(path, v.trim()).map(Some);
            }
        }
    }
    Ok(None)
}

/// Pids listed in `dir/cgroup.procs`; none when the directory is already gone.
pub(crate) fn read_procs(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    match read_kernel_file(&path) {
        Ok(text) => Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(CgroupError::io("read", path, e)),
    }
}

/// Kills every process in the cgroup `dir` (and in any cgroup below it), then removes them,
/// retrying while the kernel still counts dying processes. A missing directory is success.
pub(crate) fn remove_group_dir(dir: &Path) -> Result<(), CgroupError> {
    // The common case, at the end of every run: nothing is left inside (init is reaped and its
    // pid namespace gone). cgroupfs refuses to remove a cgroup with processes or child cgroups
    // in it (EBUSY), so a success here skipped nothing the full path below would have done.
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    // Children first: rmdir of a cgroup with child cgroups is EBUSY.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_group_dir(&entry.path())?;
            }
        }
    }
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        kill_all(dir)?;
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => {
                // Only a fake tree in tests holds real files: cgroupfs removes its control
                // files with the directory and never answers ENOTEMPTY.
                remove_plain_files(dir);
                std::fs::remove_dir(dir).map_err(|e| CgroupError::io("rmdir", dir, e))?;
                return Ok(());
            }
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY) && started.elapsed() < REMOVE_PATIENCE =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(CgroupError::io("rmdir", dir, e)),
        }
    }
}

fn kill_all(dir: &Path) -> Result<(), CgroupError> {
    let own = std::process::id() as i32;
    // v2 can kill the whole group atomically, even while it forks.
    let kill_file = dir.join("cgroup.kill");
    if kill_file.exists() && !read_procs(dir)?.is_empty() {
        let _ = std::fs::write(&kill_file, "1");
    }
    for pid in read_procs(dir)? {
        // Never ourselves, whatever a (fake or odd) tree says.
        if pid != own {
            bunker_sys::event::kill(pid, libc::SIGKILL).map_err(|e| CgroupError::Io {
                op: format!("kill process {pid} in"),
                path: dir.to_path_buf(),
                source: std::io::Error::from_raw_os_error(e.errno),
            })?;
        }
    }
    Ok(())
}

fn remove_plain_files(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake host: v1 memory (with memsw), pids, cpu and cpuacct, the supervisor in
    /// `memory:/job` and at the root of the others.
    struct FakeV1 {
        root: tempfile::TempDir,
        layout: Layout,
    }

    fn fake_v1() -> FakeV1 {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in ["memory/job", "pids", "cpu", "cpuacct"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        let mounts = format!(
            "32 31 0:29 / {r}/cpu rw - cgroup cgroup rw,cpu\n\
             33 31 0:30 / {r}/cpuacct rw - cgroup cgroup rw,cpuacct\n\
             35 31 0:32 / {r}/memory rw - cgroup cgroup rw,memory\n\
             39 31 0:36 / {r}/pids rw - cgroup cgroup rw,pids\n",
            r = r.display()
        );
        let layout = Layout::parse(
            "8:pids:/\n4:memory:/job\n2:cpuacct:/\n1:cpu:/\n0::/\n",
            &mounts,
        );
        FakeV1 { root, layout }
    }

    /// A fake v2 host: everything delegated to `/user/app`.
    fn fake_v2() -> (tempfile::TempDir, Layout) {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("user/app");
        fs::create_dir_all(&own).unwrap();
        fs::write(own.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        fs::write(own.join("cgroup.subtree_control"), "").unwrap();
        let mounts = format!(
            "30 25 0:27 / {} rw - cgroup2 cgroup2 rw\n",
            root.path().display()
        );
        let layout = Layout::parse("0::/user/app\n", &mounts);
        (root, layout)
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap()
    }

    #[test]
    fn v1_limits_land_in_each_controllers_hierarchy() {
        let fake = fake_v1();
        let mut g = SandboxGroup::with_name("bunker-1-0");
        let mem = g
            .enable(&fake.layout, Controller::Memory)
            .unwrap()
            .to_path_buf();
        assert_eq!(mem, fake.root.path().join("memory/job/bunker-1-0"));
        // The kernel creates memsw when swap accounting is on: simulate it.
        fs::write(mem.join("memory.memsw.limit_in_bytes"), "").unwrap();
        let out = g.set_memory_limit(50 << 20).unwrap();
        assert!(out.swap_limited && !out.group_kill);
        assert_eq!(read(&mem.join("memory.limit_in_bytes")), "52428800");
        assert_eq!(read(&mem.join("memory.memsw.limit_in_bytes")), "52428800");

        g.enable(&fake.layout, Controller::Pids).unwrap();
        g.set_pids_limit(64).unwrap();
        assert_eq!(
            read(&fake.root.path().join("pids/bunker-1-0/pids.max")),
            "64"
        );

        g.enable(&fake.layout, Controller::Cpu).unwrap();
        g.set_cpu_limit(0.2).unwrap();
        let cpu = fake.root.path().join("cpu/bunker-1-0");
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "20000");
        assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");

        let acct = g
            .enable(&fake.layout, Controller::CpuAcct)
            .unwrap()
            .to_path_buf();
        fs::write(acct.join("cpuacct.usage"), "1500000000\n").unwrap();
        assert_eq!(g.cpu_usage().unwrap(), Some(Duration::from_millis(1500)));

        fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        fs::write(mem.join("memory.max_usage_in_bytes"), "52428800\n").unwrap();
        let stats = g.memory_stats().unwrap().unwrap();
        assert_eq!(
            stats,
            MemoryStats {
                oom_kills: 2,
                peak_bytes: Some(52428800)
            }
        );

        fs::write(
            fake.root.path().join("pids/bunker-1-0/pids.events"),
            "max 17\n",
        )
        .unwrap();
        assert_eq!(g.pids_limit_hits().unwrap(), Some(17));

        assert_eq!(g.paths().len(), 4);
        g.destroy().unwrap();
        for d in ["memory/job", "pids", "cpu", "cpuacct"] {
            assert!(!fake.root.path().join(d).join("bunker-1-0").exists(), "{d}");
        }
        // The supervisor's own cgroups are untouched.
        assert!(fake.root.path().join("memory/job").is_dir());
    }

    #[test]
    fn v1_without_memsw_reports_swap_unlimited() {
        let fake = fake_v1();
        let mut g = SandboxGroup::with_name("bunker-1-1");
        g.enable(&fake.layout, Controller::Memory).unwrap();
        let out = g.set_memory_limit(1 << 20).unwrap();
        assert!(!out.swap_limited);
    }

    #[test]
    fn only_the_needed_hierarchies_are_created() {
        let fake = fake_v1();
        let mut g = SandboxGroup::with_name("bunker-1-2");
        g.enable(&fake.layout, Controller::Pids).unwrap();
        assert!(fake.root.path().join("pids/bunker-1-2").is_dir());
        assert!(!fake.root.path().join("memory/job/bunker-1-2").exists());
        assert!(!fake.root.path().join("cpu/bunker-1-2").exists());
        assert_eq!(g.memory_stats().unwrap(), None);
        assert_eq!(g.cpu_usage().unwrap(), None);
        drop(g);
        assert!(
            !fake.root.path().join("pids/bunker-1-2").exists(),
            "drop removes the group"
        );
    }

    #[test]
    fn v2_uses_one_directory_and_enables_controllers() {
        let (root, layout) = fake_v2();
        let own = root.path().join("user/app");
        let mut g = SandboxGroup::with_name("bunker-1-3");
        let dir = g.enable(&layout, Controller::Memory).unwrap().to_path_buf();
        assert_eq!(dir, own.join("bunker-1-3"));
        // Our fake kernel does not merge writes into subtree_control: the last write wins.
        assert_eq!(read(&own.join("cgroup.subtree_control")), "+memory");
        fs::write(own.join("cgroup.subtree_control"), "memory").unwrap();
        fs::write(dir.join("memory.swap.max"), "max").unwrap();
        fs::write(dir.join("memory.oom.group"), "0").unwrap();
        let out = g.set_memory_limit(64 << 20).unwrap();
        assert!(out.swap_limited && out.group_kill);
        assert_eq!(read(&dir.join("memory.max")), "67108864");
        assert_eq!(read(&dir.join("memory.swap.max")), "0");
        assert_eq!(read(&dir.join("memory.oom.group")), "1");

        g.enable(&layout, Controller::Pids).unwrap();
        assert_eq!(read(&own.join("cgroup.subtree_control")), "+pids");
        fs::write(own.join("cgroup.subtree_control"), "memory pids").unwrap();
        g.enable(&layout, Controller::Cpu).unwrap();
        g.enable(&layout, Controller::CpuAcct).unwrap();
        g.set_cpu_limit(1.5).unwrap();
        assert_eq!(read(&dir.join("cpu.max")), "150000 100000");
        assert_eq!(g.paths(), vec![dir.clone()]);

        fs::write(dir.join("cpu.stat"), "usage_usec 2500\nuser_usec 2000\n").unwrap();
        assert_eq!(g.cpu_usage().unwrap(), Some(Duration::from_micros(2500)));
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n",
        )
        .unwrap();
        fs::write(dir.join("memory.peak"), "67100000\n").unwrap();
        assert_eq!(
            g.memory_stats().unwrap(),
            Some(MemoryStats {
                oom_kills: 1,
                peak_bytes: Some(67100000)
            })
        );
        fs::remove_file(dir.join("memory.peak")).unwrap();
        assert_eq!(g.memory_stats().unwrap().unwrap().peak_bytes, None);
        g.destroy().unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn memory_samples_read_usage_refaults_and_major_faults() {
        let fake = fake_v1();
        let mut g = SandboxGroup::with_name("bunker-1-11");
        let mem = g
            .enable(&fake.layout, Controller::Memory)
            .unwrap()
            .to_path_buf();
        fs::write(mem.join("memory.usage_in_bytes"), "49999872\n").unwrap();
        // The cgroup's own counters beside the hierarchical `total_` ones: v1 reads the latter.
        fs::write(
            mem.join("memory.stat"),
            "cache 10\nworkingset_refault_file 1\npgmajfault 1\n\
             total_workingset_refault_anon 5\ntotal_workingset_refault_file 3000\n\
             total_pgmajfault 7\ntotal_active_file 4096\ntotal_inactive_file 8192\n",
        )
        .unwrap();
        assert_eq!(g.memory_usage().unwrap(), Some(49999872));
        assert_eq!(
            g.memory_sample().unwrap(),
            Some(MemorySample {
                usage: 49999872,
                refaults: 3005,
                major_faults: 7,
                file_bytes: 12288
            })
        );

        let (_root, layout) = fake_v2();
        let mut g = SandboxGroup::with_name("bunker-1-12");
        let dir = g.enable(&layout, Controller::Memory).unwrap().to_path_buf();
        fs::write(dir.join("memory.current"), "1048576\n").unwrap();
        fs::write(
            dir.join("memory.stat"),
            "anon 4096\nfile 8192\nactive_file 4096\ninactive_file 4096\n\
             workingset_refault_anon 2\nworkingset_refault_file 40\npgmajfault 3\n",
        )
        .unwrap();
        assert_eq!(
            g.memory_sample().unwrap(),
            Some(MemorySample {
                usage: 1048576,
                refaults: 42,
                major_faults: 3,
                file_bytes: 8192
            })
        );
        // Before Linux 5.9: one refault counter.
        fs::write(
            dir.join("memory.stat"),
            "workingset_refault 9\npgmajfault 1\n",
        )
        .unwrap();
        assert_eq!(g.memory_sample().unwrap().unwrap().refaults, 9);

        let mut g = SandboxGroup::with_name("bunker-1-13");
        g.enable(&fake.layout, Controller::Pids).unwrap();
        assert_eq!(g.memory_sample().unwrap(), None);
    }

    #[test]
    fn v2_controller_not_delegated_fails_naming_it() {
        let (root, _) = fake_v2();
        fs::write(root.path().join("user/app/cgroup.controllers"), "cpu\n").unwrap();
        let layout = Layout::parse(
            "0::/user/app\n",
            &format!(
                "30 25 0:27 / {} rw - cgroup2 cgroup2 rw\n",
                root.path().display()
            ),
        );
        let mut g = SandboxGroup::with_name("bunker-1-4");
        let err = g
            .enable(&layout, Controller::Memory)
            .unwrap_err()
            .to_string();
        assert!(err.contains("memory"), "{err}");
        assert!(g.paths().is_empty());
    }

    #[test]
    fn an_invalid_cpu_share_is_refused() {
        let fake = fake_v1();
        let mut g = SandboxGroup::with_name("bunker-1-5");
        g.enable(&fake.layout, Controller::Cpu).unwrap();
        assert!(g.set_cpu_limit(0.0).is_err());
        assert!(g.set_cpu_limit(f64::NAN).is_err());
        g.set_cpu_limit(0.001).unwrap();
        assert_eq!(
            read(&fake.root.path().join("cpu/bunker-1-5/cpu.cfs_quota_us")),
            "1000"
        );
    }

    #[test]
    fn a_permission_error_names_the_directory() {
        let fake = fake_v1();
        let mut g = SandboxGroup::with_name("bunker-1-6");
        // A file where the hierarchy's own cgroup should be: mkdir below it fails.
        let own = fake.root.path().join("pids");
        fs::remove_dir(&own).unwrap();
        fs::write(&own, "").unwrap();
        let err = g
            .enable(&fake.layout, Controller::Pids)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("mkdir ") && err.contains("pids/bunker-1-6"),
            "{err}"
        );
    }

    #[test]
    fn destroy_kills_what_is_left_inside() {
        let fake = fake_v1();
        let mut g = SandboxGroup::with_name("bunker-1-7");
        let dir = g
            .enable(&fake.layout, Controller::Pids)
            .unwrap()
            .to_path_buf();
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap();
        g.add_process(child.id() as i32).unwrap();
        assert_eq!(g.procs().unwrap(), vec![child.id() as i32]);
        g.destroy().unwrap();
        assert!(!dir.exists());
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn a_leftover_directory_with_our_name_is_reclaimed() {
        let fake = fake_v1();
        let stale = fake.root.path().join("pids/bunker-1-8");
        fs::create_dir(&stale).unwrap();
        fs::write(stale.join("pids.max"), "5").unwrap();
        let mut g = SandboxGroup::with_name("bunker-1-8");
        g.enable(&fake.layout, Controller::Pids).unwrap();
        assert!(stale.is_dir());
        assert!(!stale.join("pids.max").exists(), "recreated fresh");
    }

    #[test]
    fn v1_hierarchies_are_joined_through_tasks_v2_through_cgroup_procs() {
        let fake = fake_v1();
        let mut g = SandboxGroup::with_name("bunker-1-9");
        let mut dirs = Vec::new();
        for c in [Controller::Memory, Controller::Pids] {
            let dir = g.enable(&fake.layout, c).unwrap().to_path_buf();
            // cgroupfs creates `tasks` in every v1 cgroup: simulate it.
            fs::write(dir.join("tasks"), "").unwrap();
            dirs.push(dir);
        }
        let files = g.open_self_join().unwrap();
        assert_eq!(files.len(), 2);
        for mut f in files {
            join_self(&mut f).unwrap();
        }
        for dir in &dirs {
            assert_eq!(read(&dir.join("tasks")), "0");
        }
        g.add_process_v2(42).unwrap();
        assert!(!dirs[0].join("cgroup.procs").exists(), "no v1 pid write");

        let (_root, layout) = fake_v2();
        let mut g = SandboxGroup::with_name("bunker-1-10");
        let dir = g.enable(&layout, Controller::Pids).unwrap().to_path_buf();
        assert!(g.open_self_join().unwrap().is_empty());
        g.add_process_v2(42).unwrap();
        assert_eq!(read(&dir.join("cgroup.procs")), "42");
    }

    #[test]
    fn a_process_joins_through_a_tasks_file_another_process_opened() {
        // The real kernel: a cgroup under our own in the pids hierarchy, joined by a shell that
        // only inherits the opened `tasks` file (as the sandbox's init does).
        let Ok(layout) = Layout::detect() else {
            return crate::skip::skip("no cgroup layout");
        };
        let mut g = SandboxGroup::new();
        let Ok(dir) = g.enable(&layout, Controller::Pids).map(Path::to_path_buf) else {
            return crate::skip::skip("cannot create a pids cgroup here");
        };
        if g.open_self_join().map_or(true, |f| f.is_empty()) {
            return crate::skip::skip("pids is not on cgroup v1 here");
        }
        let tasks = g.open_self_join().unwrap().remove(0);
        let out = std::process::Command::new("sh")
            .args(["-c", "echo 0 >&0 && exec cat /proc/self/cgroup"])
            .stdin(tasks)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            text.lines()
                .any(|l| l.contains(":pids:") && l.ends_with(&format!("/{name}"))),
            "{text}"
        );
        g.destroy().unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn names_are_unique_per_process() {
        let a = SandboxGroup::new();
        let b = SandboxGroup::new();
        assert_ne!(a.name(), b.name());
        assert!(a
            .name()
            .starts_with(&format!("bunker-{}-", std::process::id())));
    }
}
