"""Request faults vs tier faults, and the breaker one caller cannot open for everyone."""

from __future__ import annotations

import pytest

from tests.conftest import three_tiers
from tierwise.config import load_config
from tierwise.faults import Fault, caller_of, classify, client_status
from tierwise.request import ChatRequest, Scope
from tierwise.router import TierRouter
from tierwise.rules import Signals
from tierwise.signals.health import HealthTracker

EASY = "What is 2+2?"


@pytest.mark.parametrize(
    ("status", "sent", "mid_stream", "fault"),
    [
        (None, False, False, Fault.REQUEST),  # the host's validation refused it
        (500, False, False, Fault.REQUEST),  # a host error before any upstream call
        (None, True, False, Fault.TIER),  # refused connection, timeout
        (500, True, False, Fault.TIER),
        (503, True, False, Fault.TIER),
        (429, True, False, Fault.TIER),
        (408, True, False, Fault.TIER),
        (401, True, False, Fault.TIER),  # the tier's own key
        (400, True, False, Fault.REQUEST),
        (404, True, False, Fault.REQUEST),  # an endpoint the tier does not serve
        (413, True, False, Fault.REQUEST),
        (422, True, False, Fault.REQUEST),
        (None, True, True, Fault.TIER),  # the stream died mid-way
        (400, False, True, Fault.TIER),
    ],
)
def test_classify(status: int | None, sent: bool, mid_stream: bool, fault: Fault) -> None:
    assert classify(status, sent=sent, mid_stream=mid_stream) is fault


def test_client_status_keeps_the_upstream_4xx_else_400() -> None:
    assert [client_status(s) for s in (404, 413, 422, None, 500, 429)] == [
        404,
        413,
        422,
        400,
        400,
        400,
    ]


def test_caller_of_anonymous_is_none_and_scopes_differ() -> None:
    assert caller_of(Scope()) is None and caller_of(None) is None
    assert caller_of(Scope(user="a")) != caller_of(Scope(user="b"))


def _router(now: list[float]) -> TierRouter:
    config = load_config(three_tiers(rules={"health": {"max_failures": 3, "cooldown_s": 30}}))
    return TierRouter(config, signals=Signals(health=HealthTracker(clock=lambda: now[0])))


def _asks(router: TierRouter, user: str) -> str:
    request = ChatRequest.from_openai(
        {"messages": [{"role": "user", "content": EASY}], "user": user}
    )
    return router.decide(request).tier


def test_request_faults_move_no_signal() -> None:
    router = _router([0.0])
    for _ in range(10):
        router.record("local", ok=False, error="bad part", fault=Fault.REQUEST, caller="a")
    assert router.signals.health.cooling_down("local", "a") == 0
    assert _asks(router, "b") == "local"


def test_one_caller_opens_only_its_own_breaker() -> None:
    router = _router([0.0])
    hostile = caller_of(Scope(user="hostile"))
    for _ in range(6):
        router.record("local", ok=False, error="500", caller=hostile)
    assert _asks(router, "hostile") == "hpc"  # its own breaker is open
    assert _asks(router, "someone else") == "local"


def test_failures_from_two_callers_open_it_for_everyone_until_the_cooldown_ends() -> None:
    now = [0.0]
    router = _router(now)
    for user in ("a", "b", "a"):
        router.record("local", ok=False, error="refused", caller=caller_of(Scope(user=user)))
    decision = router.decide(ChatRequest.from_text(EASY))
    assert decision.tier == "hpc"
    cooling = "health: local cooling down 30s (last error: refused)"
    assert any(cooling in reason for reason in decision.reasons)
    now[0] = 31.0
    assert _asks(router, "c") == "local"


def test_a_success_ends_the_run_of_failures() -> None:
    router = _router([0.0])
    a, b = caller_of(Scope(user="a")), caller_of(Scope(user="b"))
    router.record("local", ok=False, error="x", caller=a)
    router.record("local", ok=False, error="x", caller=b)
    router.record("local", ok=True, caller=b)
    router.record("local", ok=False, error="x", caller=a)
    assert _asks(router, "c") == "local"


def test_unattributed_failures_open_the_breaker_as_before() -> None:
    router = _router([0.0])
    for _ in range(3):
        router.record("local", ok=False, error="refused")
    assert router.decide(ChatRequest.from_text(EASY)).tier == "hpc"
