//! Which hierarchy holds which controller, and where the supervisor's own cgroup is in each.
//!
//! The kernel tells us two things: `/proc/self/cgroup` lists, per hierarchy, the controllers bound
//! to it and our path in it (`4:memory:/a/b`, `0::/a/b` for v2); `/proc/self/mountinfo` tells
//! where each hierarchy is mounted and which part of it (the mount's root — not `/` inside a
//! container or a cgroup namespace). Our own cgroup's directory is the mount point plus our path
//! relative to the mount's root. Nothing is assumed about `/sys/fs/cgroup`: hosts mount v1
//! controllers there, or v2 there, or v2 under `unified`, or mix them (as this project's
//! machines do: memory, pids and cpu on v1, an empty v2 at `unified`).

use std::path::{Path, PathBuf};

use crate::error::CgroupError;

/// The controllers bunker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Controller {
    /// Memory limit, OOM events, peak usage.
    Memory,
    /// Process/thread count limit.
    Pids,
    /// CPU bandwidth (quota).
    Cpu,
    /// CPU time accounting (v1 `cpuacct`; on v2 every cgroup has `cpu.stat`).
    CpuAcct,
}

impl Controller {
    /// The v1 name of the controller, as in mount options and `/proc/self/cgroup`.
    pub fn v1_name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
            Controller::CpuAcct => "cpuacct",
        }
    }

    /// The v2 name, as in `cgroup.controllers`; `None` for accounting that needs no controller.
    pub fn v2_name(self) -> Option<&'static str> {
        match self {
            Controller::Memory => Some("memory"),
            Controller::Pids => Some("pids"),
            Controller::Cpu => Some("cpu"),
            Controller::CpuAcct => None,
        }
    }
}

/// cgroup version of a hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// One mounted hierarchy that the supervisor is a member of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub version: Version,
    /// v1: the controllers bound to the hierarchy (from the mount options); v2: those listed in
    /// our own cgroup's `cgroup.controllers` (the ones our parent delegated to us).
    pub controllers: Vec<String>,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The directory of the supervisor's own cgroup in it.
    pub own_dir: PathBuf,
}

impl Hierarchy {
    /// Whether this hierarchy can provide `controller`.
    pub fn provides(&self, controller: Controller) -> bool {
        match self.version {
            Version::V1 => self.controllers.iter().any(|c| c == controller.v1_name()),
            Version::V2 => match controller.v2_name() {
                Some(name) => self.controllers.iter().any(|c| c == name),
                None => true,
            },
        }
    }
}

/// The hierarchies of this process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub hierarchies: Vec<Hierarchy>,
}

impl Layout {
    /// Reads the layout of the calling process from /proc/self.
    pub fn detect() -> Result<Layout, CgroupError> {
        Layout::from_proc(Path::new("/proc/self"))
    }

    /// The hierarchies that provide `controllers`, for the calling process. Where the
    /// hierarchies are mounted as hosts conventionally mount them (v1 at
    /// `/sys/fs/cgroup/<controllers>`, v2 at `/sys/fs/cgroup/unified` or `/sys/fs/cgroup`, each
    /// the whole hierarchy), each mount is confirmed with `statmount` alone: formatting all of
    /// `/proc/self/mountinfo` costs ~0.1 ms here, on the sandbox's start-up path. Anything else —
    /// another mount point, a mount of part of a hierarchy, a kernel before 6.11 — falls back to
    /// [`Layout::detect`], filtered to the same hierarchies.
    pub fn detect_for(controllers: &[Controller]) -> Result<Layout, CgroupError> {
        let proc_cgroup = crate::group::read_kernel_file(Path::new("/proc/self/cgroup"))
            .map_err(|e| CgroupError::io("read", "/proc/self/cgroup", e))?;
        let conventional = Layout::at_conventional_mounts(&proc_cgroup, controllers, |p| {
            bunker_sys::mount::mount_facts(p).ok().flatten()
        });
        if let Some(layout) = conventional {
            return Ok(layout);
        }
        let mut layout = Layout::detect()?;
        layout.keep_providers_of(controllers);
        Ok(layout)
    }

