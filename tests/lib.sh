# Shared by tests/run and demo/run: installs what they need and builds the workspace.
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
# The shipped binaries are built against glibc 2.28's symbol versions (docs/platforms.md,
# "The floor build"): cargo-zigbuild links with zig's glibc stubs of that version. NSS_EC2_TARGET names the
# Rust target (default: this machine's, x86_64 or aarch64), NSS_EC2_GLIBC the floor. Cargo puts
# them in $REL.
NSS_EC2_TARGET=${NSS_EC2_TARGET:-$(uname -m)-unknown-linux-gnu}
NSS_EC2_GLIBC=${NSS_EC2_GLIBC:-2.28}
REL=$TARGET/$NSS_EC2_TARGET/release
STAGE=$TARGET/nss
VENV=${NSS_EC2_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/nss-ec2/venv}
LOGDIR=$TARGET/logs
mkdir -p "$LOGDIR"

# Each step's name and start; step_times prints how long each took (tests/run: at exit).
STEP_NAMES=() STEP_STARTS=()
step() {
    STEP_NAMES+=("$*")
    STEP_STARTS+=("$SECONDS")
    printf '\n==> %s\n' "$*"
}
step_times() {
    local rc=${1:-$?} i end
    [ ${#STEP_NAMES[@]} -gt 0 ] || return 0
    printf '\n==> step times (%s)\n' "$([ "$rc" = 0 ] && echo passed || echo "FAILED, exit $rc")"
    for i in "${!STEP_NAMES[@]}"; do
        end=${STEP_STARTS[$((i + 1))]:-$SECONDS}
        printf '%6ds  %s\n' "$((end - STEP_STARTS[i]))" "${STEP_NAMES[$i]}"
    done
    printf '%6ds  total\n' "$SECONDS"
}

# Fails when a cargo log shows the AWS SDK being compiled again (a feature or flag difference
# from the release build): tests/run compiles the SDK once checked and once built, no more.
no_sdk_rebuild() {
    if grep -E '^\s*Compiling (aws-|hyper |rustls )' "$1"; then
        echo "error: this step recompiled the AWS SDK; its features differ from the release build's" \
            "(compare: cargo tree -e features)" >&2
        return 1
    fi
}

# Debian packages the scripts use. Installed only when missing; needs root (or sudo).
ensure_debian_packages() {
    local want=() sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    command -v python3 >/dev/null || want+=(python3)
    python3 -c 'import venv, ensurepip' 2>/dev/null || want+=(python3-venv)
    command -v getent >/dev/null || want+=(libc-bin)
    command -v unshare >/dev/null || want+=(util-linux)
    command -v readelf >/dev/null || want+=(binutils)
    command -v cc >/dev/null || want+=(gcc)
    command -v make >/dev/null || want+=(make)
    # Only the tests: DNS for the package test, the package build and its checks.
    if [ "${1:-}" = tests ]; then
        command -v dnsmasq >/dev/null || want+=(dnsmasq-base)
        command -v dpkg-buildpackage >/dev/null || want+=(dpkg-dev)
        dpkg -s debhelper >/dev/null 2>&1 || want+=(debhelper)
        dpkg -s dh-nss >/dev/null 2>&1 || want+=(dh-nss)
        command -v help2man >/dev/null || want+=(help2man)
        command -v lintian >/dev/null || want+=(lintian)
        command -v debootstrap >/dev/null || want+=(debootstrap)
        command -v systemd-analyze >/dev/null || want+=(systemd)
        # DNS (issue 13): the clients and servers the stub and the exports are tested with.
        command -v dig >/dev/null || want+=(dnsutils)
        command -v kdig >/dev/null || want+=(knot-dnsutils)
        command -v named-checkzone >/dev/null || want+=(bind9-utils)
        command -v musl-gcc >/dev/null || want+=(musl-tools)
        command -v go >/dev/null || want+=(golang-go)
        command -v dnsperf >/dev/null || want+=(dnsperf)
        # Every EC2 Linux (issue 20): the RPM build, its lint, and unpacking RPMs to check them.
        command -v rpmbuild >/dev/null || want+=(rpm)
        command -v rpm2cpio >/dev/null || want+=(rpm2cpio)
        command -v rpmlint >/dev/null || want+=(rpmlint)
        command -v cpio >/dev/null || want+=(cpio)
    fi
    # The real clients of the facts and metrics (without their recommends: no X, no docs).
    local lean=()
    if [ "${1:-}" = tests ]; then
        command -v facter >/dev/null || lean+=(facter)
        command -v ansible >/dev/null || lean+=(ansible-core)
        command -v promtool >/dev/null || lean+=(prometheus)
        command -v unbound >/dev/null || lean+=(unbound)
        # The zone exports loaded by BIND and NSD themselves (issue 23): named-checkzone does not
        # check what named refuses (max-records-per-type).
        command -v named >/dev/null || lean+=(bind9)
        command -v nsd >/dev/null || lean+=(nsd)
    fi
    if [ ${#want[@]} -gt 0 ] || [ ${#lean[@]} -gt 0 ]; then
        echo "installing: ${want[*]} ${lean[*]}"
        $sudo apt-get update -qq
        [ ${#want[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${want[@]}"
        if [ ${#lean[@]} -gt 0 ]; then
            # promtool comes with Debian's Prometheus server, and unbound, BIND and NSD are
            # servers too: a policy-rc.d that refuses (101) keeps their services (*:9090, port
            # 53) from starting on this machine, and they are disabled at boot, when this script
            # installed them (not an operator's own). PACKAGE:SERVICE.
            local policy="" ours=() s
            for s in prometheus:prometheus unbound:unbound bind9:named nsd:nsd; do
                dpkg -s "${s%%:*}" >/dev/null 2>&1 || ours+=("${s#*:}")
            done
            if [ ! -e /usr/sbin/policy-rc.d ]; then
                policy=/usr/sbin/policy-rc.d
                printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
                $sudo chmod 0755 "$policy"
                # Also when interrupted: a refusing policy-rc.d left behind blocks every service.
                trap '$sudo rm -f /usr/sbin/policy-rc.d; exit 130' INT TERM
            fi
            local rc=0
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
                "${lean[@]}" || rc=$?
            if [ -n "$policy" ]; then
                $sudo rm -f "$policy"
                trap - INT TERM
            fi
            [ "$rc" = 0 ] || return "$rc"
            for s in "${ours[@]}"; do
                $sudo systemctl disable --quiet "$s.service" 2>/dev/null || true
            done
        fi
    fi
    if ! command -v cargo >/dev/null; then
        echo "cargo not found: install Rust >= 1.94 with rustup (https://rustup.rs)" >&2
        exit 1
    fi
}

# A venv outside the clone with the emulator and test tools, and the floor build's linker
# (cargo-zigbuild and zig, pinned: the versions the floor was checked with), reused between runs.
ZIG_PINS=(cargo-zigbuild==0.24.1 ziglang==0.17.1)
ensure_venv() {
    if ! "$VENV/bin/python" -c 'import moto, boto3, pytest, flask, yaml, xdist, ziglang, cfnlint' 2>/dev/null ||
        [ "$("$VENV/bin/cargo-zigbuild" --version 2>/dev/null)" != "cargo-zigbuild ${ZIG_PINS[0]#*==}" ]; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --upgrade pip
        "$VENV/bin/pip" install -q 'moto[server]>=5,<6' boto3 'pytest>=7' pyyaml 'pytest-xdist>=3.2' 'cfn-lint>=1,<2' "${ZIG_PINS[@]}"
    fi
}

# cargo-zigbuild SUBCOMMAND ARGS: cargo with zig as the linker, for the floor target. The venv's
# bin first on PATH: cargo-zigbuild runs zig as `python3 -m ziglang`.
zigcargo() {
    local sub=$1
    shift
    PATH="$VENV/bin:$PATH" cargo-zigbuild "$sub" --target "$NSS_EC2_TARGET.$NSS_EC2_GLIBC" "$@"
}

# Release build of the workspace; the module is staged under the name glibc loads.
build_all() {
    zigcargo zigbuild --release --workspace --locked
    mkdir -p "$STAGE"
    cp "$REL/libnss_ec2.so" "$STAGE/libnss_ec2.so.2.tmp"
    mv "$STAGE/libnss_ec2.so.2.tmp" "$STAGE/libnss_ec2.so.2"
}

# The module built with the test-only `panic-probe` feature, on the same floor, in its own target
# folder (its cdylib
# would otherwise replace the one the Rust tests dlopen), staged in $PROBE.
PROBE="$TARGET/nss-probe"
build_probe() {
    # With its symbol table: zig's linker drops it (it takes rustc's --strip-debug for
    # --strip-all), and test_module_life.py finds the module's constructor by name here.
    CARGO_PROFILE_RELEASE_STRIP=none CARGO_TARGET_DIR="$TARGET/probe" zigcargo zigbuild --release --locked -p nss-ec2 --features panic-probe
    mkdir -p "$PROBE"
    cp "$TARGET/probe/$NSS_EC2_TARGET/release/libnss_ec2.so" "$PROBE/libnss_ec2.so.2.tmp"
    mv "$PROBE/libnss_ec2.so.2.tmp" "$PROBE/libnss_ec2.so.2"
}

# Starts moto's EC2 server on a free loopback port; sets MOTO_URL and MOTO_PID.
start_moto() {
    local port
    port=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$VENV/bin/python" -m moto.server -H 127.0.0.1 -p "$port" >"$LOGDIR/moto.log" 2>&1 &
    MOTO_PID=$!
    MOTO_URL="http://127.0.0.1:$port"
    for _ in $(seq 100); do
        if "$VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('$MOTO_URL/moto-api/', timeout=1)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "moto did not start; see $LOGDIR/moto.log" >&2
    return 1
}
