//! The `threadserve` command: parse flags, bind, serve until SIGTERM/SIGINT (SIGHUP
//! asks for a reload; SIGUSR1 and SIGUSR2 are ignored).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;
use threadserve::config::{self, Command};
use threadserve::config_file::{self, Loaded};
use threadserve::server::{Handle, Server};

/// Allocations at least this large are always mmap'd and returned to the OS when
/// freed. Without a fixed threshold glibc raises it after each large free, so the
/// transient buffer of a big listing (about 20 MB for 100,000 entries) would stay in
/// each worker's heap arena afterwards: 1,000 slow readers of such a listing took RSS
/// from 12 to 228 MiB before this.
const MMAP_THRESHOLD: i32 = 256 * 1024;

fn main() -> ExitCode {
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let loaded = match config_file::parse(std::env::args_os().collect()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("threadserve: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Healthcheck { bind, port, path, .. }) = &loaded.cli.command {
        return healthcheck(bind, *port, path);
    }
    if loaded.cli.check_config {
        return check_config(loaded);
    }
    match serve(loaded) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("threadserve: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `--check-config`: validates everything serving would, prints the effective
/// settings (each with where it came from) and exits.
fn check_config(loaded: Loaded) -> ExitCode {
    let report = loaded.report();
    match loaded.into_config() {
        Ok(config) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{report}");
            for warning in config.warnings() {
                let _ = writeln!(out, "# warning: {warning}");
            }
            let _ = writeln!(out, "# the configuration is valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("threadserve: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(loaded: Loaded) -> Result<(), String> {
    let config = loaded.into_config().map_err(|e| e.to_string())?;
    let threads = config.threads;
    let root = config.root.path().display().to_string();
    let resolution = config.root.describe();
    let max_connections = config.limits.max_connections;
    let warnings = config.warnings();
    let (scheme, tls) = match &config.tls {
        Some(tls) => ("https", Some(tls.describe())),
        None => ("http", None),
    };
    let server = Server::bind(config).map_err(|e| e.to_string())?;
    // After bind, so a start-up error stays the only line on stderr.
    for warning in warnings {
        log::warn!("{warning}");
    }
    raise_fd_limit(max_connections);
    handle_signals(server.handle())?;
    let addr = server.local_addr();
    println!(
        "threadserve serving {root} at {scheme}://{} with {threads} worker threads",
        display_addr(addr)
    );
    let _ = std::io::stdout().flush();
    log::info!("root {resolution}");
    match &tls {
        Some(_) => log::info!("transport TLS (rustls): file ranges copied through a user-space buffer"),
        None => log::info!("transport {}", server.transport().describe()),
    }
    if let Some(tls) = tls {
        log::info!("TLS certificate: {tls}");
    }
    server.run().map_err(|e| e.to_string())?;
    Ok(())
}

/// Catches the signals whose default action would kill the server: SIGTERM and SIGINT
/// start a graceful shutdown (with --health-path, a drain first: see
/// `Handle::terminate`), SIGHUP asks for a reload, SIGUSR1 and SIGUSR2 are ignored
/// (logged at debug level) so a stray `kill -USR1` cannot take the site down.
fn handle_signals(handle: Handle) -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("ts-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                match sig {
                    SIGHUP => handle.reload(),
                    SIGUSR1 | SIGUSR2 => log::debug!("received signal {sig}; ignored"),
                    _ => {
                        log::info!("received signal {sig}; stopping");
                        handle.terminate();
                    }
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Raises the soft RLIMIT_NOFILE to the hard limit: every open connection is a file
/// descriptor, and the usual soft default (1024) would cap the server far below
/// `--max-connections`. Logs the limit it ends up with; never fails start-up.
fn raise_fd_limit(max_connections: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        log::warn!("cannot read the open-file limit: {}", std::io::Error::last_os_error());
        return;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        } else {
            log::warn!(
                "cannot raise the open-file limit from {} to {}: {}",
                lim.rlim_cur,
                lim.rlim_max,
                std::io::Error::last_os_error()
            );
        }
    }
    let limit = if lim.rlim_cur == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        lim.rlim_cur.to_string()
    };
    log::info!("open-file limit: {limit} (--max-connections {max_connections})");
    if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < max_connections as u64 + 64 {
        log::warn!(
            "the open-file limit ({limit}) is below --max-connections ({max_connections}) plus room for \
             files being served; raise `ulimit -n` or lower --max-connections"
        );
    }
}

/// `0.0.0.0:8080` is not a URL anyone can open; show a loopback URL for it.
fn display_addr(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => format!("127.0.0.1:{}", a.port()),
        SocketAddr::V6(a) if a.ip().is_unspecified() => format!("[::1]:{}", a.port()),
        a => a.to_string(),
    }
}

/// Sends `HEAD path` to the server and exits 0 if the status is below 500.
fn healthcheck(bind: &str, port: Option<u16>, path: &str) -> ExitCode {
    let check = || -> Result<u16, String> {
        let addr = config::resolve_bind(bind, port).map_err(|e| e.to_string())?;
        let addr: SocketAddr = display_addr(addr).parse().map_err(|e| format!("{e}"))?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| format!("{addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        write!(
            s,
            "HEAD {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut head = [0u8; 64];
        let n = s.read(&mut head).map_err(|e| e.to_string())?;
        let line = String::from_utf8_lossy(&head[..n]);
        line.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("not an HTTP response: {line:?}"))
    };
    match check() {
        Ok(code) if code < 500 => ExitCode::SUCCESS,
        Ok(code) => {
            eprintln!("threadserve healthcheck: status {code}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("threadserve healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}
