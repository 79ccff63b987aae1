//! pgseal's key-custody protocol, the part both sides share (docs/CUSTODY.md is its
//! specification): how a request is signed with the caller's pgseal user key and checked by the
//! service ([`auth`]), how a file key travels back sealed to the caller's one-time key so that
//! nothing between them sees it ([`seal`]), the JSON bodies of each route ([`wire`]), and the
//! HTTP transport both ends use, over TLS or a Unix socket ([`transport`]).
//!
//! Nothing here holds a server key or reads a store: the service's operations live in
//! `pgseal-ops`, its front end in the `pgseal` binary (`pgseal serve`).

#![warn(missing_docs)]

pub mod auth;
pub mod seal;
pub mod transport;
pub mod wire;
