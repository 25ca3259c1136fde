//! Fuzzes what the proxy parses of an HTTP request from the sandbox: the CONNECT target, the
//! absolute-form target of a forwarded request with its Host headers, the host spellings inside
//! them, and the Connection header tokens. Input: target, then Host header values, separated
//! by newlines.
#![no_main]

use bunker_proxy::addr::{parse_host, HostSpec};
use bunker_proxy::target::{connect_target, connection_tokens, forward_target, is_hop_by_hop};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let target = lines.next().unwrap_or_default();
    let hosts: Vec<&[u8]> = lines.collect();

    if let Ok(authority) = connect_target(target) {
        assert_ne!(authority.port, 0);
        // A parsed host prints as something that parses back to itself.
        let shown = authority.host.to_string();
        assert_eq!(parse_host(&shown).as_ref(), Ok(&authority.host), "{shown}");
    }
    if let Ok(forward) = forward_target(target, &hosts) {
        assert!(forward.path_and_query.starts_with('/'));
        assert!(!forward.path_and_query.contains('#'));
        if let HostSpec::Name(name) = &forward.authority.host {
            assert!(!name.is_empty() && !name.ends_with('.'));
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'));
        }
    }
    let tokens = connection_tokens(hosts.iter().copied());
    for token in &tokens {
        assert!(is_hop_by_hop(token, &tokens));
    }
});
