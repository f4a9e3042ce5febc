"""One attempt at one deployment, read from LiteLLM's objects: was it sent, whose fault, how fast.

LiteLLM reuses one logging object for every attempt of a request, so "did this attempt leave
for the upstream" cannot be read from its own fields (they keep the last attempt's values).
tierwise clears its own marker when an attempt starts (`start()`, from the pre-call deployment
hook) and sets it when LiteLLM hands the request to the provider (`mark_sent()`, from
`log_pre_api_call`, which LiteLLM calls right before the HTTP request). A failure without the
marker happened while LiteLLM was still validating or transforming the request: a request
fault (tierwise/faults.py), whatever status LiteLLM gave it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tierwise.faults import Fault, classify, client_status

SENT_KEY = "tierwise_sent_at"  # epoch seconds, in the logging object's model_call_details
LAG_SENT_KEY = "tierwise_lag_at_sent"  # the proxy's loop lag total (ms) at the hand-off
LAG_FIRST_KEY = "tierwise_lag_at_first"  # ... and when the first chunk was read


@dataclass(frozen=True)
class Verdict:
    """What one failed attempt means: whose fault, the caller's status, a one-line error."""

    fault: Fault
    status: int  # what the caller gets for a request fault
    error: str


def _details(kwargs: Mapping[str, Any] | None) -> dict[str, Any] | None:
    logging_obj = (kwargs or {}).get("litellm_logging_obj")
    details = getattr(logging_obj, "model_call_details", None)
    return details if isinstance(details, dict) else None


def start(kwargs: Mapping[str, Any]) -> None:
    """A new attempt begins: forget that an earlier attempt was sent."""
    details = _details(kwargs)
    if details is not None:
        details.pop(SENT_KEY, None)


def mark_sent(details: dict[str, Any], lag_ms: float) -> None:
    """LiteLLM is handing this attempt to the provider now (`lag_ms`: loop_lag total)."""
    details[SENT_KEY] = time.time()
    details[LAG_SENT_KEY] = lag_ms
    details.pop(LAG_FIRST_KEY, None)


def mark_first(kwargs: Mapping[str, Any], lag_ms: float) -> None:
    """The stream's first chunk was read now."""
    details = _details(kwargs)
    if details is not None and LAG_FIRST_KEY not in details:
        details[LAG_FIRST_KEY] = lag_ms


def sent_at(kwargs: Mapping[str, Any] | None) -> float | None:
    """When the current attempt left for the upstream (epoch seconds), None if it did not."""
    details = _details(kwargs)
    value = (details or {}).get(SENT_KEY)
    return value if isinstance(value, float) else None


def spare_from_cooldown(request_data: Mapping[str, Any]) -> None:
    """Keep LiteLLM's own cooldown off a deployment for a request fault.

    LiteLLM cools a deployment down after a 404 (and after many 5xx) whatever caused it; its
    failure callback, which runs after the deployment failure hook, reads `cooldown_time`
    from the attempt's litellm_params, and 0 means no cooldown.
    """
    details = _details(request_data)
    params = (details or {}).get("litellm_params")
    if isinstance(params, dict):
        params["cooldown_time"] = 0


def judge(request_data: Mapping[str, Any], exception: BaseException) -> Verdict:
    """Classify a failed attempt at the source (see tierwise/faults.py for the rule)."""
    status = _status(exception)
    sent = sent_at(request_data) is not None
    fault = classify(status if sent else None, sent=sent)
    return Verdict(fault, client_status(status if sent else None), _message(exception))


def judge_mid_stream(exception: BaseException) -> Verdict:
    """A stream that broke off after the upstream started answering: always a tier fault."""
    status = _status(exception)
    fault = classify(status, sent=True, mid_stream=True)
    return Verdict(fault, client_status(status), _message(exception))


def _status(exception: BaseException) -> int | None:
    status = getattr(exception, "status_code", None)
    return status if isinstance(status, int) else None


def _message(exception: BaseException) -> str:
    return str(getattr(exception, "message", "") or exception)


def ttft_ms(
    kwargs: Mapping[str, Any], start_time: Any, end_time: Any, lag_ms: float
) -> float | None:
    """Time to first token of the attempt that answered, as the tier took it.

    The proxy's own queueing is not the tier's latency: the clock starts at the hand-off to
    the provider (`mark_sent`, else LiteLLM's `api_call_start_time`, else the request's start),
    and the event-loop lag that accrued meanwhile (litellm_plugin/loop_lag.py; `lag_ms` is
    its total now) is taken off. For a stream the first token is LiteLLM's
    `completion_start_time`; for a plain call the whole answer.
    """
    began: Any = kwargs.get(SENT_KEY) or kwargs.get("api_call_start_time") or start_time
    first = kwargs.get("completion_start_time") if kwargs.get("stream") else None
    elapsed = ms_between(began, first or end_time)
    if elapsed is None:
        return None
    lag_at_sent = kwargs.get(LAG_SENT_KEY)
    if isinstance(lag_at_sent, float):
        lag_then = kwargs.get(LAG_FIRST_KEY, lag_ms) if first else lag_ms
        elapsed -= max(0.0, float(lag_then) - lag_at_sent)
    return max(0.0, elapsed)


def ms_between(start: Any, end: Any) -> float | None:
    if isinstance(start, float) and isinstance(end, datetime):
        return max(0.0, (end.timestamp() - start) * 1000)
    if isinstance(start, datetime) and isinstance(end, datetime):
        return max(0.0, (end - start).total_seconds() * 1000)
    if isinstance(start, int | float) and isinstance(end, int | float):
        return max(0.0, (end - start) * 1000)
    return None
