//! threadserve: a static-file HTTP/1.1 server on blocking I/O and a fixed pool of OS
//! threads, with no async runtime.
//!
//! The HTTP core is pure: [`head`] parses request heads, [`resolve`] turns request
//! paths into safe relative paths, [`respond`] plans responses (with [`conditional`]
//! requests, [`range`] requests and [`encoding`] negotiation), [`listing`] renders
//! directories and [`wire`] serializes response heads. Sockets and files live at the
//! edges: [`files`] opens what a path names, [`server`] runs the accept loop, the
//! worker pool, the idle watcher and the logger/stats thread ([`stats`]), which hands
//! access-log lines to the only thread that writes to stdout ([`log_writer`]);
//! [`metrics`] renders its counters for Prometheus.
//!
//! Start a server in-process:
//! ```no_run
//! use threadserve::{config::Config, files::Root, server::Server};
//! let config = Config::new(Root::new(".".as_ref()).unwrap());
//! let server = Server::bind(config).unwrap();
//! println!("http://{}/", server.local_addr());
//! let handle = server.handle(); // handle.shutdown() from another thread
//! server.run().unwrap();
//! ```
#![deny(missing_docs)]

pub mod auth;
pub mod clock;
pub mod config;
pub mod config_file;
pub mod files;
pub mod http;
pub mod limits;
pub mod log_writer;
pub mod metrics;
pub mod server;
pub mod stats;
pub mod tls;
