//! Database access, one module per aggregate. Every function is one
//! transaction (or one statement) and leaves no partial state on error.

pub mod admin;
pub mod balance;
pub mod catalog;
pub mod holds;
pub mod payments;
