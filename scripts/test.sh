#!/bin/sh
# ./twokey test — the whole suite against PostgreSQL, Redis, the vcsim lab and
# real Celery workers. Starts PostgreSQL and Redis when they are not running.
set -eu
. "$(dirname "$0")/lib.sh"

# slapd and ldap-utils: the tests run an OpenLDAP of their own (never the system's slapd service).
ensure_system postgresql postgresql-client chromium slapd ldap-utils
ensure_venv
build_vcsim
ensure_oidc_provider

start_postgres() {
    pg_isready -q -h 127.0.0.1 -p 5432 && return 0
    say "starting PostgreSQL"
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$version" ] || die "PostgreSQL is installed but has no cluster in /etc/postgresql"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || die "could not start PostgreSQL $version"
    for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && return 0; sleep 0.2; done
    die "PostgreSQL did not come up on 127.0.0.1:5432"
}

database_url() {
    if [ -n "${DATABASE_URL:-}" ]; then echo "$DATABASE_URL"; return; fi
    if psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1 </dev/null; then
        echo "postgres://postgres@127.0.0.1:5432/twokey"; return
    fi
    # No trust authentication: give the suite a role of its own with a local password.
    pw=$(local_secret postgres_password)
    as_root runuser -u postgres -- psql -q -d postgres -c \
        "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'twokey') THEN CREATE ROLE twokey LOGIN CREATEDB; END IF; END \$\$; ALTER ROLE twokey PASSWORD '$pw';" \
        >/dev/null || die "could not create the PostgreSQL role for the tests"
    echo "postgres://twokey:$pw@127.0.0.1:5432/twokey"
}

start_redis() {
    redis_up 6379 && return 0
    say "starting Redis"
    mkdir -p "$DATA"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --logfile "$DATA/redis.log" >/dev/null || die "could not start redis-server"
    for _ in $(seq 1 50); do redis_up 6379 && return 0; sleep 0.1; done
    die "Redis did not come up on 127.0.0.1:6379"
}

start_postgres
start_redis
DATABASE_URL=$(database_url)
export DATABASE_URL
# The suite talks plain http to its own servers: no TLS redirects or secure-only cookies.
export TWOKEY_DATA_DIR="$DATA/test" TWOKEY_LOCAL_KEYS=1 DEBUG=0 TWOKEY_HTTPS=0
export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/11}" CACHE_URL="${TEST_CACHE_URL:-redis://127.0.0.1:6379/12}"
export TWOKEY_VCSIM_BIN="$ROOT/.cache/bin/twokey-vcsim"
cd "$ROOT"

say "static checks (ruff, bandit)"
"$VENV/bin/ruff" check --quiet . || die "ruff found problems (see above)"
"$VENV/bin/ruff" format --check --quiet . || die "files need formatting: .venv/bin/ruff format ."
# Medium and high findings fail the run; an accepted one carries '# nosec' and its reason in place.
"$VENV/bin/bandit" --quiet --severity-level medium -r accounts approvals audit connectors portal ||
    die "bandit found medium or high severity problems (see above)"

# Two or more test processes (pytest-xdist), each with a database, Redis
# databases and a data directory of its own (tests/parallel.py): most tests
# wait on workers, labs and browsers, so two share two cores well. At most
# six fit the Redis databases; TEST_PROCESSES=0 runs in this process.
processes=${TEST_PROCESSES:-$(nproc 2>/dev/null || echo 2)}
[ "$processes" -eq 0 ] || [ "$processes" -ge 2 ] || processes=2
[ "$processes" -le 4 ] || processes=4
if [ "$processes" -eq 0 ]; then say "pytest in one process"; else say "pytest in $processes processes"; fi
exec "$VENV/bin/pytest" -n "$processes" "$@"
