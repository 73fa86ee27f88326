//! A [`Site`] in memory, for property tests and the `plan` fuzz target: named files
//! (all with one mtime), directories, and a FIFO at `fifo`.

use super::{Found, Page, Site, Source};
use crate::http::auth::Verdict;
use crate::http::encoding::Encoding;
use crate::http::listing::Format;
use crate::http::meta::{Kind, Meta, Missing};
use crate::http::resolve;
use std::time::{Duration, UNIX_EPOCH};

/// Files and directories, relative to the root (`""` is the root).
#[derive(Debug, Clone, Default)]
pub struct MemorySite {
    /// `(path, bytes)`.
    pub files: Vec<(String, Vec<u8>)>,
    /// Directory paths.
    pub dirs: Vec<String>,
}

impl MemorySite {
    /// A site with `files` and `dirs`.
    pub fn new(files: &[(&str, &str)], dirs: &[&str]) -> MemorySite {
        MemorySite {
            files: files
                .iter()
                .map(|(p, b)| (p.to_string(), b.as_bytes().to_vec()))
                .collect(),
            dirs: dirs.iter().map(|d| d.to_string()).collect(),
        }
    }
}

impl Site for MemorySite {
    type Body = Vec<u8>;
    type Dir = String;

    fn lookup(&mut self, rel: &str) -> Result<Found<Vec<u8>, String>, Missing> {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        if let Some((_, body)) = self.files.iter().find(|(p, _)| p == rel) {
            return Ok(Found::File(
                Meta::new(body.len() as u64, t, 1, Kind::File),
                body.clone(),
            ));
        }
        if self.dirs.iter().any(|d| d == rel) {
            return Ok(Found::Dir(Meta::new(0, t, 2, Kind::Dir), rel.to_string()));
        }
        match rel {
            "fifo" => Ok(Found::Other),
            _ => Err(Missing::NotFound),
        }
    }

    fn lookup_in(&mut self, _: &String, dir_rel: &str, name: &str) -> Result<Found<Vec<u8>, String>, Missing> {
        self.lookup(&resolve::join(dir_rel, name))
    }

    fn listing(&mut self, _: &String, rel: &str, format: Format) -> Result<Page<Vec<u8>>, Missing> {
        let body = format!("{format:?} listing of /{rel}").into_bytes();
        Ok(Page {
            len: body.len() as u64,
            etag: format!("\"l-{}\"", body.len()),
            body,
        })
    }

    /// "Compresses" by tagging the bytes with the coding: `br:` + body.
    fn compress(&mut self, _: &Source<'_>, body: &Vec<u8>, len: u64, encoding: Encoding) -> Option<(u64, Vec<u8>)> {
        assert_eq!(len, body.len() as u64);
        let mut out = format!("{}:", encoding.token()).into_bytes();
        out.extend_from_slice(body);
        Some((out.len() as u64, out))
    }

    fn counters(&mut self) -> Option<Vec<u8>> {
        None
    }

    /// One user, `user` with password `pass`.
    fn authorize(&mut self, user: &str, password: &str) -> Verdict {
        if (user, password) == ("user", "pass") {
            Verdict::Granted
        } else {
            Verdict::Denied
        }
    }

    fn metrics(&mut self) -> Option<Vec<u8>> {
        None
    }
}
