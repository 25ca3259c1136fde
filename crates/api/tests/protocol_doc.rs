//! Every JSON example in docs/protocol.md is a frame of the protocol (the config file's example
//! is checked by the service's own tests, which own that type).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bunker_api::protocol::ProtocolFrame;

#[test]
fn protocol_doc_examples_parse() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let blocks: Vec<&str> = doc
        .split("```json\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .filter(|block| !block.starts_with("{\"max_sandboxes\""))
        .collect();
    assert!(blocks.len() >= 20, "{blocks:?}");
    for block in blocks {
        if let Err(e) = serde_json::from_str::<ProtocolFrame>(block) {
            panic!("docs/protocol.md example is not a frame ({e}): {block}");
        }
    }
}
