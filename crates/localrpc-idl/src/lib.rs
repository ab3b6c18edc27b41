//! Varlink interface definitions (the IDL of UAPI.20 / varlink.org).
//!
//! This crate owns everything about `.varlink` text and nothing about sockets:
//! - [`parse`] turns interface text into an [`Interface`] (keeping doc comments),
//! - validation runs inside [`parse`] (names, duplicates, unresolved types, nesting depth),
//!   reporting `line:column` and what was expected,
//! - [`format()`] prints the canonical form,
//! - [`check_value`] / [`check_parameters`] validate JSON against a type and name the first
//!   offending field path; [`check_value_str`] / [`check_parameters_str`] do the same on JSON
//!   text without building a `serde_json::Value` (a fast scanner for the common valid input,
//!   else one streaming serde_json pass),
//! - [`systemd_lint`] lists constructs that are valid varlink but that systemd's parser rejects.
//!
//! It is its own crate so that code generators can use it without the runtime.

mod ast;
mod check;
mod format;
mod lint;
mod parse;
mod zero;

pub use ast::{EnumVariant, ErrorDef, Field, Interface, Member, Method, Type, TypeDef};
pub use check::{
    CheckError, accepts_parameters_prefix, check_parameters, check_parameters_str, check_value,
    check_value_str,
};
pub use format::{MAX_WIDTH, format};
pub use lint::systemd_lint;
pub use parse::{MAX_DEPTH, ParseError, parse};
pub use zero::fill_zero_values;

/// Not public API: the two halves of [`check_parameters_str`] / [`check_value_str`] on their
/// own, so that tests can hold each to the tree checker and see which inputs the fast one takes.
#[doc(hidden)]
pub mod __check_str {
    pub use crate::check::fast::{accepts_parameters, accepts_value};
    pub use crate::check::stream::{check_parameters_str, check_value_str};
}
