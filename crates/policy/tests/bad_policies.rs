//! A table of bad policies, each with the exact message a user sees.
// Test helpers outside #[test] functions may panic too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use bunker_policy::{load_str_with, ErrorKind, HostEnv};

fn env() -> HostEnv {
    HostEnv {
        home: None,
        path: Some("/nonexistent-bin".into()),
    }
}

fn error_of(text: &str) -> (String, ErrorKind) {
    let err = load_str_with(text, Path::new("/srv/app"), "policy.json", &env())
        .expect_err(&format!("{text} should be refused"));
    (err.to_string(), err.kind())
}

#[rustfmt::skip]
const TABLE: &[(&str, &str, ErrorKind)] = &[
    (r#"{"limits": {"memory": "lots"}}"#,
     r#"policy.json: limits.memory: expected a size like "64MB" or a number of bytes, found "lots""#, ErrorKind::InvalidSize),
    (r#"{"limits": {"memory": "64 megs"}}"#,
     r#"policy.json: limits.memory: expected a size like "64MB" or a number of bytes, found "64 megs""#, ErrorKind::InvalidSize),
    (r#"{"limits": {"memory": -5}}"#,
     r#"policy.json: limits.memory: expected a size like "64MB" or a number of bytes, found -5"#, ErrorKind::InvalidSize),
    (r#"{"limits": {"memory": "0"}}"#,
     r#"policy.json: limits.memory: must be greater than zero, found "0""#, ErrorKind::InvalidLimit),
    (r#"{"limits": {"output": 0}}"#,
     r#"policy.json: limits.output: must be greater than zero, found 0"#, ErrorKind::InvalidLimit),
    (r#"{"limits": {"pids": 0}}"#,
     r#"policy.json: limits.pids: must be greater than zero, found 0"#, ErrorKind::InvalidLimit),
    (r#"{"limits": {"pids": -1}}"#,
     r#"policy.json: limits.pids: expected a whole number greater than zero, found -1"#, ErrorKind::InvalidLimit),
    (r#"{"limits": {"pids": "many"}}"#,
     r#"policy.json: limits.pids: expected a whole number greater than zero, found "many""#, ErrorKind::InvalidLimit),
    (r#"{"limits": {"cpu": -1}}"#,
     r#"policy.json: limits.cpu: must be greater than zero, found -1"#, ErrorKind::InvalidLimit),
    (r#"{"limits": {"cpu": "half"}}"#,
     r#"policy.json: limits.cpu: expected a number of cores like 0.5 or 2, found "half""#, ErrorKind::InvalidLimit),
    (r#"{"limits": {"timeout": "0s"}}"#,
     r#"policy.json: limits.timeout: must be greater than zero, found "0s""#, ErrorKind::InvalidLimit),
    (r#"{"limits": {"timeout": -2.5}}"#,
     r#"policy.json: limits.timeout: must be greater than zero, found -2.5"#, ErrorKind::InvalidLimit),
    (r#"{"limits": {"cpu_time": "5 sec"}}"#,
     r#"policy.json: limits.cpu_time: expected a duration like "1.5s" or a number of seconds, found "5 sec""#, ErrorKind::InvalidDuration),
    (r#"{"http": {"request_timeout": true}}"#,
     r#"policy.json: http.request_timeout: expected a duration like "1.5s" or a number of seconds, found true"#, ErrorKind::InvalidDuration),
    (r#"{"limits": {"memroy": "64MB"}}"#,
     "policy.json: limits.memroy: unknown key `memroy`, expected one of `memory`, `pids`, `cpu`, `timeout`, `cpu_time`, `output`, `file_size`, `open_files`, `stack`, `tmp_size`, `best_effort`, `kill_on_output_overflow`", ErrorKind::UnknownKey),
    (r#"{"allow": {"network": ["example.com"]}}"#,
     "policy.json: allow.network: unknown key `network`, expected one of `net`, `read`, `write`, `exec`, `env`", ErrorKind::UnknownKey),
    (r#"{"alow": {}}"#,
     "policy.json: alow: unknown key `alow`, expected one of `$schema`, `extends`, `allow`, `deny`, `limits`, `http`, `kernel`, `js`, `set_env`", ErrorKind::UnknownKey),
    (r#"{"kernel": {"landlock": "strict"}}"#,
     "policy.json: kernel.landlock: unknown variant `strict`, expected one of `required`, `best-effort`, `off`", ErrorKind::InvalidValue),
    (r#"{"allow": {"net": "example.com"}}"#,
     r#"policy.json: allow.net: invalid type: string "example.com", expected a sequence"#, ErrorKind::InvalidValue),
    (r#"{"allow": {"net": ["example.com", "api.example.com", "*example.com"]}}"#,
     r#"policy.json: allow.net[2]: a wildcard must be the whole first label, like "*.example.com", found "*example.com""#, ErrorKind::InvalidNetRule),
    (r#"{"allow": {"net": ["example.com:http"]}}"#,
     r#"policy.json: allow.net[0]: invalid port "http" in "example.com:http": expected a number from 1 to 65535"#, ErrorKind::InvalidNetRule),
    (r#"{"allow": {"net": ["https://example.com"]}}"#,
     r#"policy.json: allow.net[0]: expected a host name without a scheme, found "https://example.com""#, ErrorKind::InvalidNetRule),
    (r#"{"deny": {"read": ["*.key"], "best_effort": ["*.pem"]}}"#,
     r#"policy.json: deny.best_effort[0]: "*.pem" is not an entry of deny.read, deny.write or deny.exec in this document; write it exactly as it is written there"#, ErrorKind::InvalidValue),
    (r#"{"deny": {"read": ["*.key"], "best_effort": [""]}}"#,
     r#"policy.json: deny.best_effort[0]: expected a non-empty string, found """#, ErrorKind::EmptyString),
    (r#"{"deny": {"net": ["10.1.0.0/8"]}}"#,
     r#"policy.json: deny.net[0]: CIDR "10.1.0.0/8" has bits set after the prefix length; write "10.0.0.0/8""#, ErrorKind::InvalidNetRule),
    (r#"{"allow": {"net": ["127.1"]}}"#,
     r#"policy.json: allow.net[0]: invalid host name "127.1": it looks like a numeric IP address; write addresses as a.b.c.d"#, ErrorKind::InvalidNetRule),
    (r#"{"allow": {"net": ["a..b"]}}"#,
     r#"policy.json: allow.net[0]: invalid host name "a..b": it has an empty label"#, ErrorKind::InvalidNetRule),
    (r#"{"allow": {"net": ["example.com"]}, "deny": {"net": ["EXAMPLE.com."]}}"#,
     r#"policy.json: deny.net[0]: "example.com" is both allowed (allow.net[0]) and denied; deny always wins, so remove one of them"#, ErrorKind::Contradiction),
    (r#"{"allow": {"read": ["/data", "/srv"]}, "deny": {"read": ["/tmp", "/data/x/../"]}}"#,
     r#"policy.json: deny.read[1]: "/data" is both allowed (allow.read[0]) and denied; deny always wins, so remove one of them"#, ErrorKind::Contradiction),
    (r#"{"allow": {"write": ["out"]}, "deny": {"write": ["/srv/app/out"]}}"#,
     r#"policy.json: deny.write[0]: "/srv/app/out" is both allowed (allow.write[0]) and denied; deny always wins, so remove one of them"#, ErrorKind::Contradiction),
    (r#"{"allow": {"env": ["TERM"]}, "deny": {"env": ["TERM"]}}"#,
     r#"policy.json: deny.env[0]: "TERM" is both allowed (allow.env[0]) and denied; deny always wins, so remove one of them"#, ErrorKind::Contradiction),
    (r#"{"allow": {"read": ["**/*.js"]}}"#,
     r#"policy.json: allow.read[0]: globs are only allowed in deny lists; allow.read needs a plain path, found "**/*.js""#, ErrorKind::InvalidGlob),
    (r#"{"deny": {"read": ["/srv/[a"]}}"#,
     r#"policy.json: deny.read[0]: invalid glob "/srv/[a": unclosed character class; missing ']'"#, ErrorKind::InvalidGlob),
    (r#"{"allow": {"read": ["~/.cache"]}}"#,
     r#"policy.json: allow.read[0]: "~/.cache" starts with "~" but HOME is not set to an absolute path"#, ErrorKind::MissingHome),
    (r#"{"allow": {"read": ["~bob/x"]}}"#,
     r#"policy.json: allow.read[0]: "~bob/x": only "~" and "~/..." (the caller's HOME) are supported, not "~user""#, ErrorKind::InvalidPath),
    (r#"{"allow": {"read": ["/data", ""]}}"#,
     r#"policy.json: allow.read[1]: expected a non-empty string, found """#, ErrorKind::EmptyString),
    (r#"{"extends": [""]}"#,
     r#"policy.json: extends[0]: expected a non-empty string, found """#, ErrorKind::EmptyString),
    (r#"{"set_env": {"LANG": ""}}"#,
     r#"policy.json: set_env.LANG: expected a non-empty string, found """#, ErrorKind::EmptyString),
    (r#"{"kernel": {"hostname": ""}}"#,
     r#"policy.json: kernel.hostname: expected a non-empty string, found """#, ErrorKind::EmptyString),
    (r#"{"allow": {"net": ["XN--0"]}}"#,
     r#"policy.json: allow.net[0]: invalid host name "XN--0": not a valid internationalized name"#, ErrorKind::InvalidNetRule),
    (r#"{"allow": {"env": ["A=B"]}}"#,
     r#"policy.json: allow.env[0]: expected an environment variable name (no "=" or NUL), found "A=B""#, ErrorKind::InvalidEnvName),
    (r#"{"extends": ["strict"]}"#,
     r#"policy.json: extends[0]: unknown profile "strict": the built-in profiles are default, runtime:bun, runtime:python, eval:bun, eval:python; a policy file needs a "/" or a ".json" ending, like "./strict.json""#, ErrorKind::UnknownProfile),
    (r#"{"extends": ["runtime:bun"]}"#,
     "runtime:bun: no bun binary was found on PATH (/nonexistent-bin; wrapper scripts such as pyenv shims are skipped); install it, or write a policy that allows its files", ErrorKind::RuntimeNotFound),
    (r#"{"extends": ["./missing.json"]}"#,
     r#"policy.json: extends[0]: cannot read the extended policy file "/srv/app/missing.json": No such file or directory (os error 2)"#, ErrorKind::Io),
    (r#"{"kernel": {"audit": "ebpf"}}"#,
     r#"policy.json: kernel.audit: audit mode "ebpf" is not built in this version of bunker (no layer would enforce it); expected "off" or no kernel.audit key"#, ErrorKind::NotEnforced),
    (r#"{"kernel": {"audit": "seccomp-unotify"}}"#,
     r#"policy.json: kernel.audit: audit mode "seccomp-unotify" is not built in this version of bunker (no layer would enforce it); expected "off" or no kernel.audit key"#, ErrorKind::NotEnforced),
    (r#"{"js": {"eval": false}}"#,
     "policy.json: js.eval: the js options are enforced by the JavaScript runtime layer, which is not built in this version of bunker (nothing would enforce them); remove the key", ErrorKind::NotEnforced),
    (r#"{"js": {"max_stack_depth": 100}}"#,
     "policy.json: js.max_stack_depth: the js options are enforced by the JavaScript runtime layer, which is not built in this version of bunker (nothing would enforce them); remove the key", ErrorKind::NotEnforced),
    (r#"{"kernel": {"namespaces": ["user", "pid", "net"]}}"#,
     r#"policy.json: kernel.namespaces: must include "mount": the sandbox's new root is built in it"#, ErrorKind::NotEnforced),
    (r#"{"limits": {"memory": "64MB",}}"#,
     "policy.json: invalid JSON: trailing comma at line 1 column 30", ErrorKind::Syntax),
    (r#"{"limits": {}} {}"#,
     "policy.json: invalid JSON: trailing characters at line 1 column 16", ErrorKind::Syntax),
    ("[]",
     r#"policy.json: expected a policy object like {"allow": {...}}, found a list"#, ErrorKind::InvalidValue),
    (r#"{"limits": [1]}"#,
     "policy.json: limits: expected an object, found a list", ErrorKind::InvalidValue),
    (r#"{"limits": {"best_effort": ["disk"]}}"#,
     "policy.json: limits.best_effort[0]: unknown variant `disk`, expected one of `memory`, `pids`, `cpu`, `cpu_time`", ErrorKind::InvalidValue),
    // The kind comes from where the error is made, not from the words of its message: a path
    // whose text says "glob" is still a path error.
    (r#"{"allow": {"read": ["/srv/glob\u0000x"]}}"#,
     "policy.json: allow.read[0]: a path cannot contain a NUL byte, found \"/srv/glob\\u0000x\"", ErrorKind::InvalidPath),
];

#[test]
fn every_bad_policy_has_its_exact_message() {
    assert!(TABLE.len() >= 20);
    let mut failures = Vec::new();
    for (text, expected, kind) in TABLE {
        let (message, got_kind) = error_of(text);
        if message != *expected || got_kind != *kind {
            failures.push(format!(
                "policy:   {text}\nexpected: {expected} [{kind}]\ngot:      {message} [{got_kind}]\n"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn error_fields_are_separate_for_clients() {
    let err = load_str_with(
        r#"{"allow": {"net": ["a.com", "b.com", "x y"]}}"#,
        Path::new("/srv"),
        "p.json",
        &env(),
    )
    .unwrap_err();
    assert_eq!(err.file, "p.json");
    assert_eq!(err.json_path, "allow.net[2]");
    assert_eq!(err.kind().code(), "invalid_net_rule");
    let json = serde_json::to_value(&err).unwrap();
    assert_eq!(json["kind"], "invalid_net_rule");
    assert_eq!(json["json_path"], "allow.net[2]");
}

#[test]
fn good_policies_still_load() {
    // The table is only meaningful if close variants are accepted.
    for text in [
        r#"{"limits": {"memory": "64MB", "pids": 1, "cpu": 0.5, "timeout": "1.5s", "cpu_time": 2}}"#,
        r#"{"allow": {"net": ["example.com", "*.example.com:443", "10.0.0.0/8", "[::1]:8080"]}}"#,
        r#"{"allow": {"read": ["/data"]}, "deny": {"read": ["/data/secret", "**/*.key", ".env"]}}"#,
        r#"{"allow": {"net": ["example.com:443"]}, "deny": {"net": ["example.com:80"]}}"#,
        r#"{"extends": ["default"], "set_env": {"LANG": "C"}}"#,
        // The defaults of the settings no layer enforces yet are accepted, written out or not.
        r#"{"kernel": {"audit": "off", "namespaces": ["mount", "pid"]}, "js": {"eval": true}}"#,
    ] {
        load_str_with(text, Path::new("/srv/app"), "policy.json", &env())
            .unwrap_or_else(|e| panic!("{text}: {e}"));
    }
}

#[test]
fn a_policy_error_reaches_clients_with_its_code_kind_and_place() {
    let err = load_str_with(
        r#"{"limits": {"memory": "lots"}}"#,
        Path::new("/srv/app"),
        "policy.json",
        &env(),
    )
    .unwrap_err();
    let api = bunker_api::ApiError::from(&err);
    assert_eq!(api.code, bunker_api::ErrorCode::PolicyInvalid);
    assert_eq!(api.message, err.to_string());
    let place = api.policy.unwrap();
    assert_eq!(place.kind, ErrorKind::InvalidSize);
    assert_eq!(
        (place.file.as_str(), place.json_path.as_str()),
        ("policy.json", "limits.memory")
    );
}
