//! The egress proxy: HTTP forward, HTTPS CONNECT and SOCKS5, served by the supervisor on listening
//! sockets created inside the sandbox's network namespace.
#![forbid(unsafe_code)]
