//! The pure HTTP core: no sockets, no files, no clock, no `unsafe`. It imports only
//! `std` collections and formatting, the crates that parse and format HTTP pieces
//! (httparse, httpdate, mime_guess, percent-encoding, glob) and the crate's own pure
//! modules (`limits`, `clock`).
//!
//! [`head`] parses a request head, [`resolve`] turns its path into a safe relative
//! path, and [`plan`] — the one planner — decides the whole response from the parsed
//! request, a [`plan::Site`] (the file layer in production, a map in tests) and the
//! [`plan::Policy`]. It uses [`conditional`] requests, [`range`] requests,
//! [`encoding`] negotiation and [`listing`] rendering; [`wire`] serialises the head.
#![forbid(unsafe_code)]

pub mod auth;
pub mod conditional;
pub mod encoding;
pub mod head;
pub mod html;
pub mod listing;
pub mod meta;
pub mod plan;
pub mod range;
pub mod resolve;
pub mod rules;
pub mod status;
pub mod wire;
