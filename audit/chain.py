"""The audit chain's encoding, in plain Python (no Django), so that the portal
and an auditor's offline check of an export compute the same bytes.

Each entry's hash is HMAC-SHA256, keyed with the portal's AUDIT_HMAC_KEY, over
the canonical JSON of its fields (every field but the hash itself, including
the previous entry's hash). The first entry's prev_hash is the empty string.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

GENESIS_HASH = ""

# The fields each hash covers, in the order exports list them.
HASHED_FIELDS = (
    "seq",
    "created_at",
    "actor_id",
    "actor_name",
    "action",
    "ticket_id",
    "object_type",
    "object_id",
    "source_ip",
    "details",
    "prev_hash",
)

_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
_string = json.encoder.encode_basestring  # what _encoder writes for a str
_SAMPLE = {"b": [1.5, None, True, "ü\n"], "a": {"y": 2, "x": 'q"uote'}}
try:
    # _encoder's own C encoder, built once instead of on every encode() call;
    # used only where it writes exactly what _encoder writes.
    _c_encode = json.encoder.c_make_encoder(None, str, _string, None, ":", ",", True, False, True)
    if "".join(_c_encode(_SAMPLE, 0)) != _encoder.encode(_SAMPLE):
        _c_encode = None
except (AttributeError, TypeError, ValueError):  # another Python: no C encoder, or another signature
    _c_encode = None


def _encode_details(details: dict) -> str:
    if _c_encode is None:
        return _encoder.encode(details)
    return "".join(_c_encode(details, 0))


def canonical(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: one byte string per value."""
    return _encoder.encode(value).encode()


def canonical_entry(
    seq: int,
    created_at: str,
    actor_id: int | None,
    actor_name: str,
    action: str,
    ticket_id: int | None,
    object_type: str,
    object_id: str,
    source_ip: str | None,
    details: dict,
    prev_hash: str,
) -> bytes:
    """canonical(hashed_fields(...)) written out directly, keys in sorted
    order: the same bytes several times faster, for verifying millions of
    entries. Arguments in HASHED_FIELDS order, of the types shown."""
    return (
        f'{{"action":{_string(action)},'
        f'"actor_id":{"null" if actor_id is None else int.__repr__(actor_id)},'
        f'"actor_name":{_string(actor_name)},"created_at":{_string(created_at)},'
        f'"details":{_encode_details(details)},"object_id":{_string(object_id)},'
        f'"object_type":{_string(object_type)},"prev_hash":{_string(prev_hash)},"seq":{int.__repr__(seq)},'
        f'"source_ip":{"null" if source_ip is None else _string(source_ip)},'
        f'"ticket_id":{"null" if ticket_id is None else int.__repr__(ticket_id)}}}'
    ).encode()


def hashed_fields(
    *,
    seq: int,
    created_at: str,
    actor_id: int | None,
    actor_name: str,
    action: str,
    ticket_id: int | None,
    object_type: str,
    object_id: str,
    source_ip: str | None,
    details: dict,
    prev_hash: str,
) -> dict[str, Any]:
    """What the hash covers; `created_at` as ISO 8601 text."""
    return {
        "seq": seq,
        "created_at": created_at,
        "actor_id": actor_id,
        "actor_name": actor_name,
        "action": action,
        "ticket_id": ticket_id,
        "object_type": object_type,
        "object_id": object_id,
        "source_ip": source_ip,
        "details": details,
        "prev_hash": prev_hash,
    }


class Signer:
    """HMAC-SHA256 with one key, set up once (verification hashes millions)."""

    def __init__(self, key: str | bytes):
        if isinstance(key, str):
            key = key.encode()
        if not key:
            raise ValueError("the audit HMAC key is empty")
        self._base = hmac.new(key, digestmod=hashlib.sha256)

    def digest(self, fields: dict[str, Any]) -> str:
        return self.digest_message(canonical(fields))

    def digest_message(self, message: bytes) -> str:
        mac = self._base.copy()
        mac.update(message)
        return mac.hexdigest()


class ChainWalker:
    """Takes entries in seq order and says why the first bad one is bad.

    `from_genesis`: the entries start the log (seq 1, empty prev_hash);
    otherwise the first entry is taken as the anchor. `allow_gaps`: the
    entries are a filtered subset, so links are checked only between
    neighbours. Without a signer only links and sequence are checked."""

    def __init__(self, signer: Signer | None = None, *, from_genesis: bool = True, allow_gaps: bool = False):
        self.signer = signer
        self.allow_gaps = allow_gaps
        self.checked = 0
        self.links = 0
        self.gaps = 0
        self.last_seq: int | None = 0 if from_genesis else None
        self.last_hash = GENESIS_HASH

    def step(self, seq: int, prev_hash: str, digest: str, message: bytes | None = None) -> str | None:
        """None when the entry is sound, else the reason it is not.
        `message`: the entry's canonical encoding, needed with a signer."""
        self.checked += 1
        if self.last_seq is None:
            if seq == 1 and prev_hash != GENESIS_HASH:
                return "broken link: the first entry must have an empty prev_hash"
        elif seq <= self.last_seq:
            return f"out of order: #{seq} follows #{self.last_seq}"
        elif seq != self.last_seq + 1:
            if not self.allow_gaps:
                return f"sequence jumps from #{self.last_seq} to #{seq}: entries are missing"
            self.gaps += 1
        elif prev_hash != self.last_hash:
            return f"broken link: prev_hash is not the hash of entry #{seq - 1}"
        else:
            self.links += 1
        if self.signer is not None and self.signer.digest_message(message) != digest:
            return "hash mismatch: the entry was changed or not written by the portal"
        self.last_seq, self.last_hash = seq, digest
        return None


# CSV cells starting like a formula are prefixed with an apostrophe so a
# spreadsheet shows them as text; cells already starting with one get a second
# one, so the escape is exactly reversible and exported hashes still verify.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def csv_escape(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_unescape(text: str) -> str:
    return text[1:] if text.startswith("'") else text
