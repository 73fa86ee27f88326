//! Every limit threadserve enforces, in one place, each with its unit and reason.
//!
//! Flags default to these constants (see `config`); no other doc repeats the numbers.

use std::time::Duration;

/// Whole request head (request line + headers), in bytes. Larger heads get 431.
/// 16 KiB fits any browser's cookies; nginx's default large_client_header_buffers is 4×8 KiB.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Header lines per request. More get 431. Browsers send 10–20; 100 leaves room for proxies.
pub const MAX_HEADERS: usize = 100;

/// Time a client has to send a whole request head once its first byte is awaited.
/// Trickling one byte at a time does not extend it (slowloris).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle keep-alive connection lifetime between requests (nginx keepalive_timeout: 75 s;
/// shorter here because an idle connection costs a file descriptor, not a thread).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Time a client may go without taking any bytes of a response before it is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a worker waits on a full socket buffer before it parks the rest of the
/// response with the idle watcher (so a slow reader never pins a worker). A fast client
/// drains the buffer in microseconds; a slow one frees the worker after this.
pub const WRITE_LINGER: Duration = Duration::from_millis(10);

/// How long a worker waits for more bytes of a request before it parks the connection
/// with the idle watcher, when no other connection is queued (with a queue it does not
/// wait at all). Zero: a connection goes to the watcher as soon as its input is used
/// up. A lingering worker sleeps in `recv` on one socket, so every request that ends
/// a linger is a wake-up of its own, paid by the client's CPU when it sends, while
/// the watcher takes a batch of ready connections per wake-up; and a worker waiting on
/// one client is not serving the next. Measured (1 KiB, server on CPU 0 with 4
/// workers, load tool on CPU 1, medians of interleaved runs against nginx), 10 ms
/// against none: wrk at 4 connections 1.08× against 1.71× nginx, at 64 1.16× against
/// 1.20× with p99 2.08 against 0.47 ms (nginx 0.55 ms); oha at 64 0.95× against
/// 1.01×; at 1000 connections 1.19× against 1.14× (the one cell a linger helps).
pub const LINGER: Duration = Duration::ZERO;

/// Open connections at once; beyond this, new connections get a fast 503 and close.
/// Each costs one file descriptor and its read buffer, not a thread.
pub const MAX_CONNECTIONS: usize = 10_000;

/// Connections waiting for a worker. When this many are queued, new ones get 503 with
/// Retry-After instead of waiting without bound.
pub const QUEUE_DEPTH: usize = 1024;

/// Time in-flight responses get to finish after SIGTERM/SIGINT before the process exits.
pub const GRACE_PERIOD: Duration = Duration::from_secs(10);

/// Default `--drain-delay`: after SIGTERM with `--health-path`, the least time the
/// server keeps serving (health answering 503) before it may exit. 0: exit as soon as
/// nothing is in flight. A load balancer needs a few probe intervals to see the 503,
/// so deployments behind one set it (the README's Kubernetes example uses 5 s).
pub const DRAIN_DELAY: Duration = Duration::ZERO;

/// Largest value `--head-timeout`, `--idle-timeout`, `--write-timeout` and
/// `--grace-period` take: one day. The defaults are seconds (nginx's are too); a day
/// covers a keep-alive client that stays for a working day, a write stalled by a
/// suspended laptop, or a drain that lets hour-long downloads finish, and anything
/// larger is a typo (a missing unit, a value in ms given as s). Bounding it also keeps
/// every deadline (`Instant` + timeout) far from overflow.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// Largest `--linger`: one second. A lingering worker sits in `read` until the linger
/// ends even when new connections queue up behind it, so the linger is added to a new
/// client's wait whenever every worker lingers; past a second that is a stall users see.
pub const MAX_LINGER: Duration = Duration::from_secs(1);

/// Seconds a 503 tells the client to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 1;

/// Batches of access-log records (each up to [`LOG_BATCH`]) queued between workers and
/// the logger/stats thread. That thread only counts and formats (it never waits on
/// stdout: the writer thread does, behind [`LOG_BUFFER_BYTES`]), so the queue only
/// absorbs the moments it is off CPU; when full, workers wait for it, because the
/// counters must see every request. 256 batches are 8,192 records, about 80 ms at
/// 100k requests/s.
pub const LOG_QUEUE: usize = 256;

