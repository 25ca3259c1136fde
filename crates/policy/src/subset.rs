//! Whether one policy grants nothing beyond another: what a sandboxed program that starts a
//! sandboxed child may do (narrow its rights, never widen them).
//!
//! The check is conservative: when it cannot prove that a rule of the child stays inside the
//! parent (e.g. a parent's deny glob that the child does not repeat), it reports a widening.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::net::{HostPattern, NetRule};
use crate::path::PathPattern;
use crate::types::{Enforcement, Policy, SeccompProfile};
use crate::units::format_duration;

fn landlock_rank(e: Enforcement) -> u8 {
    match e {
        Enforcement::Off => 0,
        Enforcement::BestEffort => 1,
        Enforcement::Required => 2,
    }
}

/// Whether `outer` denies everything `inner` denies (a deny.read hides a path for every kind of
/// access, so it covers deny.write/deny.exec entries too). A glob never stands in for a path:
/// globs are not expanded in the system trees (see the sandbox's walk), paths are.
fn pattern_covers(outer: &PathPattern, inner: &PathPattern) -> bool {
    match (outer, inner) {
        (PathPattern::Path(o), PathPattern::Path(i)) => i.starts_with(o),
        (PathPattern::Path(o), PathPattern::Glob(i)) => i.lies_under(o),
        (o, i) => o == i,
    }
}

/// Whether the two may match a common path.
fn pattern_overlaps(deny: &PathPattern, grant: &Path) -> bool {
    match deny {
        PathPattern::Path(d) => d.starts_with(grant) || grant.starts_with(d),
        // A match at, under or above the grant.
        PathPattern::Glob(g) => g.reaches(grant),
    }
}

fn net_deny_covers(outer: &NetRule, inner: &NetRule) -> bool {
    // In deny lists `*` also denies every address.
    let any =
        outer.host == HostPattern::AnyName && outer.port.is_none_or(|p| inner.port == Some(p));
    any || inner.is_covered_by(outer)
}

fn net_deny_overlaps(deny: &NetRule, grant: &NetRule) -> bool {
    let ports = match (deny.port, grant.port) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    (deny.host == HostPattern::AnyName && ports) || deny.overlaps(grant)
}

struct Check<'a> {
    inner: &'a Policy,
    outer: &'a Policy,
    widenings: Vec<String>,
}

