//! The hook through which the supervisor serves the sandbox's egress proxy listeners. The sandbox
//! crate does not depend on the proxy: the binary plugs `bunker-proxy` in through this trait.

use std::os::fd::OwnedFd;

use crate::result::HttpRecord;

/// Port of the HTTP proxy (forward + CONNECT) on 127.0.0.1 inside the sandbox.
pub const HTTP_PROXY_PORT: u16 = 3128;
/// Port of the SOCKS5 proxy on 127.0.0.1 inside the sandbox.
pub const SOCKS_PROXY_PORT: u16 = 1080;

/// Serves the listeners created inside the sandbox's network namespace.
pub trait Egress {
    /// Called in the supervisor as soon as the listeners exist (already bound and listening).
    fn start(&mut self, http: OwnedFd, socks: OwnedFd) -> Result<(), String>;
    /// Called after the sandbox has exited: stops serving and returns every decision, in order.
    fn finish(&mut self) -> Vec<HttpRecord>;
}
