//! sea-orm entities of the catalog and balance tables, used for the catalog
//! reads, the admin API and the seed command. The hot paths (holds,
//! payments) are hand-written SQL in [`crate::store`], because each must be
//! one conditional write with a precise locking behaviour.
// The derive macros generate public items (Column, ActiveModel, …) that
// cannot carry doc comments.
#![allow(missing_docs)]

pub mod concert;
pub mod ledger_entry;
pub mod performance;
pub mod seat;
pub mod user;
