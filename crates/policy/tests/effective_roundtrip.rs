//! An effective policy crosses a process boundary (bunker's spawner) as its JSON: what is read
//! back is the same policy.

use std::path::Path;

use bunker_policy::{load_str, Policy};

#[test]
fn an_effective_policy_reads_back_from_its_json_unchanged() {
    let text = r#"{
        "extends": ["default"],
        "allow": {"net": ["example.com:443", "*.example.org", "10.0.0.0/8", "[::1]:8080"],
                  "write": ["/tmp/x"], "env": ["HOME"]},
        "deny": {"read": ["*.pem", "/etc/shadow", "/home/**/.ssh"], "net": ["evil.example.com"],
                 "best_effort": ["*.pem"]},
        "limits": {"memory": "64MB", "timeout": "1.5s", "cpu_time": "250ms", "pids": 10,
                   "best_effort": ["cpu"]},
        "http": {"request_timeout": "2s", "max_requests": 5},
        "kernel": {"hostname": "h", "tty": true},
        "set_env": {"A": "b"}
    }"#;
    let policy = load_str(text, Path::new("/work"), "test.json").unwrap();
    let json = serde_json::to_string(&policy).unwrap();
    let back: Policy = serde_json::from_str(&json).unwrap();
    assert_eq!(back, policy, "{json}");
    let default = bunker_policy::builtin("default").unwrap();
    let back: Policy = serde_json::from_str(&serde_json::to_string(&default).unwrap()).unwrap();
    assert_eq!(back, default);
}
