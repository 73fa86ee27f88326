//! Integration tests: a real server on 127.0.0.1:0 and real sockets.

mod abuse;
mod auth;
mod cli;
mod compress;
mod config_file;
mod corpus;
mod engine;
mod files;
mod flags;
mod http;
mod ops;
mod props;
mod semantics;
mod support;
mod tls;
mod transport;
mod trust;
