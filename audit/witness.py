"""The witness: a process of its own, with its own Ed25519 key and its own
store (a SQLite file in its own data folder, never the portal's database),
that watches the portal's audit chain from the outside.

    python -m audit.witness run [--portal URL] [--data-dir DIR] [--listen HOST:PORT] [--interval SECONDS]
    python -m audit.witness public-key [--data-dir DIR]
    python -m audit.witness export [--data-dir DIR] [--output FILE]

`run` polls the portal's API as an auditor (the token in WITNESS_API_TOKEN):
each new signed checkpoint (GET /api/audit/checkpoints/) and the links of the
entries since the last one it witnessed (GET /api/audit/links/: seq,
prev_hash and hash; without the HMAC key nothing more could be checked). It
checks the portal's signature with the key it pinned on first contact (or
WITNESS_PORTAL_PUBLIC_KEY), that the entries follow on, one by one, from what
it witnessed before and lead to the checkpoint's hash, then countersigns and
keeps the checkpoint and every entry's hash. Anything else — the portal no
longer holding a witnessed entry, a checkpoint off the witnessed chain, a
signature that does not verify — is a fork: refused, logged at CRITICAL
and kept as evidence.

It serves what it witnessed, read-only, on --listen (loopback by default):
GET /latest (the newest cosigned checkpoint and both public keys),
/entries/<seq>, /checkpoints?after=N, /forks and /export (the file that
`python -m audit.verify_export --witness` checks with the public keys alone).

Plain Python: the standard library, `cryptography` and this package's chain
encoding; no Django, no access to the portal's database.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from audit import signing
from audit.chain import GENESIS_HASH, ChainWalker

log = logging.getLogger("twokey.witness")

EXPORT_FORMAT = "twokey-witness-export/1"
LINKS_PAGE = 5000
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (seq INTEGER PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, signed_at TEXT NOT NULL, signature TEXT NOT NULL,
    witnessed_at TEXT NOT NULL, cosignature TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS forks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, detected_at TEXT NOT NULL, reason TEXT NOT NULL, evidence TEXT NOT NULL
);
"""
CHECKPOINT_COLUMNS = ("seq", "hash", "signed_at", "signature", "witnessed_at", "cosignature")
NEWEST_CHECKPOINT = (
    "SELECT seq, hash, signed_at, signature, witnessed_at, cosignature FROM checkpoints ORDER BY seq DESC LIMIT 1"
)
CHECKPOINTS_AFTER = (
    "SELECT seq, hash, signed_at, signature, witnessed_at, cosignature FROM checkpoints "
    "WHERE seq > ? ORDER BY seq LIMIT ?"
)
ALL_CHECKPOINTS = "SELECT seq, hash, signed_at, signature, witnessed_at, cosignature FROM checkpoints ORDER BY seq"


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


# --------------------------------------------------------------------------
# The witness's own key and store


def witness_key(data_dir: Path) -> str:
    """WITNESS_KEY, else the key file in the witness's data folder, made
    (mode 0600) on first use. Never the portal's."""
    value = os.environ.get("WITNESS_KEY", "").strip()
    if value:
        return value
    path = data_dir / "witness_key.key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = signing.generate_private_key()
    try:  # O_EXCL: two witnesses starting at once must not write two keys
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


