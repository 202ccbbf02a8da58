"""Verify an audit export (CSV or JSON from /api/audit/export/) offline, with
nothing but Python's standard library and this package's chain encoding.

    python -m audit.verify_export audit.csv [--key-file KEYFILE] [--subset]
        [--witness WITNESSED.jsonl [--witness-public-key KEY] [--portal-public-key KEY]]

With the portal's HMAC key (--key-file, or the AUDIT_HMAC_KEY environment
variable) every entry's hash is recomputed: an entry changed, forged or
re-ordered fails. Without the key only the links between neighbouring entries
and the sequence are checked, which catches deletions and re-ordering but not
a careful forger. --subset accepts gaps in the sequence (an export filtered by
actor, ticket, ...); links are then checked only between neighbours.

--witness takes the witness's file (python -m audit.witness export, or GET
/export of the witness): every checkpoint in it must carry the portal's and
the witness's Ed25519 signatures, checked with the public keys alone (given
with --witness-public-key / --portal-public-key, else those the file names,
printed so they can be compared with the known ones). The export must then
hold every witnessed entry unchanged: a rewritten entry, a fork or an older
copy is named at the first entry that differs, entries the witness saw
beyond the export's end are reported as missing.

Approvals signed with passkeys are checked too, with `cryptography` and the
public keys the export itself carries (auth.passkey_registered entries):
each signature over the statement derived from the exported ticket's
content, objects and terms. The report says, per ticket that required
passkeys, how many approvals it required and how many are proved; a
signature that does not verify, or a ticket that went ahead with fewer
proved approvals than required, is BROKEN.

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
from audit.passkeys import ExportProofs
from audit.signing import cosigned_problem, differs_reason, short_time, truncated_reason

WITNESS_FORMAT = "twokey-witness-export/1"

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


class WitnessFile:
    """The witness's file, read line by line alongside the export: witnessed
    entries in seq order, each cosigned checkpoint after the entry it covers."""

    def __init__(self, handle, *, witness_key: str | None = None, portal_key: str | None = None):
        try:
            header = json.loads(handle.readline())
        except json.JSONDecodeError as exc:
            raise ExportError("the witness file does not start with its header") from exc
        if not isinstance(header, dict) or header.get("format") != WITNESS_FORMAT:
            raise ExportError(f"the witness file is not a {WITNESS_FORMAT} file")
        for name, given in (("witness_public_key", witness_key), ("portal_public_key", portal_key)):
            if given and header.get(name) != given:
                raise ExportError(f"the witness file's {name} is not the one given")
        self.witness_key = witness_key or header.get("witness_public_key") or ""
        self.portal_key = portal_key or header.get("portal_public_key") or ""
        self.lines = handle
        self.newest: dict | None = None
        self.checkpoints = 0
        self._last_entry: tuple[int, str] | None = None
        self._pending: tuple[int, str] | None = None

    def _checkpoint(self, checkpoint: dict) -> None:
        problem = cosigned_problem(checkpoint, portal_key=self.portal_key, witness_key=self.witness_key)
        if problem:
            raise ExportError(f"witness file: {problem}")
        if self._last_entry is None or self._last_entry != (checkpoint["seq"], checkpoint["hash"]):
            raise ExportError(f"witness file: checkpoint #{checkpoint['seq']} does not match its entry")
        if self.newest is not None and checkpoint["seq"] <= self.newest["seq"]:
            raise ExportError("witness file: checkpoints out of order")
        self.newest = checkpoint
        self.checkpoints += 1

    def _read(self) -> tuple[int, str] | None:
        """The next witnessed entry, taking in the checkpoints on the way."""
        for line in self.lines:
            item = json.loads(line)
            if "checkpoint" in item:
                self._checkpoint(item["checkpoint"])
                continue
            seq, digest = item.get("seq"), item.get("hash")
            if not isinstance(seq, int) or not isinstance(digest, str):
                raise ExportError("witness file: an entry line is malformed")
            if self._last_entry is not None and seq != self._last_entry[0] + 1:
                raise ExportError(f"witness file: entries jump from #{self._last_entry[0]} to #{seq}")
            self._last_entry = (seq, digest)
            return seq, digest
        return None

    def hash_at(self, seq: int) -> str | None:
        """The witnessed hash of entry #seq (called in rising seq order)."""
        while self._pending is None or self._pending[0] < seq:
            self._pending = self._read()
            if self._pending is None:
                return None
        return self._pending[1] if self._pending[0] == seq else None

    def witnessed_at(self, seq: int) -> str:
        """When the checkpoint covering entry #seq (just read) was witnessed."""
        while self.newest is None or self.newest["seq"] < seq:
            if self._read() is None and (self.newest is None or self.newest["seq"] < seq):
                raise ExportError(f"witness file: no checkpoint covers entry #{seq}")
        return self.newest["witnessed_at"]

    def finish(self) -> None:
        """Read (and check) the rest of the file, to its newest checkpoint."""
        while self._read() is not None:
            pass


