#!/usr/bin/env bash
# What firehose needs on a machine, installed only when missing. The package lists live in
# tools/deps/ (read here and by the check below, nowhere else).
#
#   tools/deps.sh install run     Debian packages to build and run the broker (`make run`)
#   tools/deps.sh install test    those, plus the test stack: Debian packages, Python packages,
#                                 the dashboard test's node modules and the Kafka jars (`make test`)
#   tools/deps.sh wanted run|test the Debian packages this machine would be asked for, one a line
#   tools/deps.sh check           simulate (apt-get install -s) every Debian package `install test`
#                                 may ask for on this machine and fail naming any that conflict
#
# Environment: FIREHOSE_DEPS_EXTRA="pkg ..." adds Debian packages to the set `check` simulates
# (to ask whether a package would install beside ours; tests/deps/test_deps.py adds npm).
#
# A list line is "package [command]": when the command is already on PATH and the package is not
# installed, another build of that tool is here (NodeSource's nodejs bundles npm, and Debian's npm
# conflicts with it), so the package is never asked for.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
LISTS="$HERE/deps"
PYTHON="${PYTHON:-python3}"

say() { printf 'deps: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

lists_for() {
    case "$1" in
    run) echo "$LISTS/apt-run.txt" ;;
    test) echo "$LISTS/apt-run.txt $LISTS/apt-test.txt" ;;
    *) die "unknown set '$1' (run or test)" ;;
    esac
}

# Prints "package command" for each entry of the lists ("-" when the line names no command).
entries() {
    local f
    for f in "$@"; do
        sed -e 's/#.*//' "$f" | awk 'NF { print $1, (NF > 1 ? $2 : "-") }'
    done
}

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

# stands_aside PKG CMD: true when PKG is not installed but CMD is on PATH from something else.
stands_aside() { [ "$2" != "-" ] && ! installed "$1" && command -v "$2" >/dev/null 2>&1; }

# The packages of set $1 that are missing here and not stood in for.
missing() {
    local pkg cmd
    # shellcheck disable=SC2046
    entries $(lists_for "$1") | while read -r pkg cmd; do
        installed "$pkg" || stands_aside "$pkg" "$cmd" || echo "$pkg"
    done
}

# The packages of set $1 that may be asked for here: every one, less those stood in for.
wanted() {
    local pkg cmd
    # shellcheck disable=SC2046
    entries $(lists_for "$1") | while read -r pkg cmd; do
        stands_aside "$pkg" "$cmd" || echo "$pkg"
    done
}

apt_updated=""
apt_update() {
    [ -n "$apt_updated" ] && return 0
    say "apt-get update (the package lists)"
    $SUDO apt-get update -qq ||
        die "apt-get update failed; see README.md, \"When a package install is refused\""
    apt_updated=1
}

install_apt() {
    local pkgs
    pkgs=$(missing "$1" | tr '\n' ' ')
    if [ -z "${pkgs// /}" ]; then
        say "Debian packages ($1): all present"
        return 0
    fi
    apt_update
    say "installing Debian packages: $pkgs"
    # apt-get's whole output goes to a file; progress lines are shown, its reasons on failure.
    local aptlog left
    aptlog=$(mktemp)
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $pkgs 2>&1 |
        tee "$aptlog" | grep --line-buffered -E '^(Setting up|Unpacking) ' | sed -u 's/^/deps:   /' >&2 || true
    left=$(missing "$1" | tr '\n' ' ')
    if [ -n "${left// /}" ]; then
        grep -E '^ *[a-z0-9.+-]+ : |^E: ' "$aptlog" | sed 's/^/deps:   /' >&2 || true
        rm -f "$aptlog"
        die "apt-get did not install: ${left% } (by hand: ${SUDO:+$SUDO }apt-get install ${left% }; see README.md, \"When a package install is refused\")"
    fi
    rm -f "$aptlog"
}

install_pip() {
    local pkg mod want=""
    while read -r pkg mod; do
        "$PYTHON" -c "import $mod" 2>/dev/null || want="$want $pkg"
    done < <(entries "$LISTS/pip-test.txt")
    if [ -z "$want" ]; then
        say "Python packages: all present"
        return 0
    fi
    say "installing Python packages:$want"
    # shellcheck disable=SC2086
    "$PYTHON" -m pip install -q --disable-pip-version-check $want ||
        die "pip install failed:$want"
}

install_node() {
    if [ -d "$ROOT/tests/dashboard/node_modules/playwright-core" ]; then
        say "node modules (dashboard test): present"
        return 0
    fi
    say "installing node modules for the dashboard test (npm ci)"
    (cd "$ROOT/tests/dashboard" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
}

install_jars() {
    say "Kafka jars (Maven Central, cached in ~/.m2)"
    "$ROOT/tests/kafka/kafka.sh" fetch
}

check() {
    local pkgs out rc=0 extra="${FIREHOSE_DEPS_EXTRA:-}"
    [[ "$extra" =~ ^[[:space:]a-z0-9.+-]*$ ]] ||
        die "FIREHOSE_DEPS_EXTRA: Debian package names only, separated by spaces (got '$extra')"
    pkgs="$(wanted test | tr '\n' ' ')$extra"
    # shellcheck disable=SC2086
    [ -z "${extra// /}" ] || say "check: with FIREHOSE_DEPS_EXTRA:$(printf ' %s' $extra)"
    # The simulation needs the package lists; fetch them once if they do not know our packages.
    # shellcheck disable=SC2086
    if [ -z "$(apt-cache policy $pkgs 2>/dev/null | grep 'Candidate: [^(]')" ] ||
        apt-cache policy $pkgs 2>/dev/null | grep -q 'Candidate: (none)'; then
        apt_update
    fi
    # shellcheck disable=SC2086
    out=$(LC_ALL=C apt-get install -s -q --no-install-recommends $pkgs 2>&1) || rc=$?
    if [ "$rc" -ne 0 ]; then
        printf '%s\n' "$out" | sed 's/^/deps check:   /' >&2
        # apt-get's "pkg : Conflicts: other" lines, one clause each: "nodejs conflicts with npm"
        local named
        named=$(printf '%s\n' "$out" |
            sed -n 's/^ *\([a-z0-9.+-]*\) : \(Conflicts\|Breaks\|Depends\): *\([^ ]*\).*/\1 \2 \3/p' |
            sed 's/ Conflicts / conflicts with /; s/ Breaks / breaks /; s/ Depends / depends on /' |
            sort -u | paste -sd ';' - | sed 's/;/; /g')
        die "check failed: apt-get cannot install the package set together (${named:-see above})"
    fi
    say "check: the $(echo "$pkgs" | wc -w) Debian packages make test may ask for install together"
}

cmd="${1:-}"
case "$cmd" in
install)
    set_="${2:-}"
    case "$set_" in
    run) install_apt run ;;
    test)
        install_apt test
        install_pip
        install_node
        install_jars
        ;;
    *) die "usage: tools/deps.sh install run|test" ;;
    esac
    ;;
wanted) wanted "${2:?usage: tools/deps.sh wanted run|test}" ;;
check) check ;;
-h | --help | help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
*) die "usage: tools/deps.sh install run|test | wanted run|test | check (see --help)" ;;
esac
