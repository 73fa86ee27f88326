//! `plan::plan` over whatever `head::parse` accepts, against an in-memory site, with
//! and without CORS and shutdown. Invariants: no panic; `Content-Length` is what the
//! plan sends (bodiless statuses and HEAD send nothing); no header value holds a line
//! break; a request announcing a body closes the connection.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::mem::MaybeUninit;
use threadserve::http::head::{self, Parsed};
use threadserve::http::plan::{self, memory::MemorySite};
use threadserve::limits::MAX_HEAD_BYTES;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else { return };
    let mut slots = [const { MaybeUninit::uninit() }; 64];
    let Ok(Parsed::Complete(h, _)) = head::parse(bytes, &mut slots, MAX_HEAD_BYTES) else { return };
    let mut site = MemorySite::new(
        &[("a.txt", "0123456789"), ("a.txt.br", "br"), ("d/index.html", "<p>d</p>")],
        &["", "d", "list"],
    );
    let policy = plan::Policy { cors: flags & 1 != 0, ..plan::Policy::default() };
    let p = plan::plan(&h, &mut site, &policy, flags & 2 != 0);
    for (name, _) in &p.headers {
        assert!(!p.header(name).unwrap().contains(['\r', '\n']));
    }
    let length = p.header("content-length").map(|v| v.parse::<u64>().unwrap());
    if !p.status.has_body() || h.method == "HEAD" {
        assert_eq!(p.body_len(), 0);
    } else {
        assert_eq!(length, Some(p.body_len()));
    }
    if h.body() != head::Body::None {
        assert!(p.close());
    }
});