def verify_file(path: Path, *, key: str | None, subset: bool, witness: WitnessFile | None = None) -> tuple[bool, str]:
    """(verified, what was found)."""
    walker = ChainWalker(Signer(key) if key else None, from_genesis=False, allow_gaps=subset)
    signed = ExportProofs()
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
            signed.take(seq=seq, actor_id=values[2], action=values[4], ticket_id=values[5], details=values[9])
            if witness is not None:
                seen = witness.hash_at(seq)
                if seen is not None and seen != digest:
                    return (
                        False,
                        f"BROKEN at entry #{seq}: {differs_reason(seq=seq, witnessed_at=witness.witnessed_at(seq))}",
                    )
    checks = "hashes recomputed with the key" if key else "no key: hashes NOT checked, only links and sequence"
    gaps = f", {walker.gaps} gaps (filtered export)" if walker.gaps else ""
    span = f"#{first} to #{walker.last_seq}" if walker.checked else "none"
    message = f"OK: {walker.checked} entries ({span}), {walker.links} links checked{gaps}; {checks}"
    passkey_report = "".join(f"\n  {line}" for line in signed.report())
    if passkey_report:
        message += "\npasskey approvals (signatures checked with the exported public keys):" + passkey_report
    broken = signed.broken()
    if broken:
        return False, "BROKEN: passkey approvals do not verify:" + "".join(f"\n  {b}" for b in broken) + passkey_report
    if witness is not None:
        witness.finish()
        newest = witness.newest
        last_seq = walker.last_seq or 0
        if newest is not None and newest["seq"] > last_seq:
            reason = truncated_reason(
                witnessed_seq=newest["seq"],
                witnessed_at=newest["witnessed_at"],
                last_seq=last_seq,
                ends="the export ends",
            )
            return False, f"BROKEN at entry #{last_seq + 1}: {reason}"
        keys = f"witness key {witness.witness_key}, portal key {witness.portal_key}"
        if newest is None:
            message += f"; the witness file holds no checkpoint ({keys})"
        else:
            message += (
                f"; holds every entry witnessed up to #{newest['seq']} at {short_time(newest['witnessed_at'])} "
                f"({witness.checkpoints} cosigned checkpoints checked with {keys})"
            )
    return True, message


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify an exported audit log offline.")
    parser.add_argument("file", type=Path)
    parser.add_argument("--key-file", type=Path, help="file holding the portal's AUDIT_HMAC_KEY")
    parser.add_argument("--subset", action="store_true", help="the export was filtered: allow gaps in seq")
    parser.add_argument("--witness", type=Path, help="the witness's file (python -m audit.witness export)")
    parser.add_argument("--witness-public-key", help="the witness's public key, to check the file's")
    parser.add_argument("--portal-public-key", help="the portal's checkpoint public key, to check the file's")
    args = parser.parse_args(argv)
    try:
        key = args.key_file.read_text().strip() if args.key_file else os.environ.get("AUDIT_HMAC_KEY", "").strip()
        if args.witness:
            with args.witness.open(encoding="utf-8") as handle:
                witness = WitnessFile(handle, witness_key=args.witness_public_key, portal_key=args.portal_public_key)
                verified, message = verify_file(args.file, key=key or None, subset=args.subset, witness=witness)
        else:
            verified, message = verify_file(args.file, key=key or None, subset=args.subset)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error, ExportError) as exc:
        print(f"cannot verify {args.file}: {exc}", file=sys.stderr)
        return 2
    print(message)
    return 0 if verified else 1


if __name__ == "__main__":
    sys.exit(main())
