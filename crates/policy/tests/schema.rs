//! docs/policy.schema.json must be exactly what `bunker_policy::schema()` generates.
//! Regenerate with `UPDATE_SCHEMA=1 cargo test -p bunker-policy --test schema`.
// Test helpers outside #[test] functions may panic too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

fn schema_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/policy.schema.json")
}

#[test]
fn schema_snapshot_matches_docs() {
    let generated = serde_json::to_string_pretty(&bunker_policy::schema()).unwrap() + "\n";
    let path = schema_file();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} is out of date; regenerate it with UPDATE_SCHEMA=1 cargo test -p bunker-policy --test schema",
        path.display()
    );
}

#[test]
fn schema_describes_the_document() {
    let schema = bunker_policy::schema();
    assert_eq!(schema["title"], "PolicyDoc");
    assert_eq!(
        schema["additionalProperties"], false,
        "unknown keys are errors"
    );
    let props = schema["properties"].as_object().unwrap();
    for key in [
        "$schema", "extends", "allow", "deny", "limits", "http", "kernel", "js", "set_env",
    ] {
        assert!(props.contains_key(key), "{key} missing from the schema");
    }
    let defs = schema["$defs"].as_object().unwrap();
    assert!(defs["ByteSize"]["anyOf"].is_array());
    assert!(defs["Span"]["anyOf"].is_array());
    assert_eq!(defs["LimitsDoc"]["additionalProperties"], false);
}

#[test]
fn examples_in_the_schema_patterns_agree_with_the_parser() {
    // The size pattern in the schema accepts what parse_size accepts, for a sample.
    let schema = bunker_policy::schema();
    let pattern = schema["$defs"]["ByteSize"]["anyOf"][1]["pattern"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(pattern.contains("[kKmMgGtT][iI]?[bB]"));
    for ok in ["64MB", "1.5GiB", "512", "10kib"] {
        assert!(bunker_policy::units::parse_size(ok).is_ok(), "{ok}");
    }
}
