# Shared set-up for scripts/test and scripts/dashboard (sourced, not run).
#
# Each step is idempotent and cheap when its work is already done, so the README commands
# can be run again and again. Progress goes to stderr, one line per step that does work.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"

say() { echo "[setup] $*" >&2; }
in_ci() { case "${CI:-}" in 1 | true | yes) return 0 ;; *) return 1 ;; esac; }
# A service the tests need is missing: fatal under CI=true, else those tests are skipped.
missing() {
    if in_ci; then die "$*"; fi
    say "warning: $* — the tests that need it will be skipped"
    return 1
}
die() { echo "[setup] error: $*" >&2; exit 2; }

# apt-get as root, else through sudo when there is one.
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"; else
        die "need root to run: $*"
    fi
}

apt_install() {
    say "installing $* with apt-get"
    as_root apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >&2
}

find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    die "Python 3.11 or newer is required (none found on PATH)"
}

# ensure_venv EXTRAS: create .venv if missing and install the project (editable) with EXTRAS
# ("" or "test"). A stamp of pyproject.toml's hash skips pip when nothing changed.
ensure_venv() {
    local extras="$1" target="$REPO_ROOT" stamp hash
    if [ -n "$extras" ]; then target="$REPO_ROOT[$extras]"; fi
    if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        local python
        python="$(find_python)"
        # Missing or broken (a Python upgrade leaves dangling links): build it anew.
        rm -f "$VENV"/.toolkit-installed-* 2>/dev/null || true
        say "creating the virtual environment .venv ($("$python" --version))"
        if ! "$python" -m venv --clear "$VENV" >/dev/null 2>&1; then
            # Debian ships venv/ensurepip separately.
            rm -rf "$VENV"
            apt_install python3-venv
            "$python" -m venv "$VENV"
        fi
    fi
    hash="$(sha256sum "$REPO_ROOT/pyproject.toml" | cut -d' ' -f1)"
    stamp="$VENV/.toolkit-installed-${extras:-base}"
    # The test extras include everything the base install needs.
    if [ "$(cat "$stamp" 2>/dev/null)" = "$hash" ] ||
        { [ -z "$extras" ] && [ "$(cat "$VENV/.toolkit-installed-test" 2>/dev/null)" = "$hash" ]; }; then
        return 0
    fi
    (
        # Several runs at once must not pip into the same venv concurrently.
        flock 9
        if [ "$(cat "$stamp" 2>/dev/null)" != "$hash" ]; then
            say "installing the project: pip install -e '$target'"
            "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$target" >&2 ||
                die "pip could not install the project (is the package index reachable? see pip's output above)"
            echo "$hash" >"$stamp"
        fi
    ) 9>"$VENV/.toolkit-install.lock"
}

pg_answers() {
    pg_isready -q -h 127.0.0.1 -p 5432 -t 3 2>/dev/null
}

ensure_postgres() {
    command -v pg_isready >/dev/null 2>&1 || { missing "PostgreSQL is not installed (apt-get install postgresql)"; return 0; }
    pg_answers && return 0
    local version
    version="$(pg_lsclusters -h 2>/dev/null | awk '$3 == 5432 {print $1; exit}')"
    [ -n "$version" ] || { missing "no PostgreSQL cluster on port 5432 (pg_lsclusters)"; return 0; }
    say "starting PostgreSQL $version (pg_ctlcluster)"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
    for _ in $(seq 1 50); do
        pg_answers && return 0
        sleep 0.2
    done
    missing "PostgreSQL did not come up on 127.0.0.1:5432" || true
}

ensure_pgbouncer() {
    if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
        ( apt_install pgbouncer ) || { missing "PgBouncer could not be installed"; return 0; }
    fi
    "$REPO_ROOT/scripts/start-pgbouncer" || missing "PgBouncer did not start" || true
}

# tmux: the dashboard's real-terminal tests (80×24) run it in a tmux pane.
ensure_tmux() {
    command -v tmux >/dev/null 2>&1 || ( apt_install tmux ) || missing "tmux could not be installed"
}

# drizzle-kit, drizzle-orm and pg for the interop tests, exactly as package-lock.json pins them.
ensure_node_modules() {
    local dir="$REPO_ROOT/tests/node" stamp hash
    command -v npm >/dev/null 2>&1 || { missing "npm is missing (install Node 20)"; return 0; }
    hash="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    stamp="$dir/node_modules/.toolkit-lock-sha256"
    if [ "$(cat "$stamp" 2>/dev/null)" = "$hash" ] && [ -x "$dir/node_modules/.bin/drizzle-kit" ]; then
        return 0
    fi
    say "installing drizzle-kit, drizzle-orm and pg (npm ci in tests/node)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$hash" >"$stamp"
}
