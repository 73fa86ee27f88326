//! `head::parse` over arbitrary bytes, then `split_target` on whatever it accepts.
//! Invariants: no panic; a complete head used at most the bytes given and at most the
//! size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::mem::MaybeUninit;
use threadserve::http::head::{self, Parsed};
use threadserve::limits::MAX_HEAD_BYTES;

fuzz_target!(|data: &[u8]| {
    let mut slots = [const { MaybeUninit::uninit() }; 64];
    if let Ok(Parsed::Complete(h, used)) = head::parse(data, &mut slots, MAX_HEAD_BYTES) {
        assert!(used <= data.len() && used <= MAX_HEAD_BYTES);
        if let Ok(t) = head::split_target(h.target) {
            assert!(t.path.starts_with('/'), "path {:?} from target {:?}", t.path, h.target);
        }
    }
});
