# Shared steps of ./twokey run and ./twokey test. Sourced, not executed.
# Everything here is idempotent: a second run reuses what exists.

ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
VENV="$ROOT/.venv"
DATA="${TWOKEY_DATA_DIR:-$ROOT/var}"
export TWOKEY_DATA_DIR="$DATA"

say() { printf '\033[1mtwokey:\033[0m %s\n' "$*" >&2; }
die() { printf 'twokey: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root to run: $* (install sudo or run as root)"; fi
}

# ensure_packages PKG... — apt-get install the Debian packages that are missing.
ensure_packages() {
    missing=""
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
    done
    [ -z "$missing" ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing packages:$missing (and no apt-get to install them)"
    say "installing system packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q >/dev/null || die "apt-get update failed"
    # shellcheck disable=SC2086
    as_root apt-get install -y -q --no-install-recommends $missing >/dev/null || die "apt-get install$missing failed"
}

python_bin() {
    for candidate in "${PYTHON:-}" python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    return 1
}

ensure_system() {
    # libldap2-dev, libsasl2-dev, gcc, python3-dev: python-ldap (requirements.txt) builds from source.
    ensure_packages ca-certificates redis-server golang-go golang-github-vmware-govmomi-dev \
        libldap2-dev libsasl2-dev gcc python3-dev "$@"
    py=$(python_bin) || { ensure_packages python3 python3-venv; py=$(python_bin) || die "Python 3.11 or newer is needed"; }
    "$py" -c 'import venv, ensurepip' 2>/dev/null || ensure_packages python3-venv
}

# ensure_venv — create .venv and install requirements.txt when it changed.
ensure_venv() {
    py=$(python_bin)
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating the virtualenv in .venv"
        "$py" -m venv "$VENV" || die "could not create a virtualenv with $py"
    fi
    stamp="$VENV/.requirements.sha256"
    want=$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "installing Python packages (requirements.txt)"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements.txt" ||
            die "pip install -r requirements.txt failed"
        echo "$want" > "$stamp"
    fi
}

# ensure_oidc_provider — the npm package oidc-provider, for the OpenID
# provider the tests run, in .cache/oidc-provider from the committed lock
# (tests/fixtures/oidc/); npm ci runs again only when the lock changed.
ensure_oidc_provider() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || ensure_packages nodejs npm
    src="$ROOT/tests/fixtures/oidc"
    dir="$ROOT/.cache/oidc-provider"
    stamp="$dir/.lock.sha256"
    want=$(sha256sum "$src/package-lock.json" | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -d "$dir/node_modules/oidc-provider" ]; then
        say "installing the tests' OpenID provider (npm ci)"
        mkdir -p "$dir"
        cp "$src/package.json" "$src/package-lock.json" "$dir/"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci for oidc-provider failed"
        echo "$want" > "$stamp"
    fi
}

build_vcsim() {
    "$ROOT/scripts/build-vcsim.sh" "$ROOT/.cache/bin/twokey-vcsim" || die "building the vcsim lab failed"
}

# local_secret NAME — a random secret kept in DATA/NAME.key (0600), made once.
local_secret() {
    mkdir -p "$DATA"
    f="$DATA/$1.key"
    if [ ! -s "$f" ]; then
        (umask 077; "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(24))' > "$f")
    fi
    cat "$f"
}

redis_up() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }
