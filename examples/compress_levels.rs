//! Ratio against CPU of gzip, brotli and zstd levels on given files: how the levels
//! in `limits.rs` were chosen. `cargo run --release --example compress_levels -- FILE...`
use std::io::Write;
use std::time::Instant;

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn brotli(data: &[u8], q: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 64 * 1024, q, 22);
        w.write_all(data).unwrap();
    }
    out
}

fn zstd(data: &[u8], level: i32) -> Vec<u8> {
    zstd::bulk::compress(data, level).unwrap()
}

fn time(f: impl Fn() -> Vec<u8>) -> (usize, f64) {
    let mut best = f64::MAX;
    let mut len = 0;
    for _ in 0..5 {
        let t = Instant::now();
        len = f().len();
        best = best.min(t.elapsed().as_secs_f64());
    }
    (len, best * 1e3)
}

fn main() {
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path).unwrap();
        println!("{path}: {} bytes", data.len());
        for l in [1, 6, 9] {
            let (n, ms) = time(|| gzip(&data, l));
            println!(
                "  gzip {l:>2}: {n:>8} bytes ({:.3}) {ms:>8.2} ms",
                n as f64 / data.len() as f64
            );
        }
        for q in [4, 5, 6, 9, 11] {
            let (n, ms) = time(|| brotli(&data, q));
            println!(
                "  br   {q:>2}: {n:>8} bytes ({:.3}) {ms:>8.2} ms",
                n as f64 / data.len() as f64
            );
        }
        for l in [1, 3, 9, 19] {
            let (n, ms) = time(|| zstd(&data, l));
            println!(
                "  zstd {l:>2}: {n:>8} bytes ({:.3}) {ms:>8.2} ms",
                n as f64 / data.len() as f64
            );
        }
    }
}
