//! The JSON examples in docs/policy.md load, and their documented meaning holds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use bunker_policy::{load_file_with, load_str_with, Access, HostEnv};

fn json_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim()) {
            (None, "```json") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[test]
fn examples_in_policy_md_load() {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/policy.md"),
    )
    .unwrap();
    let blocks = json_blocks(&doc);
    assert!(!blocks.is_empty());
    let env = HostEnv {
        home: Some("/home/u".into()),
        path: Some("/usr/local/bin:/usr/bin:/bin".into()),
    };
    for block in &blocks {
        let p = load_str_with(block, Path::new("/srv/app"), "policy.md", &env)
            .unwrap_or_else(|e| panic!("{block}\n{e}"));
        // The first example: bun, ./src readable, keys hidden.
        if block.contains("runtime:bun") {
            assert!(
                p.path_decision(Path::new("/srv/app/src/index.ts"), Access::Read)
                    .allowed
            );
            assert!(
                !p.path_decision(Path::new("/srv/app/src/tls.key"), Access::Read)
                    .allowed
            );
            assert!(p.net_decision("api.example.com", 443).allowed);
            assert!(!p.net_decision("api.example.com", 80).allowed);
            assert!(p.net_decision("img.cdn.example.com", 443).allowed);
            assert_eq!(p.limits.memory, Some(256_000_000));
        }
    }
}

#[test]
fn the_merge_example_means_what_the_doc_says() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("base.json"),
        r#"{ "extends": ["default"], "allow": { "read": ["data"] }, "limits": { "memory": "1GB", "pids": 64 } }"#,
    )
    .unwrap();
    std::fs::write(
        d.join("job.json"),
        r#"{ "extends": ["./base.json"], "deny": { "read": ["data/secret"] }, "limits": { "memory": "256MB" } }"#,
    )
    .unwrap();
    let p = load_file_with(&d.join("job.json"), &HostEnv::default()).unwrap();
    assert!(p.path_decision(&d.join("data/x"), Access::Read).allowed);
    assert!(
        !p.path_decision(&d.join("data/secret/x"), Access::Read)
            .allowed
    );
    assert_eq!(p.limits.memory, Some(256_000_000));
    assert_eq!(p.limits.pids, Some(64));
    assert!(
        p.path_decision(Path::new("/usr/bin/env"), Access::Exec)
            .allowed
    );
}
