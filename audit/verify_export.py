"""Verify an audit export (CSV or JSON from /api/audit/export/) offline, with
nothing but Python's standard library and this package's chain encoding.

    python -m audit.verify_export audit.csv [--key-file KEYFILE] [--subset]

With the portal's HMAC key (--key-file, or the AUDIT_HMAC_KEY environment
variable) every entry's hash is recomputed: an entry changed, forged or
re-ordered fails. Without the key only the links between neighbouring entries
and the sequence are checked, which catches deletions and re-ordering but not
a careful forger. --subset accepts gaps in the sequence (an export filtered by
actor, ticket, ...); links are then checked only between neighbours.

Exit status: 0 verified, 1 broken, 2 the file or key could not be read.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from audit.chain import HASHED_FIELDS, ChainWalker, Signer, canonical_entry, csv_unescape

_INT_COLUMNS = ("seq", "actor_id", "ticket_id")


class ExportError(Exception):
    """The export cannot be read."""


_TYPES = {
    "seq": (int,),
    "actor_id": (int, type(None)),
    "ticket_id": (int, type(None)),
    "source_ip": (str, type(None)),
    "details": (dict,),
}


def _entry(raw: dict) -> tuple[tuple, str]:
    """(hashed values in HASHED_FIELDS order, hash) of one exported entry."""
    try:
        values = tuple(raw[name] for name in HASHED_FIELDS)
        digest = raw["hash"]
    except (KeyError, TypeError) as exc:
        raise ExportError(f"an entry lacks the field {exc}") from exc
    for name, value in zip(HASHED_FIELDS, values, strict=True):
        if not isinstance(value, _TYPES.get(name, (str,))) or isinstance(value, bool):
            raise ExportError(f"entry {raw.get('seq')}: {name} has a bad value")
    if not isinstance(digest, str):
        raise ExportError(f"entry {raw.get('seq')}: hash has a bad value")
    return values, digest


def read_csv(lines) -> Iterator[tuple[dict, str]]:
    for row in csv.DictReader(lines):
        raw = {key: csv_unescape(value) for key, value in row.items() if key is not None}
        try:
            for column in _INT_COLUMNS:
                raw[column] = int(raw[column]) if raw.get(column) else None
        except ValueError as exc:
            raise ExportError(f"entry {raw.get('seq')}: {exc}") from exc
        raw["source_ip"] = raw.get("source_ip") or None
        try:
            raw["details"] = json.loads(raw.get("details") or "{}")
        except json.JSONDecodeError as exc:
            raise ExportError(f"entry {raw.get('seq')}: details are not JSON") from exc
        yield _entry(raw)


def read_json(handle) -> Iterator[tuple[dict, str]]:
    """Line by line when the file has the export's layout (one entry per
    line), so memory stays flat; otherwise the whole document."""
    first = handle.readline()
    if first.strip() != "[":
        handle.seek(0)
        yield from (_entry(raw) for raw in json.load(handle))
        return
    for line in handle:
        line = line.strip().rstrip(",")
        if line in ("", "]"):
            continue
        yield _entry(json.loads(line))


def verify_file(path: Path, *, key: str | None, subset: bool) -> tuple[bool, str]:
    """(verified, what was found)."""
    walker = ChainWalker(Signer(key) if key else None, from_genesis=False, allow_gaps=subset)
    with path.open(newline="", encoding="utf-8") as handle:
        head = handle.read(1)
        handle.seek(0)
        entries = read_json(handle) if head == "[" or path.suffix.lower() == ".json" else read_csv(handle)
        first = None
        for values, digest in entries:
            seq, prev_hash = values[0], values[-1]
            first = seq if first is None else first
            reason = walker.step(seq, prev_hash, digest, canonical_entry(*values) if key else None)
            if reason:
                return False, f"BROKEN at entry #{seq}: {reason}"
    checks = "hashes recomputed with the key" if key else "no key: hashes NOT checked, only links and sequence"
    gaps = f", {walker.gaps} gaps (filtered export)" if walker.gaps else ""
    span = f"#{first} to #{walker.last_seq}" if walker.checked else "none"
    return True, f"OK: {walker.checked} entries ({span}), {walker.links} links checked{gaps}; {checks}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify an exported audit log offline.")
    parser.add_argument("file", type=Path)
    parser.add_argument("--key-file", type=Path, help="file holding the portal's AUDIT_HMAC_KEY")
    parser.add_argument("--subset", action="store_true", help="the export was filtered: allow gaps in seq")
    args = parser.parse_args(argv)
    try:
        key = args.key_file.read_text().strip() if args.key_file else os.environ.get("AUDIT_HMAC_KEY", "").strip()
        verified, message = verify_file(args.file, key=key or None, subset=args.subset)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error, ExportError) as exc:
        print(f"cannot verify {args.file}: {exc}", file=sys.stderr)
        return 2
    print(message)
    return 0 if verified else 1


if __name__ == "__main__":
    sys.exit(main())
