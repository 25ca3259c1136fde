//! The one way a test gives up when its precondition is missing (not root, no cgroup layout):
//! it says so and returns — except under CI (`CI` set), which runs as root with everything
//! installed, where a skip would count as a pass: there it fails instead.
//!
//! Included by path (`#[path = ".../test-support/skip.rs"] mod skip;`) in each crate's tests,
//! so the rule is written once without a crate of its own.

/// Call as `return skip("needs root");` from a test.
pub fn skip(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("cannot run under CI: {why} (CI runs as root with every test dependency; a skip there would count as a pass)");
    }
    eprintln!("skipped: {why}");
}