/// Access-log lines formatted but not yet written to stdout, in bytes (allocated
/// bytes, so it bounds memory). When it is full, new lines are **dropped and counted**
/// (`log_records_dropped` in the stats) instead of making workers wait: a stuck log
/// reader must not stop the site. (nginx blocks its workers on a blocked log; we prefer
/// availability.) 4 MiB is about 20,000 combined lines of 200 bytes, seconds of a busy
/// server's log: enough to ride out a log shipper's hiccup, and a ceiling on memory
/// whatever stdout does.
pub const LOG_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Access-log lines are handed to the writer thread in pieces up to this size (one
/// `write` each), or sooner when no more records are waiting. A pipe's capacity.
pub const LOG_WRITE_BYTES: usize = 64 * 1024;

/// Least time between two warnings about access-log lines dropped or lost (each says
/// how many since the last), so a closed or stalled stdout cannot flood stderr.
pub const LOG_WARN_EVERY: Duration = Duration::from_secs(1);

/// At shutdown, how long the log writer may go without writing anything before the
/// process stops waiting for it (it also never waits past the grace period by more
/// than this). Half of the second beyond `--grace-period` the process may take to exit.
pub const LOG_FLUSH_TIMEOUT: Duration = Duration::from_millis(500);

/// Listen backlog: connections the kernel holds before `accept`.
pub const LISTEN_BACKLOG: i32 = 4096;

/// How long the kernel holds a new connection that has sent nothing before handing it
/// to `accept` anyway (`TCP_DEFER_ACCEPT`; one SYN-ACK retransmission). Until its first
/// bytes arrive a connection takes no worker, slot or descriptor; after this it is
/// accepted and has [`HEAD_TIMEOUT`] for its head, as any other. A client that speaks
/// is accepted the moment its bytes arrive, so this delays nothing but a silent
/// connection's close; short, so that stays near the head deadline it used to have.
pub const DEFER_ACCEPT: Duration = Duration::from_secs(1);

/// Read buffer allocated per connection, in bytes (grows up to [`MAX_HEAD_BYTES`]).
pub const READ_BUF_BYTES: usize = 2 * 1024;

/// Emptied read buffers (of [`READ_BUF_BYTES`]) each worker keeps for the next
/// connection it reads, instead of freeing one when a connection parks and
/// allocating (and zeroing) one when the next wakes: a keep-alive request under load
/// goes through the idle watcher, so that was a malloc, a free and a 2 KiB memset
/// per request. Enough for a burst of wake-ups; at most 32 KiB per worker.
pub const SPARE_READ_BUFFERS: usize = 16;

/// Bytes the copy transport moves per `pread` + `write` when it sends a file range
/// through user space (`THREADSERVE_TRANSPORT=copy`; later TLS). One buffer per
/// worker thread, not per connection: nothing stays in it between calls (a partial
/// write re-reads the rest from the page cache), so 8 workers hold 512 KiB whatever
/// the number of slow readers. 64 KiB is four 16 KiB TLS records and about what a
/// loopback socket takes in one write; smaller buffers cost a system-call pair per chunk.
/// Measured over HTTPS (10 MiB at 64 connections, `loadtest/run --https`, server CPU
/// per response, median of 3): 16 KiB 6.4 ms, 64 KiB 6.3 ms, 256 KiB 8.0 ms (a buffer
/// larger than the caches costs more than the calls it saves).
pub const COPY_CHUNK_BYTES: usize = 64 * 1024;

/// Most range-specs one `Range` header may hold; with more, the header is ignored and
/// the full file is sent (as nginx does). Stops a few header bytes from asking for many
/// multipart parts (response amplification, CVE-2011-3192 "Apache Killer").
pub const MAX_RANGES: usize = 16;

/// Idle keep-alive connections the idle watcher holds at most, in percent of the
/// connection limit. Past it the longest-idle are closed first, so a crowd of idle
/// clients cannot fill every connection slot and turn new clients away with 503
/// (nginx reuses idle connections the same way when `worker_connections` run out).
/// 90% leaves a tenth of the slots for new clients and requests in flight.
pub const MAX_IDLE_PERCENT: usize = 90;

/// Access-log records a worker batches before handing them to the logger thread (one
/// channel send and at most one wake-up per batch instead of per request). A worker
/// also flushes before it waits for work and when its oldest record is
/// [`LOG_BATCH_AGE`] old.
pub const LOG_BATCH: usize = 32;

/// Oldest a batched access-log record may get before the batch is flushed.
pub const LOG_BATCH_AGE: Duration = Duration::from_millis(50);

/// Bytes a response sends in one turn on a worker while other connections wait in
/// the queue; then it goes to the back of the queue. Without turns, 1,000 clients
/// asking for a 10 MB listing each had a worker copy megabytes into their socket
/// buffers before the next request was read: a small file asked for meanwhile
/// waited 4-7 s. A turn is ~50 µs of copying, so 1,000 turns ahead of a request
/// cost it ~50 ms; when nobody waits, a response just goes on.
pub const TURN_BYTES: u64 = 256 * 1024;

/// Paths each worker's file cache remembers (see `files::cache`). Every hit is
/// revalidated with one `statx`, so the size of the cache only trades memory for the
/// open/read/close a miss costs. 16 Ki entries cover the load test's 10,000-file set.
pub const CACHE_ENTRIES: usize = 16 * 1024;

/// Bytes of small files (up to [`INLINE_BODY_MAX`]) each worker's cache keeps in
/// memory, so a hit reads nothing. The workers share one copy of each version
/// (`files::bodies`), so 8 workers hold 128 MiB at the most when they all keep
/// different files and 16 MiB when they keep the same; the load test's 10,000 ×
/// 1 KiB files take about 10 MiB in all.
pub const CACHE_INLINE_BYTES: usize = 16 * 1024 * 1024;

/// Paths each worker's file cache remembers as absent (see `files::cache`), and the
/// longest path it remembers so: at most 1,024 × 255 bytes of names per worker. A
/// browser asks for every file with `Accept-Encoding: gzip, deflate, br, zstd`, and
/// each `FILE.br`, `FILE.zst` and `FILE.gz` that does not exist cost an `openat2`
/// per request; remembered, the three cost one `statx` of their directory.
pub const CACHE_ABSENT: usize = 1024;
/// See [`CACHE_ABSENT`].
pub const CACHE_ABSENT_PATH_BYTES: usize = 255;

/// Open descriptors (larger files, directories) each worker's cache holds. 8 workers
/// × 64 = 512 descriptors (64 workers: 4,096), beside `MAX_CONNECTIONS`.
pub const CACHE_DESCRIPTORS: usize = 64;

/// A cache entry holding a descriptor and not used for this long is dropped (while its
/// worker is busy, within 1.25 × this), so the descriptor of a deleted file does not
/// keep its disk space.
pub const CACHE_IDLE: Duration = Duration::from_secs(1);

/// A small file's entry (its bytes in memory, no descriptor) not used for this long is
/// dropped (within 1.25 × this). It holds no disk space, only memory the per-worker
/// byte bound already caps, and every hit is revalidated, so it may stay as long as
/// nginx's `open_file_cache` keeps an inactive entry by default (60 s). Dropped after one idle second instead,
/// as before, a load that paused (the other servers' turns in `loadtest/`) came back
/// to cold caches: with oha's `Accept-Encoding` each file then cost each worker an
/// `openat2` and 3 missing variants again (about 15 system calls) before it was a hit.
pub const CACHE_IDLE_SMALL: Duration = Duration::from_secs(60);

/// Directory listings up to this size are kept in memory and copied into each
/// response; larger ones are kept in a memory file and sent with sendfile, so a slow
/// reader of a huge listing holds one descriptor instead of a copy of the page.
pub const LISTING_INLINE_MAX: usize = 64 * 1024;

/// Entries one listing shows at most (the page says how many were left out). Bounds
/// the work and memory of one rendering: 100,000 entries render to about 20 MB.
pub const LISTING_MAX_ENTRIES: usize = 100_000;

/// How long a rendered listing is reused while its directory is unchanged (same
/// device, inode, mtime and ctime: no entry created, removed or renamed). Names are
/// therefore always current; the sizes and times shown are at most this old. A
/// 100,000-entry directory costs about 0.5 s to read and render, so it is rendered at
/// most once per worker in this time instead of once per request.
pub const LISTING_TTL: Duration = Duration::from_secs(1);

/// Files up to this size are read into the response-head buffer and sent with the
/// head in one write; larger ones go out with sendfile. One read + one
/// write beats write + fstat + sendfile for small files; 16 KiB fits a socket buffer.
pub const INLINE_BODY_MAX: u64 = 16 * 1024;

/// Smallest response compressed on the fly: below it the saving is a few hundred
/// bytes at most, and the response fits in one TCP segment either way (nginx's
/// `gzip_min_length` guidance; caddy uses 512).
pub const COMPRESS_MIN_BYTES: u64 = 1024;

/// Largest file compressed on the fly; larger ones go out as they are. JavaScript
/// bundles of a few MiB are common; compressing 8 MiB once takes about 0.3 s on this
/// machine at the levels below (see examples/compress_levels.rs).
pub const COMPRESS_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// Default `--compress-cache`: bytes of compressed representations kept, across all
/// workers. 64 MiB holds a typical site's text assets in every coding.
pub const COMPRESS_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Levels chosen by measurement (examples/compress_levels.rs, 64 KiB JavaScript and a
/// 195 KiB HTML page from the Rust docs, this machine): each is the knee of ratio
/// against CPU. gzip 6 is 24% smaller than gzip 1 (nginx's default) for 3x the time;
/// 9 gains 0.1% more. Brotli 5 is within 1% of 6 and 9 at a seventh of 9's time
/// (3.4 ms for 64 KiB); 11 is 8% smaller for 40x the time. zstd 9 is 8% smaller than
/// 3 at 2 ms for 64 KiB; 19 costs 14x more for 3%.
pub const GZIP_LEVEL: u32 = 6;
/// See [`GZIP_LEVEL`].
pub const BROTLI_QUALITY: u32 = 5;
/// See [`GZIP_LEVEL`].
pub const ZSTD_LEVEL: i32 = 9;

/// Brotli's window (`lgwin`), its default: at quality 5 a smaller window fitted to a
/// small file makes the brotli crate use 12 times the memory and 5 times the time
/// (VmHWM: 31 MiB and 30 ms against 2.6 MiB and 5.6 ms for a 64 KiB script), which
/// the compression cache's bound does not count.
pub const BROTLI_WINDOW_BITS: u32 = 22;

/// How long a request waits for another worker compressing the same representation,
/// or for a free compression slot, before sending the identity bytes instead.
pub const COMPRESS_WAIT: Duration = Duration::from_secs(2);

/// Compressed representations a worker keeps handles to without asking the shared
/// cache (its lock-free front); entries the shared cache evicted are dropped at
/// their next use.
pub const COMPRESS_FRONT_ENTRIES: usize = 1024;
/// Credentials that passed a bcrypt check and are remembered (as keyed hashes), so a
/// logged-in client does not pay the check per request. When full, the cache starts
/// over: its clients each pay one check again. 4,096 entries of 16 bytes.
pub const AUTH_CACHE_ENTRIES: usize = 4096;

/// One bcrypt check may run at once per this many CPUs (at least one). A check costs
/// tens of milliseconds of CPU; credentials that are not cached and find every slot
/// taken get 429 at once instead of waiting on a worker, so a flood of wrong passwords
/// takes at most half the CPUs, and never every worker of the pool.
pub const AUTH_CHECK_CPUS: usize = 2;

/// Failed logins an address may make in a row before its attempts are spaced out
/// (see `auth::throttle`): enough for a few typing mistakes.
pub const AUTH_FREE_FAILURES: u32 = 3;
/// The wait before an address's next check after its first failure beyond the free
/// ones; each further failure doubles it. A quarter second is the idle watcher's sweep.
pub const AUTH_FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between two checks for one address: a failing address gets at
/// most one bcrypt check per this long, however many connections it opens, while a
/// person who mistyped waits no longer than this.
pub const AUTH_MAX_DELAY: Duration = Duration::from_secs(2);
/// An address with no failure for this long starts again with its free attempts.
pub const AUTH_FAILURE_MEMORY: Duration = Duration::from_secs(60);
/// Addresses whose failures are remembered (about 40 bytes each). When full, those
/// forgotten by [`AUTH_FAILURE_MEMORY`] go first, then the one that failed longest
/// ago; the check slots ([`AUTH_CHECK_CPUS`]) still bound a flood from more addresses.
pub const AUTH_FAILURE_SOURCES: usize = 16_384;

/// The realm `WWW-Authenticate` names when `--auth-realm` is not given.
pub const AUTH_REALM: &str = "threadserve";

/// Upper bounds, in seconds, of the request-duration histogram the metrics path
/// serves (`threadserve_request_duration_seconds`; `+Inf` is implied). A request's
/// duration runs from its complete head to its last byte written, so small files
/// land in the first buckets (a 1 KiB hit takes tens of microseconds) and large
/// downloads to slow clients in the last: 1-2.5-5 steps from 100 µs to 1 s, then
/// 2.5 s, 10 s and 60 s. 16 buckets: 17 series, the size of a default client's set.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];