    /// Keeps only the hierarchies [`Layout::hierarchy_for`] picks for `controllers`.
    pub fn keep_providers_of(&mut self, controllers: &[Controller]) {
        let keep: Vec<Hierarchy> = controllers
            .iter()
            .filter_map(|c| self.hierarchy_for(*c).cloned())
            .fold(Vec::new(), |mut acc, h| {
                if !acc.contains(&h) {
                    acc.push(h);
                }
                acc
            });
        self.hierarchies = keep;
    }

    /// [`Layout::detect_for`]'s look at the conventional mount points, `facts` telling what is
    /// mounted at a path (`None`: not a mount root, or unknown). `None` unless every controller
    /// was found this way.
    pub fn at_conventional_mounts(
        proc_cgroup: &str,
        controllers: &[Controller],
        facts: impl Fn(&Path) -> Option<bunker_sys::mount::MountFacts>,
    ) -> Option<Layout> {
        let base = Path::new(CONVENTIONAL_ROOT);
        let whole = |m: &bunker_sys::mount::MountFacts, fs_type: &str| {
            m.fs_type == fs_type && m.root == "/"
        };
        let mut v1 = Vec::new();
        let mut v2 = None;
        for (names, path) in hierarchy_lines(proc_cgroup) {
            if names.is_empty() {
                v2 = Some(path);
            } else {
                v1.push((names, path));
            }
        }
        let mut layout = Layout::default();
        for controller in controllers {
            let v1_line = v1
                .iter()
                .find(|(names, _)| names.split(',').any(|n| n == controller.v1_name()));
            let hierarchy = match (v1_line, v2) {
                (Some((names, path)), _) => {
                    let mount_point = base.join(names);
                    let m = facts(&mount_point).filter(|m| whole(m, "cgroup"))?;
                    let options: Vec<&str> = m.options.split(',').collect();
                    if !names.split(',').all(|n| options.contains(&n)) {
                        return None;
                    }
                    Hierarchy {
                        version: Version::V1,
                        controllers: names.split(',').map(str::to_string).collect(),
                        own_dir: below(&mount_point, path)?,
                        mount_point,
                    }
                }
                (None, Some(path)) => {
                    let mount_point = [base.join("unified"), base.to_path_buf()]
                        .into_iter()
                        .find(|p| facts(p).is_some_and(|m| whole(&m, "cgroup2")))?;
                    let own_dir = below(&mount_point, path)?;
                    Hierarchy {
                        version: Version::V2,
                        controllers: delegated(&own_dir),
                        mount_point,
                        own_dir,
                    }
                }
                (None, None) => return None,
            };
            if !layout.hierarchies.contains(&hierarchy) {
                layout.hierarchies.push(hierarchy);
            }
        }
        // What `hierarchy_for` would pick must be what was found: a v2 hierarchy that does not
        // have a controller is an answer only `detect` can give with its reasons.
        controllers
            .iter()
            .all(|c| layout.hierarchy_for(*c).is_some())
            .then_some(layout)
    }

    /// Reads `<proc_dir>/cgroup` and `<proc_dir>/mountinfo`.
    pub fn from_proc(proc_dir: &Path) -> Result<Layout, CgroupError> {
        let read = |name: &str| {
            let path = proc_dir.join(name);
            crate::group::read_kernel_file(&path).map_err(|e| CgroupError::io("read", path, e))
        };
        Ok(Layout::parse(&read("cgroup")?, &read("mountinfo")?))
    }

    /// Builds the layout from the text of `/proc/<pid>/cgroup` and `/proc/<pid>/mountinfo`.
    /// For v2 it also reads `cgroup.controllers` of our own cgroup, through the mount points
    /// found (real paths, or a fake tree in tests). Lines it cannot use are skipped: a host
    /// may have hierarchies bunker has no use for.
    pub fn parse(proc_cgroup: &str, mountinfo: &str) -> Layout {
        let mounts: Vec<Mount> = mountinfo.lines().filter_map(Mount::parse).collect();
        let mut hierarchies = Vec::new();
        for (controllers, path) in hierarchy_lines(proc_cgroup) {
            if controllers.is_empty() {
                // The v2 hierarchy.
                let Some((mount, own_dir)) = mounts
                    .iter()
                    .filter(|m| m.fstype == "cgroup2")
                    .find_map(|m| m.own_dir(path).map(|d| (m, d)))
                else {
                    continue;
                };
                hierarchies.push(Hierarchy {
                    version: Version::V2,
                    controllers: delegated(&own_dir),
                    mount_point: mount.mount_point.clone(),
                    own_dir,
                });
            } else {
                let names: Vec<&str> = controllers.split(',').collect();
                let found = mounts
                    .iter()
                    .filter(|m| m.fstype == "cgroup")
                    .filter(|m| names.iter().all(|n| m.super_options.iter().any(|o| o == n)))
                    .find_map(|m| m.own_dir(path).map(|d| (m, d)));
                if let Some((mount, own_dir)) = found {
                    hierarchies.push(Hierarchy {
                        version: Version::V1,
                        controllers: names.iter().map(|n| n.to_string()).collect(),
                        mount_point: mount.mount_point.clone(),
                        own_dir,
                    });
                }
            }
        }
        Layout { hierarchies }
    }

