//! Integration tests: a real server on 127.0.0.1:0 and real sockets.

mod cli;
mod engine;
mod files;
mod http;
mod semantics;
mod support;
