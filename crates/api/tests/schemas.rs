//! The JSON Schemas in docs/ must be exactly what the contract's types generate, and
//! docs/api.md must name every error code. Regenerate with
//! `BUNKER_BLESS=1 cargo test -p bunker-api --test schemas` and review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

#[test]
fn schemas_in_docs_match_the_code() {
    let mut stale = Vec::new();
    for (file, schema) in bunker_api::schemas() {
        let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = docs().join(file);
        let written = std::fs::read_to_string(&path).unwrap_or_default();
        if written != generated {
            if std::env::var_os("BUNKER_BLESS").is_some() {
                std::fs::write(&path, &generated).unwrap();
            } else {
                stale.push(file);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "docs/{stale:?} out of date: rerun with BUNKER_BLESS=1 and review the diff"
    );
}

#[test]
fn api_doc_lists_every_error_code_with_its_exit_code() {
    let doc = std::fs::read_to_string(docs().join("api.md")).unwrap();
    for code in bunker_api::ErrorCode::ALL {
        let exit = code
            .cli_exit_code()
            .map_or_else(|| "128 + signal".to_string(), |c| c.to_string());
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{code}` |")))
            .unwrap_or_else(|| panic!("docs/api.md has no row for `{code}`"));
        assert!(
            row.trim_end().ends_with(&format!("| {exit} |")),
            "docs/api.md: `{code}` should say CLI exit code {exit}: {row}"
        );
    }
}

#[test]
fn the_error_schema_lists_every_code() {
    let schema = serde_json::to_value(schemars::schema_for!(bunker_api::ApiError)).unwrap();
    let text = schema.to_string();
    for code in bunker_api::ErrorCode::ALL {
        assert!(text.contains(&format!("\"{code}\"")), "{code} missing");
    }
}

#[test]
fn api_doc_examples_parse() {
    let doc = std::fs::read_to_string(docs().join("api.md")).unwrap();
    let blocks: Vec<&str> = doc
        .split("```json\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    assert!(blocks.len() >= 5, "{blocks:?}");
    for block in blocks {
        let parsed = serde_json::from_str::<bunker_api::RunSpec>(block)
            .map(|_| ())
            .or_else(|_| serde_json::from_str::<bunker_api::RunEvent>(block).map(|_| ()))
            .or_else(|_| serde_json::from_str::<bunker_api::ApiError>(block).map(|_| ()))
            .or_else(|_| serde_json::from_str::<bunker_api::EvalSpec>(block).map(|_| ()))
            .or_else(|_| serde_json::from_str::<bunker_api::EvalResult>(block).map(|_| ()));
        assert!(
            parsed.is_ok(),
            "docs/api.md example is none of the types: {block}"
        );
    }
}