    /// The hierarchy that provides `controller`. A controller is bound to at most one hierarchy,
    /// so v1 and v2 cannot both list it — except `cpuacct`-style accounting, which every v2
    /// cgroup has: a v1 `cpuacct` hierarchy is preferred there, as it is the one the kernel
    /// charges when the controller is bound to v1.
    pub fn hierarchy_for(&self, controller: Controller) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .find(|h| h.version == Version::V1 && h.provides(controller))
            .or_else(|| {
                self.hierarchies
                    .iter()
                    .find(|h| h.version == Version::V2 && h.provides(controller))
            })
    }

    /// Like [`Layout::hierarchy_for`], with an error naming the controller.
    pub fn require(&self, controller: Controller) -> Result<&Hierarchy, CgroupError> {
        self.hierarchy_for(controller).ok_or_else(|| {
            // Say so when v2 exists but our parent did not delegate the controller to us.
            match self.hierarchies.iter().find(|h| h.version == Version::V2) {
                Some(h)
                    if controller.v2_name().is_some()
                        && !self
                            .hierarchies
                            .iter()
                            .any(|h| h.version == Version::V1 && h.provides(controller))
                        && !h.controllers.is_empty() =>
                {
                    CgroupError::Unavailable {
                        controller: controller.v1_name().to_string(),
                        path: h.own_dir.clone(),
                        reason: format!(
                        "not in cgroup.controllers ({}): the parent cgroup does not delegate it",
                        h.controllers.join(" ")
                    ),
                    }
                }
                _ => CgroupError::NotMounted {
                    controller: controller.v1_name().to_string(),
                },
            }
        })
    }
}

/// Where hosts conventionally mount cgroup hierarchies.
const CONVENTIONAL_ROOT: &str = "/sys/fs/cgroup";

/// The lines of `/proc/<pid>/cgroup` as (controllers, path) — controllers empty for the v2
/// hierarchy — without named hierarchies (systemd's), which carry no controller.
fn hierarchy_lines(proc_cgroup: &str) -> impl Iterator<Item = (&str, &str)> {
    proc_cgroup.lines().filter_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        (!controllers.split(',').any(|n| n.starts_with("name="))).then_some((controllers, path))
    })
}

