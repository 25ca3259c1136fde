//! `extends`: files in a temporary directory, merge rules, cycles, relative paths, overlays.
// Test helpers outside #[test] functions may panic too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bunker_policy::{
    load_file_with, load_with, ByteSize, ErrorKind, HostEnv, LimitName, LoadSpec, PathPattern,
    PolicyDoc, PolicySource,
};

fn env() -> HostEnv {
    HostEnv {
        home: Some("/home/tester".into()),
        path: Some("/nonexistent-bin".into()),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn lists_concatenate_scalars_outer_wins_env_merges() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "base/base.json",
        r#"{
            "allow": {"read": ["data", "/shared"], "net": ["example.com"], "env": ["TERM"]},
            "deny": {"read": ["data/secret"]},
            "limits": {"memory": "64MB", "pids": 10, "best_effort": ["memory"]},
            "http": {"max_requests": 5},
            "set_env": {"A": "base", "B": "base"}
        }"#,
    );
    let top = write(
        d,
        "top.json",
        r#"{
            "extends": ["base/base.json"],
            "allow": {"read": ["/shared", "/more"], "net": ["EXAMPLE.com."]},
            "deny": {"net": ["*.ads.example.com"]},
            "limits": {"memory": "32MB", "best_effort": ["pids", "memory"]},
            "set_env": {"B": "top"}
        }"#,
    );
    let p = load_file_with(&top, &env()).unwrap();
    // Relative paths resolve against the file that wrote them.
    assert_eq!(
        p.allow.read,
        vec![
            d.join("base/data"),
            PathBuf::from("/shared"),
            PathBuf::from("/more")
        ]
    );
    assert_eq!(
        p.deny.read,
        vec![PathPattern::Path(d.join("base/data/secret"))]
    );
    assert_eq!(
        p.allow.net.len(),
        1,
        "the same host spelled twice is one rule"
    );
    assert_eq!(p.deny.net.len(), 1);
    assert_eq!(p.allow.env, vec!["TERM".to_string()]);
    assert_eq!(p.limits.memory, Some(32_000_000), "outer document wins");
    assert_eq!(
        p.limits.pids,
        Some(10),
        "unset in the outer document: inherited"
    );
    assert_eq!(
        p.limits.best_effort,
        vec![LimitName::Memory, LimitName::Pids]
    );
    assert_eq!(p.http.max_requests, Some(5));
    assert_eq!(p.set_env["A"], "base");
    assert_eq!(p.set_env["B"], "top");
    assert_eq!(p.sources.len(), 2);
    assert!(p.sources[0].ends_with("base/base.json"));
    assert_eq!(p.sources[1], top.display().to_string());
}

#[test]
fn extends_load_depth_first_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "a.json",
        r#"{"extends": ["./c.json"], "limits": {"timeout": "1s"}}"#,
    );
    write(d, "b.json", r#"{"limits": {"timeout": "2s", "pids": 7}}"#);
    write(
        d,
        "c.json",
        r#"{"limits": {"timeout": "3s", "pids": 3, "cpu": 1}}"#,
    );
    let top = write(d, "top.json", r#"{"extends": ["a.json", "b.json"]}"#);
    let p = load_file_with(&top, &env()).unwrap();
    // Order: c, a, b, top — b is the outermost to set timeout and pids.
    assert_eq!(p.limits.timeout, Some(Duration::from_secs(2)));
    assert_eq!(p.limits.pids, Some(7));
    assert_eq!(p.limits.cpu, Some(1.0));
    let names: Vec<&str> = p
        .sources
        .iter()
        .map(|s| s.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(names, ["c.json", "a.json", "b.json", "top.json"]);
}

#[test]
fn a_deny_anywhere_survives() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "base.json",
        r#"{"deny": {"read": ["**/*.key"], "net": ["evil.com"]}}"#,
    );
    // Allowing what a base denies is how narrowing looks from the other side: not an error,
    // and the deny still wins.
    let top = write(
        d,
        "top.json",
        r#"{"extends": ["base.json"], "allow": {"read": ["/srv"], "net": ["evil.com"]}}"#,
    );
    let p = load_file_with(&top, &env()).unwrap();
    assert!(!p.net_decision("evil.com", 443).allowed);
    assert!(
        !p.path_decision(
            Path::new("/srv/tls/server.key"),
            bunker_policy::Access::Read
        )
        .allowed
    );
    assert!(
        p.path_decision(Path::new("/srv/index.html"), bunker_policy::Access::Read)
            .allowed
    );
}

