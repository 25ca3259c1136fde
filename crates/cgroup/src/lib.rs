//! cgroups for sandboxes, v2 and v1: detection, creation under the supervisor's own cgroup,
//! limits, accounting and removal. No unsafe code: this is file I/O on cgroupfs, and every function
//! takes the cgroup filesystem root as a path so tests run against a fake tree.
#![forbid(unsafe_code)]
