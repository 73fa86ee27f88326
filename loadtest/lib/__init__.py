"""loadtest/run's modules (Python 3 standard library only).

common     paths, matrix constants, small helpers
workspace  RLIMIT_NOFILE, the generated docroot
peers      building, configuring, starting and stopping the servers
procfs     /proc sampling of a server's RSS and threads; its CPU time per run
wire       compression and HTTPS cells: one GET over a raw (or TLS) socket,
           wire sizes, decoding, the TLS check
https      HTTPS cells: the certificate, the client TLS context, wrk's handshake shim
textgen    compression cells: deterministic pseudo-JavaScript and HTML
tools      wrk and oha: invocation and output parsing
matrix     one cell: start, check, warm up, interleaved repetitions
report     medians, Markdown tables, results files, the --quick verdict
chart      the SVG chart
profile    --profile: perf record (or strace -c) on threadserve in one cell
cli        flags and orchestration; main()
"""
