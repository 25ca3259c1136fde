//! bunker's policy language: one deny-by-default JSON document.
//!
//! This crate is pure data: parsing, validation, merging of `extends`, matching of hosts, addresses
//! and paths, and the subset check. It never touches the system beyond reading policy files.
#![forbid(unsafe_code)]

pub mod error;
pub mod eval;
pub mod glob;
pub mod load;
pub mod net;
pub mod path;
pub mod profiles;
pub mod subset;
pub mod types;
pub mod unenforced;
pub mod units;

pub use error::{ErrorKind, PolicyError, Problem};
pub use glob::PathGlob;
pub use load::{
    builtin, builtin_with, load, load_file, load_file_with, load_str, load_str_with, load_with,
    load_with_origins, parse_doc, schema, GrantOrigin, HostEnv, LoadSpec, PolicySource,
};
pub use net::{normalize_host, HostPattern, NetDecision, NetRule};
pub use path::{Access, PathDecision, PathPattern};
pub use types::*;
pub use units::{ByteSize, Span};
