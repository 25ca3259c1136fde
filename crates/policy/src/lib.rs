//! bunker's policy language: one deny-by-default JSON document.
//!
//! This crate is pure data: parsing, validation, merging of `extends`, matching of hosts, addresses
//! and paths, and the subset check. It never touches the system beyond reading policy files.
#![forbid(unsafe_code)]

pub mod error;
pub mod load;
pub mod net;
pub mod path;
pub mod profiles;
pub mod subset;
pub mod types;
pub mod units;



pub use types::*;
