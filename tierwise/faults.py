"""Request faults vs tier faults: who is to blame for a failed attempt, decided once.

A failed call to a tier is either the caller's doing (a *request fault*) or the tier's (a
*tier fault*). Only tier faults may move shared routing signals (the health breaker, the
latency EMA, probe counters); a request fault goes back to its caller as one clear 4xx,
with no fallback walk to a dearer tier and no signal that would change what other callers
get. Every adapter classifies at the place the failure is seen, with `classify()`, and
passes the verdict on; nothing downstream re-guesses from error text.

The rule, in order:

1. The stream died after the upstream started answering        -> tier fault.
2. The request never left for the upstream (the host rejected it
   while validating, or tierwise itself refused it)              -> request fault.
3. It left but no status came back (refused connection, reset,
   timeout)                                                      -> tier fault.
4. The upstream answered 408, 429 or 5xx                         -> tier fault.
5. The upstream answered 401 or 403: the tier's own credentials
   (the host has already authenticated the caller)               -> tier fault.
6. Any other 4xx (400, 404, 405, 413, 415, 422, ...): the upstream
   read the request and refused it, or lacks the endpoint asked for -> request fault.

And one caller cannot open a breaker alone: `HealthTracker` counts a tier's consecutive
tier faults per caller as well as overall, and opens the breaker for everyone only when the
run of faults came from at least two callers. A run from a single caller opens that caller's
own breaker only (a single-user deployment still sees its tier skipped while it is down).
Callers are `Scope.key()`; an unattributed failure (no caller) counts as before, for SDK users
with one application.
"""

from __future__ import annotations

from enum import StrEnum

from tierwise.request import Scope

__all__ = ["Fault", "caller_of", "classify", "client_status"]

# Statuses that mean the tier is unwell, whatever the request was.
TIER_STATUSES = frozenset({401, 403, 408, 429})


class Fault(StrEnum):
    """Whose fault a failed attempt was; only TIER moves shared signals."""

    REQUEST = "request"
    TIER = "tier"


def classify(status: int | None, *, sent: bool, mid_stream: bool = False) -> Fault:
    """Classify one failed attempt by the rule in this module's docstring.

    `status`: the HTTP status the upstream answered, None when none came back.
    `sent`: whether the request left for the upstream (connection attempted).
    `mid_stream`: whether the upstream had started streaming the answer.
    """
    if mid_stream:
        return Fault.TIER
    if not sent:
        return Fault.REQUEST
    if status is None or status >= 500 or status in TIER_STATUSES:
        return Fault.TIER
    return Fault.REQUEST if 400 <= status < 500 else Fault.TIER


def client_status(status: int | None) -> int:
    """The status a caller gets for a request fault: the upstream's 4xx, else 400."""
    if status is not None and 400 <= status < 500 and status not in TIER_STATUSES:
        return status
    return 400


def caller_of(scope: Scope | None) -> str | None:
    """The caller id the health breaker counts by: the scope's key, None when anonymous."""
    if scope is None or scope.anonymous:
        return None
    return scope.key()