class Store:
    """The witness's SQLite file: every witnessed entry's hash, the cosigned
    checkpoints, the pinned portal key and the evidence of forks."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def meta(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_meta(self, name: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))

    def newest(self) -> dict[str, Any] | None:
        row = self.db.execute(NEWEST_CHECKPOINT).fetchone()
        return dict(zip(CHECKPOINT_COLUMNS, row, strict=True)) if row else None

    def checkpoints(self, after: int, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self.db.execute(CHECKPOINTS_AFTER, (after, limit)).fetchall()
        return [dict(zip(CHECKPOINT_COLUMNS, row, strict=True)) for row in rows]

    def witnessed_at(self, seq: int) -> dict[str, Any] | None:
        """Entry #seq's hash and when the checkpoint that first covered it was witnessed."""
        row = self.db.execute("SELECT hash FROM entries WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            return None
        covering = self.db.execute(
            "SELECT witnessed_at FROM checkpoints WHERE seq >= ? ORDER BY seq LIMIT 1", (seq,)
        ).fetchone()
        if covering is None:
            return None
        return {"seq": seq, "hash": row[0], "witnessed_at": covering[0]}

    def forks(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT id, detected_at, reason, evidence FROM forks ORDER BY id").fetchall()
        return [{"id": i, "detected_at": at, "reason": r, "evidence": json.loads(e)} for i, at, r, e in rows]

    def record_fork(self, reason: str, evidence: dict[str, Any]) -> bool:
        """Keep the evidence; False when the last fork recorded says the same."""
        last = self.db.execute("SELECT reason FROM forks ORDER BY id DESC LIMIT 1").fetchone()
        if last and last[0] == reason:
            return False
        self.db.execute(
            "INSERT INTO forks (detected_at, reason, evidence) VALUES (?, ?, ?)",
            (now_iso(), reason, json.dumps(evidence, sort_keys=True)),
        )
        return True

    def export_lines(self, *, portal_key: str, witness_public_key: str) -> Iterator[str]:
        """The witness file: a header line with both public keys, then every
        witnessed entry as {"seq", "hash"} in seq order, each cosigned
        checkpoint as {"checkpoint": {...}} right after the entry it covers."""
        yield (
            json.dumps(
                {
                    "format": EXPORT_FORMAT,
                    "portal_public_key": portal_key,
                    "witness_public_key": witness_public_key,
                    "exported_at": now_iso(),
                }
            )
            + "\n"
        )
        # One read transaction: entries and checkpoints from the same state.
        self.db.execute("BEGIN")
        try:
            checkpoints = self.db.execute(ALL_CHECKPOINTS)
            newest = self.newest()
            last = newest["seq"] if newest else 0
            pending = next(checkpoints, None)
            entries = self.db.execute("SELECT seq, hash FROM entries WHERE seq <= ? ORDER BY seq", (last,))
            while rows := entries.fetchmany(5000):
                lines = []
                for seq, digest in rows:
                    lines.append(f'{{"seq":{seq},"hash":"{digest}"}}\n')
                    while pending is not None and pending[0] == seq:
                        checkpoint = dict(zip(CHECKPOINT_COLUMNS, pending, strict=True))
                        lines.append(json.dumps({"checkpoint": checkpoint}, sort_keys=True) + "\n")
                        pending = next(checkpoints, None)
                yield "".join(lines)
        finally:
            self.db.execute("COMMIT")


# --------------------------------------------------------------------------
# Talking to the portal


class PortalError(Exception):
    """The portal could not be asked; try again at the next poll."""


class Portal:
    """The portal's audit API, read as an auditor with a token."""

    def __init__(self, url: str, token: str, timeout: float = 60):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the portal URL must be http(s), not {url!r}")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _get(self, path: str, **params) -> Any:
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
            f"{self.url}{path}?{urllib.parse.urlencode(params)}",
            headers={"Authorization": f"Token {self.token}", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310  # nosec B310 - http(s) only, checked in __init__
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise PortalError(f"{path} answered {exc.code}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise PortalError(f"{path}: {exc}") from exc

    def checkpoints(self, after: int) -> list[dict[str, Any]]:
        return self._get("/api/audit/checkpoints/", after=after)["checkpoints"]

    def links(self, after: int, upto: int, limit: int = LINKS_PAGE) -> list[list]:
        return self._get("/api/audit/links/", after=after, upto=upto, limit=limit)["links"]


# --------------------------------------------------------------------------
# Witnessing


class Witness:
    def __init__(self, store: Store, portal: Portal, key: str, *, portal_key: str = ""):
        self.store = store
        self.portal = portal
        self.key = signing.private_key(key)
        self.public_key = signing.public_key_text(self.key)
        pinned = store.meta("portal_public_key")
        if portal_key and pinned and portal_key != pinned:
            raise ValueError("WITNESS_PORTAL_PUBLIC_KEY differs from the portal key this witness pinned earlier")
        if portal_key and not pinned:
            store.set_meta("portal_public_key", portal_key)

    @property
    def portal_key(self) -> str:
        return self.store.meta("portal_public_key") or ""

    def fork(self, reason: str, evidence: dict[str, Any]) -> None:
        if self.store.record_fork(reason, evidence):
            log.critical("FORK: %s; refused, evidence kept in the witness's store (GET /forks)", reason)
        else:
            log.error("still forked: %s", reason)

    def poll(self) -> int:
        """Witness whatever the portal checkpointed since the last poll; the
        number of checkpoints cosigned. Forks are refused and recorded."""
        cosigned = 0
        while True:
            done = self._round()
            cosigned += done
            if done == 0:
                return cosigned

    def _round(self) -> int:
        newest = self.store.newest()
        last_seq, last_hash = (newest["seq"], newest["hash"]) if newest else (0, GENESIS_HASH)
        if last_seq:
            # The portal must still hold the newest witnessed entry, unchanged.
            rows = self.portal.links(after=last_seq - 1, upto=last_seq, limit=1)
            if not rows or rows[0][0] != last_seq or rows[0][2] != last_hash:
                self.fork(
                    f"the portal no longer holds entry #{last_seq} as witnessed at {newest['witnessed_at']}",
                    {"witnessed": newest, "portal_now": rows[:1]},
                )
                return 0
        checkpoints = [c for c in self.portal.checkpoints(after=last_seq) if c.get("seq", 0) > last_seq]
        if not checkpoints:
            return 0
        for checkpoint in checkpoints:
            problem = self._signature_problem(checkpoint)
            if problem:
                self.fork(problem, {"checkpoint": checkpoint})
                return 0
        return self._follow(last_seq, last_hash, checkpoints)

    def _signature_problem(self, checkpoint: dict[str, Any]) -> str | None:
        key = checkpoint.get("public_key") or ""
        if not self.portal_key:
            self.store.set_meta("portal_public_key", key)  # first contact: pin it
            log.info("pinned the portal's checkpoint key %s", key)
        if key != self.portal_key:
            return f"checkpoint #{checkpoint.get('seq')} is signed with another key than the pinned one"
        message = signing.checkpoint_message(
            seq=checkpoint["seq"], hash=checkpoint["hash"], signed_at=checkpoint["signed_at"]
        )
        if not signing.signature_holds(key, message, checkpoint.get("signature", "")):
            return f"checkpoint #{checkpoint['seq']}: the portal's signature does not verify"
        return None

    def _follow(self, last_seq: int, last_hash: str, checkpoints: list[dict[str, Any]]) -> int:
        """Walk the links from the witnessed head to the newest checkpoint,
        cosigning each checkpoint on the way; one SQLite transaction per
        checkpoint, so what is stored is always covered by a cosignature."""
        walker = ChainWalker(None)
        walker.last_seq, walker.last_hash = last_seq, last_hash
        target = checkpoints[-1]["seq"]
        pending = iter(checkpoints)
        checkpoint = next(pending)
        cosigned = 0
        db = self.store.db
        db.execute("BEGIN IMMEDIATE")
        try:
            after = last_seq
            while after < target:
                rows = self.portal.links(after=after, upto=target)
                if not rows:
                    raise _Fork(
                        f"the portal's entries end at #{after}, short of its own checkpoint #{target}",
                        {"checkpoint": checkpoints[-1]},
                    )
                for seq, prev_hash, digest in rows:
                    reason = walker.step(seq, prev_hash, digest)
                    if reason:
                        raise _Fork(
                            f"entry #{seq} does not extend the witnessed chain: {reason}",
                            {"entry": [seq, prev_hash, digest], "witnessed_head": [walker.last_seq, walker.last_hash]},
                        )
                    db.execute("INSERT INTO entries (seq, hash) VALUES (?, ?)", (seq, digest))
                    while checkpoint is not None and checkpoint["seq"] == seq:
                        if checkpoint["hash"] != digest:
                            raise _Fork(
                                f"checkpoint #{seq} signs a hash the entries do not lead to",
                                {"checkpoint": checkpoint, "entry": [seq, prev_hash, digest]},
                            )
                        self._cosign(checkpoint)
                        cosigned += 1
                        db.execute("COMMIT")
                        db.execute("BEGIN IMMEDIATE")
                        checkpoint = next(pending, None)
                    after = seq
            db.execute("COMMIT")
        except _Fork as fork:
            db.execute("ROLLBACK")
            self.fork(fork.reason, fork.evidence)
            return 0
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if cosigned:
            log.info("witnessed up to #%s", target)
        return cosigned

    def _cosign(self, checkpoint: dict[str, Any]) -> None:
        witnessed_at = now_iso()
        fields = {k: checkpoint[k] for k in ("seq", "hash", "signed_at", "signature")}
        cosignature = signing.sign(self.key, signing.cosignature_message(**fields, witnessed_at=witnessed_at))
        self.store.db.execute(
            "INSERT INTO checkpoints (seq, hash, signed_at, signature, witnessed_at, cosignature) VALUES (?, ?, ?, ?, ?, ?)",
            (*fields.values(), witnessed_at, cosignature),
        )


class _Fork(Exception):
    def __init__(self, reason: str, evidence: dict[str, Any]):
        super().__init__(reason)
        self.reason, self.evidence = reason, evidence


# --------------------------------------------------------------------------
# Serving what was witnessed

_ENTRY_PATH = re.compile(r"/entries/(\d{1,19})")


def make_server(store_path: Path, public_key: str, host: str, port: int) -> ThreadingHTTPServer:
    """A read-only HTTP server over the store (each request its own SQLite
    connection, so reads never wait for the poller)."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "twokey-witness"

        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            log.debug("%s %s", self.address_string(), format % args)

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 - the base class's name
            url = urllib.parse.urlsplit(self.path)
            store = Store(store_path)
            try:
                portal_key = store.meta("portal_public_key") or ""
                if url.path == "/latest":
                    self._json(
                        200,
                        {
                            "witness_public_key": public_key,
                            "portal_public_key": portal_key,
                            "checkpoint": store.newest(),
                            "forks": len(store.forks()),
                        },
                    )
                elif match := _ENTRY_PATH.fullmatch(url.path):
                    entry = store.witnessed_at(int(match.group(1)))
                    self._json(200 if entry else 404, entry or {"detail": "not witnessed"})
                elif url.path == "/checkpoints":
                    query = urllib.parse.parse_qs(url.query)
                    after = int(query.get("after", ["0"])[0]) if query.get("after", ["0"])[0].isdigit() else 0
                    self._json(200, {"witness_public_key": public_key, "checkpoints": store.checkpoints(after)})
                elif url.path == "/forks":
                    self._json(200, {"forks": store.forks()})
                elif url.path == "/export":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-ndjson")
                    self.send_header("Content-Disposition", 'attachment; filename="witnessed.jsonl"')
                    self.end_headers()  # HTTP/1.0: the body ends when the connection closes
                    for chunk in store.export_lines(portal_key=portal_key, witness_public_key=public_key):
                        self.wfile.write(chunk.encode())
                else:
                    self._json(404, {"detail": "not found"})
            finally:
                store.db.close()

    return ThreadingHTTPServer((host, port), Handler)


# --------------------------------------------------------------------------
# The command line


def _data_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("WITNESS_DATA_DIR") or Path.cwd() / "var" / "witness")


def run(args) -> int:
    data_dir = _data_dir(args.data_dir)
    token = os.environ.get("WITNESS_API_TOKEN", "").strip()
    portal_url = args.portal or os.environ.get("WITNESS_PORTAL_URL", "").strip()
    if not token or not portal_url:
        print("set WITNESS_API_TOKEN (manage.py apitoken <auditor>) and the portal's URL", file=sys.stderr)
        return 2
    key = witness_key(data_dir)
    store_path = data_dir / "witness.sqlite3"
    witness = Witness(
        Store(store_path),
        Portal(portal_url, token),
        key,
        portal_key=os.environ.get("WITNESS_PORTAL_PUBLIC_KEY", "").strip(),
    )
    host, _, port = (args.listen or os.environ.get("WITNESS_LISTEN") or "127.0.0.1:8010").rpartition(":")
    server = make_server(store_path, witness.public_key, host or "127.0.0.1", int(port))
    threading.Thread(target=server.serve_forever, name="witness-http", daemon=True).start()
    interval = float(args.interval or os.environ.get("WITNESS_INTERVAL_SECONDS") or 15)
    log.info(
        "witness %s serving on %s:%s, watching %s every %ss",
        witness.public_key,
        *server.server_address[:2],
        portal_url,
        interval,
    )
    while True:
        try:
            witness.poll()
        except PortalError as exc:
            log.warning("the portal could not be asked: %s", exc)
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit.witness", description="Witness TwoKey's audit chain.")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="watch the portal and serve what was witnessed")
    run_parser.add_argument("--portal", help="the portal's URL (WITNESS_PORTAL_URL)")
    run_parser.add_argument("--listen", help="HOST:PORT to serve on (WITNESS_LISTEN, 127.0.0.1:8010)")
    run_parser.add_argument("--interval", type=float, help="seconds between polls (WITNESS_INTERVAL_SECONDS, 15)")
    key_parser = commands.add_parser("public-key", help="print the witness's public key (made on first use)")
    export_parser = commands.add_parser("export", help="write the witness file for offline verification")
    export_parser.add_argument("--output", type=Path, help="the file (default: standard output)")
    for sub in (run_parser, key_parser, export_parser):
        sub.add_argument("--data-dir", help="the witness's own folder (WITNESS_DATA_DIR, ./var/witness)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if args.command == "run":
        return run(args)
    data_dir = _data_dir(args.data_dir)
    public = signing.public_key_text(witness_key(data_dir))
    if args.command == "public-key":
        print(public)
        return 0
    store = Store(data_dir / "witness.sqlite3")
    lines = store.export_lines(portal_key=store.meta("portal_public_key") or "", witness_public_key=public)
    if args.output:
        with args.output.open("w") as handle:
            handle.writelines(lines)
    else:
        sys.stdout.writelines(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
