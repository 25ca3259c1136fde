//! Fuzzes the SOCKS5 handshake parser the proxy runs on bytes from the sandbox: every prefix
//! of a message is either incomplete, an error, or a message that used no more bytes than given.
#![no_main]

use bunker_proxy::addr::parse_host;
use bunker_proxy::socks5::{encode_reply, parse_greeting, parse_request, Destination, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Done(_, used)) = parse_greeting(data) {
        assert!(used <= data.len());
        // Parsing is prefix-stable: a longer input gives the same answer.
        assert!(matches!(parse_greeting(&data[..used]), Ok(Parsed::Done(_, u)) if u == used));
    }
    match parse_request(data) {
        Ok(Parsed::Done(request, used)) => {
            assert!(used <= data.len());
            assert_eq!(parse_request(&data[..used]), Ok(Parsed::Done(request.clone(), used)));
            if let Destination::Domain(name) = &request.destination {
                let _ = parse_host(name);
            }
        }
        Ok(Parsed::Incomplete) => {
            for cut in 0..data.len() {
                assert_eq!(parse_request(&data[..cut]), Ok(Parsed::Incomplete));
            }
        }
        Err(_) => {}
    }
    let reply = encode_reply(data.first().copied().unwrap_or(0), None);
    assert_eq!(reply.len(), 10);
});
