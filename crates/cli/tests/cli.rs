//! Transcript tests of the CLI surface: help, check, schema, errors and exit codes.
// Helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bunker, stderr, stdout};
use std::path::PathBuf;
use std::process::Output;

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

/// `bunker check FILE` and `bunker run --policy FILE -- touch MARKER`, and whether the marker
/// was made (`marker_dir` must be writable under the policy for that to mean something).
fn check_and_run(marker_dir: &std::path::Path, policy: &std::path::Path) -> (Output, Output, bool) {
    let marker = marker_dir.join("ran");
    let check = bunker().arg("check").arg(policy).output().unwrap();
    let run = bunker()
        .arg("run")
        .arg("--policy")
        .arg(policy)
        .args(["--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    (check, run, marker.exists())
}

fn masked(out: &Output, dir: &std::path::Path) -> String {
    stderr(out).replace(dir.to_str().unwrap(), "<dir>")
}

#[test]
fn settings_no_layer_enforces_are_policy_errors_in_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut transcript = String::new();
    for (name, setting) in [
        ("audit-unotify", r#""kernel": {"audit": "seccomp-unotify"}"#),
        ("audit-ebpf", r#""kernel": {"audit": "ebpf"}"#),
        ("js", r#""js": {"eval": false}"#),
        (
            "namespaces",
            r#""kernel": {"namespaces": ["user", "mount"]}"#,
        ),
    ] {
        let policy = common::write_file(
            dir.path(),
            &format!("{name}.json"),
            // The directory is writable: the marker would show a run that should not happen.
            &format!(r#"{{"extends": ["default"], "allow": {{"write": ["."]}}, {setting}}}"#),
        );
        let (check, run, ran) = check_and_run(dir.path(), &policy);
        assert_eq!(check.status.code(), Some(120), "{}", stderr(&check));
        assert_eq!(run.status.code(), Some(120), "{}", stderr(&run));
        assert!(!ran, "{name}: the program ran");
        // check and run say the same thing: the file, the key, what is expected.
        assert_eq!(masked(&check, dir.path()), masked(&run, dir.path()));
        transcript.push_str(&masked(&check, dir.path()));
    }
    insta::assert_snapshot!("unenforced_settings", transcript);

    // What only root can build: check refuses it for an ordinary user, as run would.
    let shared = common::shared_tempdir();
    let no_user = common::write_file(
        shared.path(),
        "no-user.json",
        r#"{"extends": ["default"], "kernel": {"namespaces": ["pid", "mount", "net"]}}"#,
    );
    if common::is_root() {
        let out = bunker().arg("check").arg(&no_user).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        for args in [vec!["check"], vec!["run", "--policy"]] {
            let mut cmd = common::bunker_as_nobody();
            cmd.args(&args).arg(&no_user);
            if args[0] == "run" {
                cmd.args(["--", "true"]);
            }
            let out = cmd.output().unwrap();
            assert_ne!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
            assert!(
                stderr(&out).contains(
                    "without \"user\" in kernel.namespaces only root can build a sandbox"
                ),
                "{args:?}: {}",
                stderr(&out)
            );
        }
    }
}

#[test]
fn check_catches_grants_that_run_would_refuse_or_skip() {
    let dir = common::shared_tempdir();
    // A missing write path: run used to fail with a setup error (121) after check said "valid".
    let write = common::write_file(
        dir.path(),
        "write.json",
        r#"{"extends": ["default"], "allow": {"write": ["./out"]}}"#,
    );
    let (check, run, ran) = check_and_run(&dir.path().join("out"), &write);
    assert_eq!(check.status.code(), Some(120), "{}", stderr(&check));
    assert_eq!(run.status.code(), Some(120), "{}", stderr(&run));
    assert!(!ran);
    let mut transcript = format!("$ bunker check write.json\n{}", masked(&check, dir.path()));
    // Control: once it exists, both accept it.
    std::fs::create_dir(dir.path().join("out")).unwrap();
    // World-writable: as root the sandbox writes as another uid (see security-model.md).
    std::fs::set_permissions(
        dir.path().join("out"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let (check, run, ran) = check_and_run(&dir.path().join("out"), &write);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert!(ran);

    // A missing read path: a warning, and an error with --strict.
    let read = common::write_file(
        dir.path(),
        "read.json",
        r#"{"extends": ["default"], "allow": {"read": ["./data", "./out"]}}"#,
    );
    let check = bunker().arg("check").arg(&read).output().unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    transcript.push_str(&format!(
        "$ bunker check read.json\n{}",
        masked(&check, dir.path())
    ));
    let strict = bunker()
        .args(["check", "--strict"])
        .arg(&read)
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(120), "{}", stderr(&strict));
    assert!(strict.stdout.is_empty());
    transcript.push_str(&format!(
        "$ bunker check --strict read.json\n{}",
        masked(&strict, dir.path())
    ));
    insta::assert_snapshot!("check_missing_grants", transcript);
}

#[test]
fn symlinked_grants_are_named_with_what_to_grant_instead() {
    let dir = common::shared_tempdir();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    common::write_file(&real, "notes.txt", "the real file\n");
    std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
    let link_policy = common::write_file(
        dir.path(),
        "link.json",
        r#"{"extends": ["default"], "allow": {"read": ["./link"]}}"#,
    );
    let check = bunker().arg("check").arg(&link_policy).output().unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    insta::assert_snapshot!("check_symlinked_grant", masked(&check, dir.path()));
    let expected = format!("grant \"{}\" instead", real.display());
    assert!(stderr(&check).contains(&expected), "{}", stderr(&check));
    for (mode, make) in common::modes() {
        let out = make()
            .args(["run", "--policy"])
            .arg(&link_policy)
            .arg("--")
            .arg("cat")
            .arg(dir.path().join("link/notes.txt"))
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        assert!(stderr(&out).contains(&expected), "{mode}: {}", stderr(&out));
        // Control: what the warning says to grant works, through the link too.
        let out = make()
            .args(["run", "--policy"])
            .arg(&link_policy)
            .arg("--allow-read")
            .arg(&real)
            .arg("--")
            .arg("cat")
            .arg(dir.path().join("link/notes.txt"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        assert_eq!(stdout(&out), "the real file\n");
        assert!(
            !stderr(&out).contains("symlink"),
            "{mode}: {}",
            stderr(&out)
        );
    }
    // A write grant reached through a symlinked directory is refused by check and run alike.
    let through = common::write_file(
        dir.path(),
        "through.json",
        r#"{"extends": ["default"], "allow": {"write": ["./link"]}, "deny": {}}"#,
    );
    std::fs::create_dir(real.join("sub")).unwrap();
    let through_sub = common::write_file(
        dir.path(),
        "through-sub.json",
        r#"{"extends": ["default"], "allow": {"write": ["./link/sub"]}}"#,
    );
    let (check, run, ran) = check_and_run(dir.path(), &through_sub);
    assert_eq!(check.status.code(), Some(120), "{}", stderr(&check));
    assert_eq!(run.status.code(), Some(120), "{}", stderr(&run));
    assert!(!ran);
    let expected = format!("grant \"{}\" instead", real.join("sub").display());
    assert!(stderr(&check).contains(&expected), "{}", stderr(&check));
    // A link that is itself the grant only warns (the link is recreated inside).
    let check = bunker().arg("check").arg(&through).output().unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert!(
        stderr(&check).contains("is a symlink"),
        "{}",
        stderr(&check)
    );
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

/// A directory the unprivileged user can read, holding `agent.py` and `data.txt`.
fn project() -> tempfile::TempDir {
    let dir = common::shared_tempdir();
    common::write_file(
        dir.path(),
        "agent.py",
        "print(open('data.txt').read().strip())\n",
    );
    common::write_file(dir.path(), "data.txt", "data from the project\n");
    dir
}

#[test]
fn a_policy_from_stdin_or_inline_json_resolves_paths_against_the_cwd() {
    let dir = project();
    let policy = r#"{"extends": ["default"], "allow": {"read": ["./agent.py", "data.txt"]}}"#;
    for (mode, make) in common::modes() {
        let mut child = make()
            .current_dir(dir.path())
            .args(["run", "--policy", "-", "--", "python3", "agent.py"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(policy.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{mode} stdin: {}", stderr(&out));
        assert_eq!(stdout(&out), "data from the project\n", "{mode}");

        let out = make()
            .current_dir(dir.path())
            .args(["run", "--policy-json", policy, "--", "python3", "agent.py"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{mode} json: {}", stderr(&out));
        assert_eq!(stdout(&out), "data from the project\n", "{mode}");
    }
    // Errors name where the text came from; `check -` reads stdin too.
    let out = bunker()
        .args([
            "run",
            "--policy-json",
            r#"{"limits": {"memory": "lots"}}"#,
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(120));
    assert!(
        stderr(&out).contains("--policy-json: limits.memory: expected a size"),
        "{}",
        stderr(&out)
    );
    let out = bunker()
        .args(["check", "-"])
        .stdin(std::fs::File::open(fixture("narrow.json")).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        printed["allow"]["read"].as_array().unwrap().last().unwrap(),
        &serde_json::json!(cwd.join("data/public").display().to_string())
    );
    assert_eq!(
        printed["sources"].as_array().unwrap().last().unwrap(),
        "stdin"
    );
}

#[test]
fn set_env_sets_variables_and_refuses_what_is_not_name_value() {
    for (mode, make) in common::modes() {
        let out = make()
            .args([
                "run",
                "--set-env",
                "GREETING=hello world",
                "--set-env",
                "EQ=a=b",
            ])
            .args(["--", "sh", "-c", "echo \"$GREETING|$EQ\""])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        assert_eq!(stdout(&out), "hello world|a=b\n", "{mode}");
    }
    let mut transcript = String::new();
    for bad in ["NOVALUE", "=value", "1ST=x", "A-B=x"] {
        let out = bunker()
            .args(["run", "--set-env", bad, "--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(120), "{bad}: {}", stderr(&out));
        transcript.push_str(&stderr(&out));
    }
    insta::assert_snapshot!("set_env_errors", transcript);
}

#[test]
fn best_effort_flag_lets_a_run_go_on_without_a_limit_the_host_lacks() {
    let out = bunker()
        .args(["run", "--best-effort", "memory,disk", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid value 'disk' for '--best-effort <LIMITS>': expected one of memory, pids, cpu, cpu_time"),
        "{}",
        stderr(&out)
    );
    // Root enforces the limit; rootless (no cgroup delegation here) refuses it unless marked.
    let out = bunker()
        .args([
            "run",
            "--memory",
            "64MB",
            "--best-effort",
            "memory,pids",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    if common::is_root() {
        let strict = common::bunker_as_nobody()
            .args(["run", "--memory", "64MB", "--", "true"])
            .output()
            .unwrap();
        assert_eq!(strict.status.code(), Some(121), "{}", stderr(&strict));
        let lenient = common::bunker_as_nobody()
            .args([
                "run",
                "--memory",
                "64MB",
                "--best-effort",
                "memory",
                "--",
                "true",
            ])
            .output()
            .unwrap();
        assert_eq!(lenient.status.code(), Some(0), "{}", stderr(&lenient));
        assert!(
            stderr(&lenient).contains("warning: limits.memory is not enforced"),
            "{}",
            stderr(&lenient)
        );
    }
}

#[test]
fn a_working_directory_under_the_host_tmp_is_said_to_be_private() {
    let dir = project();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    for (mode, make) in common::modes() {
        let out = make()
            .current_dir(dir.path())
            .args(["run", "--", "sh", "-c", "echo x > written.txt"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        let expected = format!(
            "bunker: note: the working directory {} is under the host's /tmp and not granted",
            dir.path().display()
        );
        assert!(stderr(&out).contains(&expected), "{mode}: {}", stderr(&out));
        assert!(stderr(&out).contains("vanish"), "{mode}: {}", stderr(&out));
        // The note was true: the write did not reach the host.
        assert!(!dir.path().join("written.txt").exists(), "{mode}");
        // Control: granted, no note, and the file is on the host.
        let out = make()
            .current_dir(dir.path())
            .args(["run", "--allow-write", "."])
            .args(["--", "sh", "-c", "echo x > written.txt"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("bunker: note"),
            "{mode}: {}",
            stderr(&out)
        );
        assert!(dir.path().join("written.txt").exists(), "{mode}");
        std::fs::remove_file(dir.path().join("written.txt")).unwrap();
    }
    // A current directory elsewhere that the sandbox cannot see: a note in the report (shown
    // under -v), not on stderr.
    let out = bunker()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--report", "json", "--", "pwd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "/tmp\n");
    assert!(!stderr(&out).contains("bunker: note"), "{}", stderr(&out));
    let notes = common::report(&out)["enforced"]["notes"].to_string();
    assert!(
        notes.contains(&format!(
            "the current directory {} is not visible in the sandbox (no grant covers it): the program starts in /tmp",
            env!("CARGO_MANIFEST_DIR")
        )),
        "{notes}"
    );
}

#[test]
fn a_script_the_policy_does_not_grant_gets_a_hint() {
    let dir = project();
    for (mode, make) in common::modes() {
        let out = make()
            .current_dir(dir.path())
            .args(["run", "--", "python3", "agent.py"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{mode}: {}", stderr(&out));
        let script = dir.path().join("agent.py");
        let expected = format!(
            "bunker: hint: agent.py is a file on the host, but the policy grants no read of {0}, \
             so the program cannot open it: grant it with --allow-read {0}",
            script.display()
        );
        assert!(stderr(&out).contains(&expected), "{mode}: {}", stderr(&out));
        // Control: with what the hint says (and the data file), the script runs.
        let out = make()
            .current_dir(dir.path())
            .args([
                "run",
                "--allow-read",
                "agent.py",
                "--allow-read",
                "data.txt",
            ])
            .args(["--", "python3", "agent.py"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        assert_eq!(stdout(&out), "data from the project\n");
        assert!(!stderr(&out).contains("hint"), "{mode}: {}", stderr(&out));
    }
}

#[test]
fn an_elf_interpreter_the_policy_does_not_let_run_gets_a_hint() {
    let dir = common::shared_tempdir();
    // The system directories readable, none executable: curl itself is granted exec (the
    // program's binary always is), its dynamic loader is not.
    let readable: Vec<&str> = ["/usr", "/bin", "/lib", "/lib64", "/etc"]
        .into_iter()
        .filter(|p| std::path::Path::new(p).exists())
        .collect();
    let policy = common::write_file(
        dir.path(),
        "no-exec.json",
        &serde_json::json!({"allow": {"read": readable}, "set_env": {"PATH": "/usr/bin:/bin"}})
            .to_string(),
    );
    for (mode, make) in common::modes() {
        let out = make()
            .args(["run", "--policy"])
            .arg(&policy)
            .args(["--", "curl", "--version"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(126), "{mode}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("curl: cannot execute: EACCES"),
            "{mode}: {err}"
        );
        assert!(
            err.contains(
                "bunker: hint: curl needs its ELF interpreter /lib64/ld-linux-x86-64.so.2"
            ),
            "{mode}: {err}"
        );
        assert!(err.contains("--allow-exec /usr/lib"), "{mode}: {err}");
        // Control: with the default profile's grants, curl runs.
        let out = make()
            .args(["run", "--policy"])
            .arg(&policy)
            .args(["--profile", "default", "--", "curl", "--version"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        assert!(!stderr(&out).contains("hint"), "{mode}: {}", stderr(&out));
    }
}
