//! `bunker serve`: the daemon lives in crates/serve; this is its command line.

use crate::cli::{LogFormat, ServeOpts};

pub fn main(opts: ServeOpts) -> i32 {
    let options = bunker_serve::ServeOptions {
        socket: opts.socket,
        config: opts.config,
        log_format: match opts.log_format {
            LogFormat::Text => bunker_serve::LogFormat::Text,
            LogFormat::Json => bunker_serve::LogFormat::Json,
        },
        pools: opts.pools,
    };
    match bunker_serve::serve(options) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bunker serve: {e}");
            1
        }
    }
}
