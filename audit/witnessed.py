"""Comparing a log with what the witness saw: the witness's newest cosigned
checkpoint says which entries existed and what the last of them hashed to;
the witness keeps every witnessed entry's hash, so a difference is named at
the first entry where it begins. Plain Python (no Django): the portal's
verifier reads the witness over HTTP with this client.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from audit.signing import cosigned_problem, differs_reason, truncated_reason


class WitnessUnavailable(Exception):
    """The witness could not be asked (down, unreachable, answered nonsense)."""


class WitnessDisowned(Exception):
    """What the witness answered is not signed by the witness the portal trusts."""


def first_difference(low: int, high: int, same: Callable[[int], bool]) -> int:
    """The first seq in [low, high] where `same` is False, knowing it is False
    at `high`. Along a hash chain, agreeing on entry k means agreeing on every
    entry before it (each hash covers the previous one), so a binary search
    finds where two chains part."""
    while low < high:
        middle = (low + high) // 2
        if same(middle):
            low = middle + 1
        else:
            high = middle
    return low


def compare_with_witness(
    *,
    last_seq: int,
    hash_at: Callable[[int], str | None],
    newest: dict[str, Any],
    witnessed_at: Callable[[int], tuple[str, str] | None],
    ends: str = "the database now ends",
) -> tuple[int, str] | None:
    """(first broken seq, reason) when a chain that verified on its own
    (entries 1..last_seq; `hash_at(seq)` reads one) is not what the witness
    saw, else None. `newest`: the witness's newest cosigned checkpoint;
    `witnessed_at(seq)`: (hash, time witnessed) of one witnessed entry."""
    top = min(newest["seq"], last_seq)
    if top >= 1:
        witnessed_top = newest["hash"] if top == newest["seq"] else (witnessed_at(top) or (None,))[0]
        if hash_at(top) != witnessed_top:

            def same(seq: int) -> bool:
                seen = witnessed_at(seq)
                return seen is not None and seen[0] == hash_at(seq)

            seq = first_difference(1, top, same)
            seen = witnessed_at(seq)
            return seq, differs_reason(seq=seq, witnessed_at=seen[1] if seen else newest["witnessed_at"])
    if last_seq < newest["seq"]:
        return last_seq + 1, truncated_reason(
            witnessed_seq=newest["seq"], witnessed_at=newest["witnessed_at"], last_seq=last_seq, ends=ends
        )
    return None


class WitnessClient:
    """The witness's HTTP interface (python -m audit.witness serves it),
    trusted only as far as its answers are signed with `witness_key`."""

    def __init__(self, url: str, *, witness_key: str, portal_key: str = "", timeout: float = 10):
        self.url = url.rstrip("/")
        self.witness_key = witness_key
        self.portal_key = portal_key
        self.timeout = timeout

    def _get(self, path: str) -> dict | None:
        if not self.url.startswith(("http://", "https://")):
            raise WitnessUnavailable(f"WITNESS_URL must be an http(s) URL, not {self.url!r}")
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=self.timeout) as response:  # noqa: S310  # nosec B310 - http(s) only, checked above
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise WitnessUnavailable(f"the witness answered {exc.code}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise WitnessUnavailable(f"the witness at {self.url} cannot be reached ({exc})") from exc

    def newest(self) -> dict[str, Any] | None:
        """The newest cosigned checkpoint, both signatures checked; None when
        the witness has witnessed nothing yet."""
        answer = self._get("/latest") or {}
        if answer.get("witness_public_key") != self.witness_key:
            raise WitnessDisowned("the witness answering is not the one WITNESS_PUBLIC_KEY names")
        checkpoint = answer.get("checkpoint")
        if checkpoint is None:
            return None
        portal_key = self.portal_key or answer.get("portal_public_key") or ""
        problem = cosigned_problem(checkpoint, portal_key=portal_key, witness_key=self.witness_key)
        if problem:
            raise WitnessDisowned(problem)
        return checkpoint

    def witnessed_at(self, seq: int) -> tuple[str, str] | None:
        """(hash, when it was witnessed) of entry #seq, or None."""
        answer = self._get(f"/entries/{int(seq)}")
        if not answer:
            return None
        return answer["hash"], answer["witnessed_at"]
