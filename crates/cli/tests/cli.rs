//! Transcript tests of the CLI surface: help, check, schema, errors and exit codes.
// Helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bunker, stderr, stdout};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn docs(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(name)
}

#[test]
fn every_command_has_help_with_examples() {
    for cmd in ["run", "check", "schema", "doctor"] {
        let out = bunker().args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success(), "{cmd} --help failed");
        let text = stdout(&out);
        assert!(
            text.contains("Examples:"),
            "{cmd} --help has no examples:\n{text}"
        );
    }
}

#[test]
fn schema_command_matches_the_shipped_schema() {
    let out = bunker().arg("schema").output().unwrap();
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shipped: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(docs("policy.schema.json")).unwrap())
            .unwrap();
    assert_eq!(
        printed, shipped,
        "docs/policy.schema.json is stale: run `bunker schema`"
    );
}

#[test]
fn report_schema_matches_the_shipped_schema() {
    let out = bunker().args(["schema", "--report"]).output().unwrap();
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shipped: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(docs("report.schema.json")).unwrap())
            .unwrap();
    assert_eq!(
        printed, shipped,
        "docs/report.schema.json is stale: run `bunker schema --report`"
    );
}

#[test]
fn check_prints_the_effective_policy() {
    let out = bunker()
        .arg("check")
        .arg(fixture("app.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let policy: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Machine-specific paths (the fixture's directory, PATH lookups) are replaced for the snapshot.
    let text = serde_json::to_string_pretty(&policy).unwrap().replace(
        fixture("").to_str().unwrap().trim_end_matches('/'),
        "<fixtures>",
    );
    insta::assert_snapshot!("check_app_policy", text);
}

#[test]
fn check_subset_of() {
    let narrow = bunker()
        .arg("check")
        .arg(fixture("narrow.json"))
        .arg("--subset-of")
        .arg(fixture("app.json"))
        .output()
        .unwrap();
    assert_eq!(narrow.status.code(), Some(0), "{}", stderr(&narrow));
    let wide = bunker()
        .arg("check")
        .arg(fixture("app.json"))
        .arg("--subset-of")
        .arg(fixture("narrow.json"))
        .output()
        .unwrap();
    assert_eq!(wide.status.code(), Some(1));
    assert!(
        stderr(&wide).contains("is not a subset of"),
        "{}",
        stderr(&wide)
    );
}

#[test]
fn check_reports_file_path_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let bad = common::write_file(dir.path(), "bad.json", r#"{"limits": {"memory": "lots"}}"#);
    let out = bunker().arg("check").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(120));
    let err = stderr(&out);
    assert!(err.contains("bad.json"), "{err}");
    assert!(err.contains("limits.memory"), "{err}");
}

#[test]
fn run_with_a_bad_policy_runs_nothing_and_exits_120() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let bad = common::write_file(dir.path(), "bad.json", r#"{"allow": {"nett": []}}"#);
    let out = bunker()
        .arg("run")
        .arg("--policy")
        .arg(&bad)
        .args(["--report", "json", "--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(120), "{}", stderr(&out));
    assert!(!marker.exists());
    let report = common::report(&out);
    assert_eq!(report["status"], "policy_error");
    assert!(report["error"].as_str().unwrap().contains("nett"));
}

#[test]
fn run_with_a_bad_flag_value_exits_120() {
    let out = bunker()
        .args(["run", "--memory", "12 parsecs", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(120), "{}", stderr(&out));
    assert!(stderr(&out).contains("limits.memory"), "{}", stderr(&out));
}

#[test]
fn run_without_a_command_is_a_usage_error() {
    let out = bunker().args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn report_fd_receives_the_report() {
    // The shell opens fd 3 on a file; bunker writes the report there and nothing to stderr.
    let dir = tempfile::tempdir().unwrap();
    let report_file = dir.path().join("report.json");
    let script = format!(
        "exec 3>{} && {} run --report-fd 3 -- /bin/true",
        report_file.display(),
        common::bunker_bin().display()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&report_file).unwrap();
    let report: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(report["status"], "ok");
    assert!(!stderr(&out).contains("\"status\""));
}

#[test]
fn missing_and_unexecutable_commands_are_explained() {
    let out = bunker()
        .args(["run", "--", "no-such-command-here"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("no-such-command-here: command not found"),
        "{}",
        stderr(&out)
    );
    let dir = common::shared_tempdir();
    let data = common::write_file(dir.path(), "data.txt", "not a program");
    let out = bunker().arg("run").arg("--").arg(&data).output().unwrap();
    assert_eq!(out.status.code(), Some(126));
    assert!(stderr(&out).contains("cannot execute"), "{}", stderr(&out));
}

#[test]
fn audit_modes_that_are_not_built_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    for mode in ["seccomp-unotify", "ebpf"] {
        let policy = common::write_file(
            dir.path(),
            "audit.json",
            &format!(r#"{{"extends": ["default"], "kernel": {{"audit": "{mode}"}}}}"#),
        );
        let out = bunker()
            .arg("run")
            .arg("--policy")
            .arg(&policy)
            .args(["--", "touch"])
            .arg(&marker)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(121), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("audit mode \"{mode}\" is not implemented")),
            "{}",
            stderr(&out)
        );
        assert!(!marker.exists());
    }
}

#[test]
fn js_options_without_the_runtime_layer_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policy = common::write_file(
        dir.path(),
        "js.json",
        r#"{"extends": ["default"], "js": {"eval": false}}"#,
    );
    let out = bunker()
        .arg("run")
        .arg("--policy")
        .arg(&policy)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(121), "{}", stderr(&out));
    assert!(stderr(&out).contains("js.eval"), "{}", stderr(&out));
}

#[test]
fn a_policy_without_default_gets_a_hint_when_nothing_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let policy = common::write_file(dir.path(), "bare.json", "{}");
    let out = bunker()
        .arg("run")
        .arg("--policy")
        .arg(&policy)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("\"extends\": [\"default\"]"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn doctor_reports_every_layer_and_exits_by_the_default_policy() {
    let out = bunker().args(["doctor", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = &report["default_policy"];
    for layer in [
        "namespaces",
        "filesystem",
        "landlock",
        "seccomp",
        "memory_limit",
        "network",
    ] {
        assert!(layers[layer].is_string(), "no {layer} in {report}");
    }
    let enforced = report["default_policy_enforced"].as_bool().unwrap();
    assert_eq!(out.status.code(), Some(if enforced { 0 } else { 1 }));
    if common::is_root() {
        // Root on this machine kind can enforce every layer of the default policy.
        assert!(enforced, "{report}");
        // Rootless, the cgroups are not delegated: memory and pids are off, and doctor says so.
        let out = common::bunker_as_nobody()
            .args(["doctor", "--json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["default_policy"]["memory_limit"], "off", "{report}");
        assert_eq!(report["default_policy"]["landlock"], "on", "{report}");
        let failed: Vec<&str> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["ok"] == false)
            .filter_map(|f| f["check"].as_str())
            .collect();
        assert!(failed.contains(&"cgroup memory limit"), "{failed:?}");
    }
}

#[test]
fn best_effort_limits_that_do_not_hold_are_warned_about() {
    let out = bunker().args(["run", "--", "true"]).output().unwrap();
    assert!(out.status.success());
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    if common::is_root() {
        // Rootless there is no cgroup delegation here: the default profile's best-effort memory
        // and pids limits do not hold, and the run says so.
        let out = common::bunker_as_nobody()
            .args(["run", "--", "true"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("warning: limits.memory is not enforced"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn sandbox_is_an_alias_of_policy() {
    let dir = tempfile::tempdir().unwrap();
    // A policy whose hostname shows that this file, not the default profile, was used.
    let policy = common::write_file(
        dir.path(),
        "named.json",
        r#"{"extends": ["default"], "kernel": {"hostname": "from-sandbox-flag"}}"#,
    );
    let out = bunker()
        .arg("run")
        .arg(format!("--sandbox={}", policy.display()))
        .args(["--", "cat", "/proc/sys/kernel/hostname"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "from-sandbox-flag");
}
