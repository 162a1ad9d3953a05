"""Which request gets which injected fault: a deterministic draw from the seed, the request body
and how many times that body was seen, so a run is reproducible whatever the arrival order."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:  # pragma: no cover
    from .state import ServerState

DEFAULT_FAULTS = ("429", "500", "503", "reset", "timeout", "malformed", "truncated")
FAULT_KINDS = frozenset(DEFAULT_FAULTS)


class FakeFault(Exception):
    """A fault the responder asks for, for one request: ``FakeFault("500")``, ``FakeFault("400",
    "bad request")``, ``FakeFault("429", retry_after=1)``, ``FakeFault("reset")`` ... Return it or
    raise it. Any 3-digit status is sent as an error with that status."""

    def __init__(self, kind: str = "500", message: str = "", retry_after: float | None = None):
        self.kind = str(kind)
        self.message = message or f"injected fault {self.kind}"
        self.retry_after = retry_after
        super().__init__(self.message)



def check_faults(faults: Iterable[str] | str) -> tuple:
    """``faults`` (a list or comma-separated text) as a tuple of known kinds; ``ValueError`` names
    the unknown ones."""
    if isinstance(faults, str):
        faults = [f for f in faults.split(",") if f.strip()]
    faults = tuple(str(f).strip() for f in faults)
    bad = [f for f in faults if f not in FAULT_KINDS]
    if bad:
        raise ValueError(f"unknown fault kinds {bad}; choose from {sorted(FAULT_KINDS)}")
    return faults


def pick_fault(st: "ServerState", raw: bytes) -> FakeFault | None:
    """The fault to inject into the request with body ``raw``, or None; counts the body as seen."""
    if st.fault_rate <= 0 or not st.faults:
        return None
    body_key = hashlib.blake2b(raw, digest_size=16).digest()
    nth = st.seen.get(body_key, 0)
    st.seen[body_key] = nth + 1
    if st.max_faults_per_request is not None and st.faults_per_body.get(body_key, 0) >= st.max_faults_per_request:
        return None
    h = hashlib.blake2b(raw, digest_size=16, key=f"{st.seed}:{nth}".encode()[:64]).digest()
    draw = int.from_bytes(h[:8], "big") / 2**64
    if draw >= st.fault_rate:
        return None
    st.faults_per_body[body_key] = st.faults_per_body.get(body_key, 0) + 1
    return FakeFault(st.faults[int.from_bytes(h[8:], "big") % len(st.faults)])