#[test]
fn cycles_are_errors_naming_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = write(d, "a.json", r#"{"extends": ["b.json"]}"#);
    let b = write(d, "b.json", r#"{"extends": ["sub/../a.json"]}"#);
    let err = load_file_with(&a, &env()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ExtendsCycle);
    assert_eq!(
        err.to_string(),
        format!(
            "{b}: extends[0]: extends cycle: {a} → {b} → {a}",
            a = a.display(),
            b = b.display()
        )
    );

    let selfref = write(d, "self.json", r#"{"extends": ["./self.json"]}"#);
    let err = load_file_with(&selfref, &env()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ExtendsCycle);
    assert!(err
        .to_string()
        .ends_with(&format!("extends cycle: {s} → {s}", s = selfref.display())));
}

#[test]
fn diamonds_are_not_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "common.json", r#"{"allow": {"read": ["/common"]}}"#);
    write(d, "x.json", r#"{"extends": ["common.json"]}"#);
    write(d, "y.json", r#"{"extends": ["common.json"]}"#);
    let top = write(
        d,
        "top.json",
        r#"{"extends": ["x.json", "y.json", "default", "default"]}"#,
    );
    let p = load_file_with(&top, &env()).unwrap();
    assert_eq!(
        p.allow
            .read
            .iter()
            .filter(|r| r.as_path() == Path::new("/common"))
            .count(),
        1
    );
    assert!(p.allow.read.contains(&PathBuf::from("/usr")));
}

#[test]
fn errors_in_extended_files_name_that_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = write(d, "base.json", r#"{"limits": {"memory": "1XB"}}"#);
    let top = write(d, "top.json", r#"{"extends": ["base.json"]}"#);
    let err = load_file_with(&top, &env()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            r#"{}: limits.memory: expected a size like "64MB" or a number of bytes, found "1XB""#,
            base.display()
        )
    );
}

#[test]
fn home_relative_extends_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "policies/base.json",
        r#"{"allow": {"read": ["~/data", "~"]}}"#,
    );
    let top = write(d, "top.json", r#"{"extends": ["~/policies/base.json"]}"#);
    let env = HostEnv {
        home: Some(d.to_path_buf()),
        path: None,
    };
    let p = load_file_with(&top, &env).unwrap();
    assert_eq!(p.allow.read, vec![d.join("data"), d.to_path_buf()]);
}

#[test]
fn overlay_goes_on_top_with_its_own_base() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = write(
        d,
        "p.json",
        r#"{"extends": ["default"], "limits": {"memory": "1GB", "timeout": "10s"}}"#,
    );
    let mut overlay = PolicyDoc::default();
    overlay.allow.read.push("input".to_string());
    overlay.allow.net.push("api.example.com:443".to_string());
    overlay.limits.memory = Some(ByteSize::Text("64MB".to_string()));
    let spec = LoadSpec {
        source: PolicySource::File(file.clone()),
        overlay,
        overlay_base: PathBuf::from("/work/cwd"),
    };
    let p = load_with(&spec, &env()).unwrap();
    assert_eq!(p.limits.memory, Some(64_000_000));
    assert_eq!(p.limits.timeout, Some(Duration::from_secs(10)));
    assert!(p.allow.read.contains(&PathBuf::from("/work/cwd/input")));
    assert!(p.net_decision("api.example.com", 443).allowed);
    assert_eq!(p.sources.last().unwrap(), "command line");

    // Overlay errors name the command line.
    let mut bad = PolicyDoc::default();
    bad.limits.memory = Some(ByteSize::Text("huge".to_string()));
    let err = load_with(
        &LoadSpec {
            source: PolicySource::Default,
            overlay: bad,
            overlay_base: PathBuf::from("/"),
        },
        &env(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"command line: limits.memory: expected a size like "64MB" or a number of bytes, found "huge""#
    );
}

#[test]
fn no_file_means_the_default_profile() {
    let spec = LoadSpec {
        source: PolicySource::Default,
        overlay: PolicyDoc::default(),
        overlay_base: PathBuf::from("/"),
    };
    let p = load_with(&spec, &env()).unwrap();
    assert_eq!(p, bunker_policy::builtin_with("default", &env()).unwrap());
    assert_eq!(p.sources, vec!["default".to_string()]);
}

#[test]
fn missing_files_are_named() {
    let err = load_file_with(Path::new("/nonexistent/policy.json"), &env()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(
        err.to_string(),
        "/nonexistent/policy.json: cannot read the policy file: No such file or directory (os error 2)"
    );
}

#[test]
fn setting_a_limit_drops_an_inherited_best_effort_mark() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "base.json",
        r#"{"limits": {"memory": "1GB", "pids": 100, "best_effort": ["memory", "pids"]}}"#,
    );
    let strict = write(
        d,
        "strict.json",
        r#"{"extends": ["base.json"], "limits": {"memory": "64MB"}}"#,
    );
    let p = load_file_with(&strict, &env()).unwrap();
    assert_eq!(p.limits.memory, Some(64_000_000));
    assert_eq!(
        p.limits.best_effort,
        vec![LimitName::Pids],
        "the memory limit this file sets must hold; the inherited pids limit stays best-effort"
    );
    let lenient = write(
        d,
        "lenient.json",
        r#"{"extends": ["base.json"], "limits": {"memory": "64MB", "best_effort": ["memory"]}}"#,
    );
    let p = load_file_with(&lenient, &env()).unwrap();
    assert_eq!(
        p.limits.best_effort,
        vec![LimitName::Memory, LimitName::Pids]
    );
}

#[test]
fn a_policy_given_as_text_resolves_against_its_base_and_names_itself() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "base.json", r#"{"allow": {"read": ["shared"]}}"#);
    let spec = LoadSpec {
        source: PolicySource::Text {
            text:
                r#"{"extends": ["./base.json"], "allow": {"read": ["./data"], "write": ["out"]}}"#
                    .to_string(),
            name: "stdin".to_string(),
            base: d.to_path_buf(),
        },
        ..LoadSpec::default()
    };
    let (p, origins) = bunker_policy::load_with_origins(&spec, &env()).unwrap();
    // Relative to the base given (the caller's cwd), not to some /dev/fd path.
    assert_eq!(p.allow.read, vec![d.join("shared"), d.join("data")]);
    assert_eq!(p.allow.write, vec![d.join("out")]);
    assert_eq!(p.sources.last().unwrap(), "stdin");
    // Each grant is traced to the document and key that wrote it.
    let origin_of = |path: &Path| origins.iter().find(|o| o.path == path).unwrap();
    let shared = origin_of(&d.join("shared"));
    assert_eq!(
        (shared.file.as_str(), shared.json_path.as_str()),
        (d.join("base.json").to_str().unwrap(), "allow.read[0]")
    );
    let out = origin_of(&d.join("out"));
    assert_eq!(
        (out.file.as_str(), out.json_path.as_str()),
        ("stdin", "allow.write[0]")
    );
    assert_eq!(out.access, bunker_policy::Access::Write);
    assert!(!out.builtin);
    // The built-in profiles' grants are marked as theirs.
    let spec = LoadSpec {
        source: PolicySource::Default,
        ..LoadSpec::default()
    };
    let (_, origins) = bunker_policy::load_with_origins(&spec, &env()).unwrap();
    assert!(!origins.is_empty() && origins.iter().all(|o| o.builtin));

    // Errors name the text's name; a missing extends file is named with the key.
    let spec = LoadSpec {
        source: PolicySource::Text {
            text: r#"{"extends": ["./gone.json"]}"#.to_string(),
            name: "--policy-json".to_string(),
            base: d.to_path_buf(),
        },
        ..LoadSpec::default()
    };
    let err = load_with(&spec, &env()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(
        (err.file.as_str(), err.json_path.as_str()),
        ("--policy-json", "extends[0]")
    );
    assert!(
        err.message.contains(d.join("gone.json").to_str().unwrap()),
        "{err}"
    );
}
