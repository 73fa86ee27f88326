# threadserve: a fully static binary on an empty (scratch) image.
#
#   docker build -t threadserve .
#   docker run -p 8080:8080 -v "$PWD:/srv:ro" threadserve
#
# RUST_IMAGE lets a machine without registry access build against a local stand-in for
# rust:1 (see tests/container.sh).
ARG RUST_IMAGE=rust:1

FROM ${RUST_IMAGE} AS build
WORKDIR /build
# Static glibc binary (no dynamic loader, no libc in the final image); symbols stripped
# to keep the image small. Binding numeric addresses never calls getaddrinfo, so the
# usual "getaddrinfo in statically linked applications" link warning does not matter
# for --bind IP:PORT (host names would need NSS libraries the image does not have).
#
# The image must stay under 5 MB: the compressors (brotli's encoder alone is about
# 1 MB of tables and code), rustls and ring make the binary too large at opt-level 3,
# so the image's build is optimised for size (opt-level "s", fat LTO) and linked
# without position independence (no relocation table). `cargo build --release`
# outside the image keeps opt-level 3, and the load-test figures are for that build.
ENV RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=s \
    CARGO_PROFILE_RELEASE_LTO=fat \
    CARGO_TERM_COLOR=never

# 1) Dependencies, cached until Cargo.toml or Cargo.lock change: build them against
#    stub sources. Every target the manifest names explicitly ([lib], [[bin]],
#    [[example]], [[test]], [[bench]], with or without `path`) gets a stub file, or cargo
#    would refuse the manifest; only src/ is needed by `cargo build --release`, so the
#    stubs of the other targets are never compiled.
COPY Cargo.toml Cargo.lock ./
RUN set -eu; \
    mkdir -p src; echo 'fn main() {}' > src/main.rs; : > src/lib.rs; \
    stub() { \
      [ "$kind" = - ] && return 0; p=$path; \
      if [ -z "$p" ]; then case $kind in \
        lib) p=src/lib.rs ;; bin) p="src/bin/$name.rs" ;; example) p="examples/$name.rs" ;; \
        test) p="tests/$name.rs" ;; bench) p="benches/$name.rs" ;; esac; fi; \
      mkdir -p "$(dirname "$p")"; [ -e "$p" ] || echo 'fn main() {}' > "$p"; \
    }; \
    kind=-; name=; path=; \
    sed -n -e 's/^\[\[\(bin\|example\|test\|bench\)\]\].*/T \1/p' -e 's/^\[\(lib\)\].*/T \1/p' \
      -e 's/^\[.*/T -/p' -e 's/^name *= *"\([^"]*\)".*/N \1/p' -e 's/^path *= *"\([^"]*\)".*/P \1/p' \
      Cargo.toml > /tmp/targets; \
    while read -r tag value; do case $tag in \
      T) stub; kind=$value; name=; path= ;; N) name=$value ;; P) path=$value ;; esac; \
    done < /tmp/targets; stub; \
    cargo build --release --locked --target x86_64-unknown-linux-gnu

# 2) The real sources. COPY keeps the files' own (older) mtimes, so touch them or cargo
#    would take the stub build as up to date.
COPY src ./src
RUN set -eu; \
    find src -name '*.rs' -exec touch {} +; \
    cargo build --release --locked --target x86_64-unknown-linux-gnu; \
    bin=target/x86_64-unknown-linux-gnu/release/threadserve; \
    readelf -l -d "$bin" > /tmp/elf; \
    if grep -qE 'INTERP|\(NEEDED\)' /tmp/elf; then echo "error: $bin is not static" >&2; exit 1; fi; \
    mkdir -p /out/srv; cp "$bin" /out/threadserve; "$bin" --version

FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="threadserve" \
      org.opencontainers.image.description="A static-file HTTP/1.1 server on blocking I/O and a fixed pool of OS threads: no async runtime." \
      org.opencontainers.image.source="https://github.com/threadserve/threadserve" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
COPY --from=build /out/threadserve /threadserve
# scratch has no mkdir: the (empty) docroot comes from the build stage.
COPY --from=build --chown=65532:65532 /out/srv /srv
# Configuration lives in the environment rather than in CMD, so that the server and
# `threadserve healthcheck` (which reads THREADSERVE_BIND / THREADSERVE_PORT) always agree
# on the address, and so that every THREADSERVE_* variable works: a flag in CMD would
# silently win over `-e THREADSERVE_BIND=...`. Arguments given to `docker run` (flags, or
# another root directory) are passed straight to the server.
ENV THREADSERVE_BIND=0.0.0.0:8080 \
    THREADSERVE_ROOT=/srv
USER 65532:65532
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/threadserve", "healthcheck"]
ENTRYPOINT ["/threadserve"]