impl Check<'_> {
    fn paths(&mut self) {
        let i = self.inner;
        let o = self.outer;
        // Which lists of the other policy grant each kind of access (write implies read).
        let grants: [(&str, &[PathBuf], Vec<&PathBuf>, &str); 3] = [
            (
                "read",
                &i.allow.read,
                o.allow.read.iter().chain(&o.allow.write).collect(),
                "allow.read or allow.write",
            ),
            (
                "write",
                &i.allow.write,
                o.allow.write.iter().collect(),
                "allow.write",
            ),
            (
                "exec",
                &i.allow.exec,
                o.allow.exec.iter().collect(),
                "allow.exec",
            ),
        ];
        for (name, mine, theirs, lists) in grants {
            for (idx, p) in mine.iter().enumerate() {
                if !theirs.iter().any(|q| p.starts_with(q)) {
                    self.widenings.push(format!(
                        "allow.{name}[{idx}] ({}) is not within any {lists} path of the other policy",
                        p.display()
                    ));
                }
            }
        }
        // Every deny of the other policy that touches something this policy grants must be here.
        let all_grants: Vec<&PathBuf> = i
            .allow
            .read
            .iter()
            .chain(&i.allow.write)
            .chain(&i.allow.exec)
            .collect();
        type DenyCheck<'a> = (
            &'a str,
            &'a [PathPattern],
            Vec<&'a PathBuf>,
            Vec<&'a PathPattern>,
        );
        let denies: [DenyCheck; 3] = [
            (
                "read",
                &o.deny.read,
                all_grants,
                i.deny.read.iter().collect(),
            ),
            (
                "write",
                &o.deny.write,
                i.allow.write.iter().collect(),
                i.deny.read.iter().chain(&i.deny.write).collect(),
            ),
            (
                "exec",
                &o.deny.exec,
                i.allow.exec.iter().collect(),
                i.deny.read.iter().chain(&i.deny.exec).collect(),
            ),
        ];
        for (name, theirs, my_grants, my_denies) in denies {
            for (idx, d) in theirs.iter().enumerate() {
                // A best-effort deny here keeps a rule the other policy requires only if the
                // other policy also lets it be enforced in part.
                let required = !o.deny.is_best_effort(d);
                let covering: Vec<_> = my_denies
                    .iter()
                    .filter(|mine| pattern_covers(mine, d))
                    .collect();
                let kept = covering
                    .iter()
                    .any(|mine| !(required && i.deny.is_best_effort(mine)));
                let touched = my_grants.iter().any(|g| pattern_overlaps(d, g));
                if !kept && touched {
                    let how = if covering.is_empty() {
                        "is missing"
                    } else {
                        "is only best-effort here (deny.best_effort)"
                    };
                    self.widenings
                        .push(format!("the other policy's deny.{name}[{idx}] ({d}) {how}"));
                }
            }
        }
    }

    fn net(&mut self) {
        let i = self.inner;
        let o = self.outer;
        for (idx, rule) in i.allow.net.iter().enumerate() {
            if !o.allow.net.iter().any(|theirs| rule.is_covered_by(theirs)) {
                self.widenings.push(format!(
                    "allow.net[{idx}] ({rule}) is not covered by any allow.net rule of the other policy"
                ));
            }
        }
        for (idx, d) in o.deny.net.iter().enumerate() {
            let kept = i.deny.net.iter().any(|mine| net_deny_covers(mine, d));
            let touched = i.allow.net.iter().any(|g| net_deny_overlaps(d, g));
            if !kept && touched {
                self.widenings.push(format!(
                    "the other policy's deny.net[{idx}] ({d}) is missing"
                ));
            }
        }
    }

    fn env(&mut self) {
        let i = self.inner;
        let o = self.outer;
        for (idx, name) in i.allow.env.iter().enumerate() {
            if !o.allow.env.contains(name) {
                self.widenings.push(format!(
                    "allow.env[{idx}] ({name}) is not in the other policy's allow.env"
                ));
            }
        }
        for (idx, name) in o.deny.env.iter().enumerate() {
            if i.allow.env.contains(name) && !i.deny.env.contains(name) {
                self.widenings.push(format!(
                    "the other policy's deny.env[{idx}] ({name}) is missing"
                ));
            }
        }
    }

    /// `None` means unlimited, looser than any limit.
    fn limit<T: PartialOrd + Copy>(
        &mut self,
        key: &str,
        mine: Option<T>,
        theirs: Option<T>,
        show: impl Fn(T) -> String,
    ) {
        match (mine, theirs) {
            (_, None) => {}
            (None, Some(t)) => self.widenings.push(format!(
                "{key}: no limit is looser than the other policy's {}",
                show(t)
            )),
            (Some(m), Some(t)) if m > t => self.widenings.push(format!(
                "{key}: {} is looser than the other policy's {}",
                show(m),
                show(t)
            )),
            _ => {}
        }
    }

    fn flag(&mut self, key: &str, mine: bool, theirs: bool) {
        // `theirs` is the stricter setting; turning it off widens.
        if theirs && !mine {
            self.widenings.push(format!(
                "{key}: false is weaker than the other policy's true"
            ));
        }
    }

    fn limits(&mut self) {
        let m = &self.inner.limits;
        let t = &self.outer.limits;
        let n = |v: u64| v.to_string();
        let d = |v: Duration| format_duration(v);
        self.limit("limits.memory", m.memory, t.memory, n);
        self.limit("limits.pids", m.pids, t.pids, n);
        self.limit("limits.cpu", m.cpu, t.cpu, |v: f64| v.to_string());
        self.limit("limits.timeout", m.timeout, t.timeout, d);
        self.limit("limits.cpu_time", m.cpu_time, t.cpu_time, d);
        self.limit("limits.output", Some(m.output), Some(t.output), n);
        self.limit("limits.file_size", m.file_size, t.file_size, n);
        self.limit("limits.open_files", m.open_files, t.open_files, n);
        self.limit("limits.stack", m.stack, t.stack, n);
        self.limit("limits.tmp_size", Some(m.tmp_size), Some(t.tmp_size), n);
        for name in &m.best_effort {
            if !t.best_effort.contains(name) {
                let name = serde_json::to_value(name)
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                self.widenings.push(format!(
                    "limits.best_effort: {name} may be skipped here but is required by the other policy"
                ));
            }
        }
        self.flag(
            "limits.kill_on_output_overflow",
            m.kill_on_output_overflow,
            t.kill_on_output_overflow,
        );

        let m = &self.inner.http;
        let t = &self.outer.http;
        self.limit("http.max_requests", m.max_requests, t.max_requests, n);
        self.limit(
            "http.request_timeout",
            m.request_timeout,
            t.request_timeout,
            d,
        );
        self.limit(
            "http.max_request_bytes",
            m.max_request_bytes,
            t.max_request_bytes,
            n,
        );
        self.limit(
            "http.max_response_bytes",
            m.max_response_bytes,
            t.max_response_bytes,
            n,
        );
        self.limit(
            "http.max_total_bytes",
            m.max_total_bytes,
            t.max_total_bytes,
            n,
        );
        self.flag(
            "http.block_private_ips",
            m.block_private_ips,
            t.block_private_ips,
        );

        let m = &self.inner.js;
        let t = &self.outer.js;
        if m.eval && !t.eval {
            self.widenings
                .push("js.eval: true is looser than the other policy's false".to_string());
        }
        self.limit(
            "js.max_stack_depth",
            m.max_stack_depth,
            t.max_stack_depth,
            n,
        );
        self.limit(
            "js.max_string_length",
            m.max_string_length,
            t.max_string_length,
            n,
        );
    }

    fn kernel(&mut self) {
        let m = &self.inner.kernel;
        let t = &self.outer.kernel;
        for ns in &t.namespaces {
            if !m.namespaces.contains(ns) {
                let name = serde_json::to_value(ns)
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                self.widenings.push(format!(
                    "kernel.namespaces: {name} is created by the other policy but not here"
                ));
            }
        }
        if t.seccomp == SeccompProfile::Default && m.seccomp == SeccompProfile::Off {
            self.widenings
                .push("kernel.seccomp: off is weaker than the other policy's default".to_string());
        }
        if landlock_rank(m.landlock) < landlock_rank(t.landlock) {
            let show = |e: Enforcement| {
                serde_json::to_value(e)
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            };
            self.widenings.push(format!(
                "kernel.landlock: {} is weaker than the other policy's {}",
                show(m.landlock),
                show(t.landlock)
            ));
        }
    }
}

impl Policy {
    /// `Ok` when this policy grants nothing beyond `other`: every allowed path lies under an
    /// allowed path of `other` (with `other`'s denials kept wherever they touch a grant), every
    /// net rule is covered by one of `other`'s, `allow.env` is a subset, limits are no looser
    /// (a missing limit is looser than any), HTTP limits no looser, and kernel options no weaker
    /// (namespaces a superset, seccomp not off where `other` has it, landlock not weaker).
    /// Otherwise each widening, in words.
    pub fn is_subset_of(&self, other: &Policy) -> Result<(), Vec<String>> {
        let mut check = Check {
            inner: self,
            outer: other,
            widenings: Vec::new(),
        };
        check.paths();
        check.net();
        check.env();
        check.limits();
        check.kernel();
        if check.widenings.is_empty() {
            Ok(())
        } else {
            Err(check.widenings)
        }
    }
}