/// The controllers listed in a v2 cgroup's `cgroup.controllers` (those its parent delegates).
fn delegated(own_dir: &Path) -> Vec<String> {
    crate::group::read_kernel_file(&own_dir.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// `mount_point` joined with a cgroup path relative to the mount's root, unless it climbs out
/// (a path with `..` lies outside our cgroup namespace's root: not reachable).
fn below(mount_point: &Path, cgroup_path: &str) -> Option<PathBuf> {
    let rel = cgroup_path.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if rel.is_empty() {
        mount_point.to_path_buf()
    } else {
        mount_point.join(rel)
    })
}

/// One line of mountinfo, the fields we need.
#[derive(Debug)]
struct Mount {
    /// The part of the filesystem mounted (field 4).
    root: String,
    mount_point: PathBuf,
    fstype: String,
    super_options: Vec<String>,
}

impl Mount {
    fn parse(line: &str) -> Option<Mount> {
        // id parent maj:min root mount_point options [optional fields...] - fstype source super
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 6 || right.len() < 3 {
            return None;
        }
        Some(Mount {
            root: unescape(left[3]),
            mount_point: PathBuf::from(unescape(left[4])),
            fstype: right[0].to_string(),
            super_options: right[2].split(',').map(str::to_string).collect(),
        })
    }

    /// Our directory in this mount, given our cgroup path: only when the path lies below the
    /// mounted root (otherwise this mount does not show our cgroup).
    fn own_dir(&self, cgroup_path: &str) -> Option<PathBuf> {
        let root = self.root.trim_end_matches('/');
        let rel = if root.is_empty() {
            cgroup_path
        } else if cgroup_path == root {
            ""
        } else {
            cgroup_path
                .strip_prefix(root)
                .filter(|r| r.starts_with('/'))?
        };
        below(&self.mount_point, rel)
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = |b: &u8| (b'0'..=b'7').contains(b);
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(octal) {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This project's machines: v1 for everything, an empty v2 at `unified`, memory in a
    /// sub-cgroup.
    const HYBRID_CGROUP: &str =
        "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n";
    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// `MountFacts` as `statmount` reports them, for a fake mount table.
    fn facts_from(
        table: &'static [(&'static str, &'static str, &'static str, &'static str)],
    ) -> impl Fn(&Path) -> Option<bunker_sys::mount::MountFacts> {
        move |p: &Path| {
            table
                .iter()
                .find(|(at, ..)| Path::new(at) == p)
                .map(
                    |(_, fs_type, root, options)| bunker_sys::mount::MountFacts {
                        fs_type: fs_type.to_string(),
                        root: root.to_string(),
                        options: options.to_string(),
                    },
                )
        }
    }

    const HYBRID_FACTS: &[(&str, &str, &str, &str)] = &[
        ("/sys/fs/cgroup/cpu", "cgroup", "/", "cpu"),
        ("/sys/fs/cgroup/cpuacct", "cgroup", "/", "cpuacct"),
        ("/sys/fs/cgroup/memory", "cgroup", "/", "memory"),
        ("/sys/fs/cgroup/pids", "cgroup", "/", "pids"),
        ("/sys/fs/cgroup/unified", "cgroup2", "/", ""),
    ];

    #[test]
    fn conventional_mounts_give_what_mountinfo_gives() {
        let all = [
            Controller::Memory,
            Controller::Pids,
            Controller::Cpu,
            Controller::CpuAcct,
        ];
        let fast =
            Layout::at_conventional_mounts(HYBRID_CGROUP, &all, facts_from(HYBRID_FACTS)).unwrap();
        let mut full = Layout::parse(HYBRID_CGROUP, HYBRID_MOUNTS);
        full.keep_providers_of(&all);
        assert_eq!(fast, full);
        assert_eq!(fast.hierarchies.len(), 4);
    }

    #[test]
    fn anything_unconventional_is_left_to_mountinfo() {
        let memory = [Controller::Memory];
        // Not mounted where expected.
        assert_eq!(
            Layout::at_conventional_mounts(HYBRID_CGROUP, &memory, facts_from(&[])),
            None
        );
        // Only part of the hierarchy mounted there: our path is relative to its root, not to
        // the mount's.
        const PART: &[(&str, &str, &str, &str)] =
            &[("/sys/fs/cgroup/memory", "cgroup", "/process_api", "memory")];
        assert_eq!(
            Layout::at_conventional_mounts(HYBRID_CGROUP, &memory, facts_from(PART)),
            None
        );
        // Another hierarchy (or filesystem) at that name.
        const OTHER: &[(&str, &str, &str, &str)] =
            &[("/sys/fs/cgroup/memory", "cgroup", "/", "pids")];
        assert_eq!(
            Layout::at_conventional_mounts(HYBRID_CGROUP, &memory, facts_from(OTHER)),
            None
        );
        const TMPFS: &[(&str, &str, &str, &str)] =
            &[("/sys/fs/cgroup/memory", "tmpfs", "/", "memory")];
        assert_eq!(
            Layout::at_conventional_mounts(HYBRID_CGROUP, &memory, facts_from(TMPFS)),
            None
        );
        // A path that climbs out of the hierarchy.
        assert_eq!(
            Layout::at_conventional_mounts("4:memory:/../x\n", &memory, facts_from(HYBRID_FACTS)),
            None
        );
    }

    #[test]
    fn hybrid_host_puts_each_controller_on_its_v1_hierarchy() {
        let layout = Layout::parse(HYBRID_CGROUP, HYBRID_MOUNTS);
        let mem = layout.hierarchy_for(Controller::Memory).unwrap();
        assert_eq!(mem.version, Version::V1);
        assert_eq!(
            mem.own_dir,
            Path::new("/sys/fs/cgroup/memory/process_api/abc")
        );
        let pids = layout.hierarchy_for(Controller::Pids).unwrap();
        assert_eq!(pids.own_dir, Path::new("/sys/fs/cgroup/pids"));
        let acct = layout.hierarchy_for(Controller::CpuAcct).unwrap();
        assert_eq!(acct.own_dir, Path::new("/sys/fs/cgroup/cpuacct"));
        assert_eq!(acct.version, Version::V1);
        let cpu = layout.hierarchy_for(Controller::Cpu).unwrap();
        assert_eq!(cpu.own_dir, Path::new("/sys/fs/cgroup/cpu"));
    }

    #[test]
    fn combined_cpu_cpuacct_hierarchy_is_found_for_both() {
        let layout = Layout::parse(
            "3:cpu,cpuacct:/user.slice\n0::/user.slice\n",
            "30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
        );
        let cpu = layout.hierarchy_for(Controller::Cpu).unwrap();
        let acct = layout.hierarchy_for(Controller::CpuAcct).unwrap();
        assert_eq!(cpu, acct);
        assert_eq!(
            cpu.own_dir,
            Path::new("/sys/fs/cgroup/cpu,cpuacct/user.slice")
        );
    }

    #[test]
    fn pure_v2_reads_delegated_controllers() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("user.slice/app.scope");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(own.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let mounts = format!(
            "30 25 0:27 / {} rw - cgroup2 cgroup2 rw\n",
            dir.path().display()
        );
        let layout = Layout::parse("0::/user.slice/app.scope\n", &mounts);
        let mem = layout.hierarchy_for(Controller::Memory).unwrap();
        assert_eq!(mem.version, Version::V2);
        assert_eq!(mem.own_dir, own);
        assert!(layout.hierarchy_for(Controller::CpuAcct).is_some());
    }

    #[test]
    fn v2_without_delegation_names_the_controller() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu\n").unwrap();
        let mounts = format!(
            "30 25 0:27 / {} rw - cgroup2 cgroup2 rw\n",
            dir.path().display()
        );
        let layout = Layout::parse("0::/\n", &mounts);
        let err = layout.require(Controller::Memory).unwrap_err().to_string();
        assert!(err.contains("memory") && err.contains("delegate"), "{err}");
        // Accounting works anyway: every v2 cgroup has cpu.stat.
        assert!(layout.require(Controller::CpuAcct).is_ok());
    }

    #[test]
    fn missing_hierarchy_is_not_mounted() {
        let layout = Layout::parse("4:memory:/\n", "");
        let err = layout.require(Controller::Memory).unwrap_err();
        assert!(matches!(err, CgroupError::NotMounted { .. }), "{err}");
    }

    #[test]
    fn container_mount_root_is_stripped() {
        // A container sees the hierarchy mounted from its own cgroup, not from the root.
        let layout = Layout::parse(
            "4:memory:/docker/abc/inner\n",
            "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n",
        );
        let mem = layout.hierarchy_for(Controller::Memory).unwrap();
        assert_eq!(mem.own_dir, Path::new("/sys/fs/cgroup/memory/inner"));
        // A path outside the mount's root is not reachable through it.
        let layout = Layout::parse(
            "4:memory:/other\n",
            "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n",
        );
        assert!(layout.hierarchy_for(Controller::Memory).is_none());
        // Nor is a prefix that is not a path component.
        let layout = Layout::parse(
            "4:memory:/docker/abcdef\n",
            "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n",
        );
        assert!(layout.hierarchy_for(Controller::Memory).is_none());
    }

    #[test]
    fn escaped_mount_points_are_decoded() {
        let layout = Layout::parse(
            "8:pids:/\n",
            "39 31 0:36 / /mnt/cg\\040roups/pids rw - cgroup cgroup rw,pids\n",
        );
        assert_eq!(
            layout.hierarchy_for(Controller::Pids).unwrap().own_dir,
            Path::new("/mnt/cg roups/pids")
        );
    }

    #[test]
    fn this_host_layout_can_be_read() {
        // Whatever the host is, detection must not fail.
        let _ = Layout::detect().unwrap();
    }
}
