//! Integration tests: a real server on 127.0.0.1:0 and real sockets.

mod abuse;
mod cli;
mod corpus;
mod engine;
mod files;
mod flags;
mod http;
mod props;
mod semantics;
mod support;
mod transport;
mod trust;
