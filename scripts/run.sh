#!/bin/sh
# ./twokey run — the whole portal on this machine: web (gunicorn), the Celery
# worker (executions), notify (notifications, checkpoints) and beat, the audit
# log's witness, a Redis of its own and the vcsim lab, with SQLite.
# Ctrl-C stops everything. A second run keeps data and passwords.
set -eu
. "$(dirname "$0")/lib.sh"

ensure_system
ensure_venv
build_vcsim

export DEBUG="${DEBUG:-1}" TWOKEY_LOCAL_KEYS=1
# Not PORT: honcho gives each process a PORT of its own.
export TWOKEY_PORT="${TWOKEY_PORT:-8000}"
export TWOKEY_REDIS_PORT="${TWOKEY_REDIS_PORT:-6390}"
export REDIS_URL="redis://127.0.0.1:$TWOKEY_REDIS_PORT/0"
export VCSIM_PORT="${VCSIM_PORT:-8989}"
export WITNESS_PORT="${WITNESS_PORT:-8010}"
export VCSIM_URL="https://127.0.0.1:$VCSIM_PORT/sdk" VCSIM_USERNAME=twokey-worker
VCSIM_PASSWORD=$(local_secret vcsim_password)
export VCSIM_PASSWORD
export PATH="$VENV/bin:$PATH"
cd "$ROOT"

python manage.py migrate --noinput >/dev/null
python manage.py collectstatic --noinput >/dev/null
# The web never holds CREDENTIALS_KEY (the Procfile starts it without); it
# seals connector passwords to the worker's public key.
CREDENTIALS_PUBLIC_KEY=$(python manage.py credentials_public_key)
export CREDENTIALS_PUBLIC_KEY
# The witness keeps its own key and store in its own folder; it reads the
# portal's API as an auditor of its own, and the portal checks what it
# cosigned with its public key.
python manage.py adduser witness --role auditor >/dev/null 2>&1 || true
WITNESS_API_TOKEN=$(python manage.py apitoken witness)
WITNESS_PUBLIC_KEY=$(python -m audit.witness public-key --data-dir "$DATA/witness")
AUDIT_SIGNING_PUBLIC_KEY=$(python manage.py audit_public_key)
export WITNESS_API_TOKEN WITNESS_PUBLIC_KEY AUDIT_SIGNING_PUBLIC_KEY WITNESS_URL="http://127.0.0.1:$WITNESS_PORT"
export WITNESS_PORTAL_PUBLIC_KEY="$AUDIT_SIGNING_PUBLIC_KEY"

# The lab connector is registered (and its login checked) against a short-lived
# vcsim; honcho then starts the long-running one on the same port and with the
# same data folder, so it is the same vCenter (instance UUID) it was pinned to.
.cache/bin/twokey-vcsim -listen "127.0.0.1:$VCSIM_PORT" -data-dir "$DATA/vcsim" > "$DATA/vcsim-bootstrap.log" 2>&1 &
vcsim_pid=$!
trap 'kill $vcsim_pid 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do grep -q VCSIM_URL "$DATA/vcsim-bootstrap.log" && break; sleep 0.1; done
python manage.py bootstrap --demo
kill $vcsim_pid 2>/dev/null || true
wait $vcsim_pid 2>/dev/null || true
trap - EXIT INT TERM

cat >&2 <<MSG

  TwoKey is starting at http://127.0.0.1:$TWOKEY_PORT/  (API: /api/, schema: /api/schema/, admin: /admin/)
  Sign in with the demo users above; passwords are printed only when the users are
  first created. Forgot one? .venv/bin/python manage.py changepassword NAME
  Ctrl-C stops everything.

MSG
exec honcho -f Procfile start
