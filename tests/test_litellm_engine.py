"""Choosing deployments inside the `auto` group: tier, fallback walk, replica, headers."""

from __future__ import annotations

from typing import Any

from litellm_plugin.engine import Engine
from litellm_plugin.metadata import record_in
from litellm_plugin.metrics import VllmLoad
from litellm_plugin.settings import setup_from_proxy_config
from tierwise.request import ChatRequest


def deployment(ident: str, tier: str, **info: Any) -> dict[str, Any]:
    return {
        "model_name": "auto",
        "litellm_params": {"model": f"openai/{ident}"},
        "model_info": {"id": ident, "tierwise_tier": tier, **info},
    }


GROUP = [
    deployment("l1", "local"),
    deployment("h1", "hpc", tierwise_metrics_url="http://h1/metrics"),
    deployment("h2", "hpc", tierwise_metrics_url="http://h2/metrics"),
    deployment("c1", "cloud"),
]


def engine(**section: Any) -> Engine:
    """The heuristic scorer keeps these routing tests independent of the learned weights."""
    section = {"scoring": {"method": "heuristic"}, **section}
    return Engine(setup_from_proxy_config({"model_list": GROUP, "tierwise": section}))


def decided(e: Engine, text: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    e.attach(metadata, e.record_of(e.decide(ChatRequest.from_text(text))))
    return {"metadata": metadata}


def ids(deployments: list[dict[str, Any]]) -> list[str]:
    return [d["model_info"]["id"] for d in deployments]


def test_walks_the_fallback_chain_past_failed_deployments() -> None:
    e = engine()
    kwargs = decided(e, "Explain how a hash table handles collisions.")  # -> hpc
    record = record_in(kwargs["metadata"])
    assert record is not None and record["tier"] == "hpc"
    assert record["fallback_chain"] == ["cloud", "local"]
    assert ids(e.select(GROUP, kwargs)) == ["h1", "h2"]
    failed = kwargs["metadata"]["previous_models"] = [{"deployment_id": "h1"}]
    assert ids(e.select(GROUP, kwargs)) == ["h2"]  # the tier's other replica first
    failed.append({"deployment_id": "h2"})
    assert ids(e.select(GROUP, kwargs)) == ["c1"]  # then stronger tiers
    failed.append({"deployment_id": "c1"})
    assert ids(e.select(GROUP, kwargs)) == ["l1"]  # then weaker ones
    failed.append({"deployment_id": "l1"})
    # Everything failed: the decided tier again, so the caller gets the provider's error.
    assert ids(e.select(GROUP, kwargs)) == ["h1", "h2"]
    assert record["attempts"] == ["hpc", "hpc", "cloud", "local", "hpc"]
    # Cooled-down deployments are absent from `healthy`: the walk skips them too.
    assert ids(e.select([GROUP[0], GROUP[3]], decided(e, "Why does ice float on water?"))) == ["c1"]


def test_request_without_decision_goes_to_default_tier() -> None:
    e = engine(default_tier="hpc")
    kwargs: dict[str, Any] = {"metadata": {}}
    assert ids(e.select(GROUP, kwargs)) == ["h1", "h2"]
    record = record_in(kwargs["metadata"])
    assert record is not None and record["score"] is None


def test_replica_choice_uses_metrics_only_when_complete() -> None:
    e = engine(replicas="metrics")
    kwargs = decided(e, "Explain how a hash table handles collisions.")
    assert ids(e.select(GROUP, kwargs)) == ["h1", "h2"]  # no readings yet: LiteLLM picks
    e.loads.put("http://h1/metrics", VllmLoad(0.2, 5))
    assert ids(e.select(GROUP, kwargs)) == ["h1", "h2"]  # one missing: still LiteLLM's call
    e.loads.put("http://h2/metrics", VllmLoad(0.9, 1))
    assert ids(e.select(GROUP, kwargs)) == ["h2"]  # shorter queue wins over KV-cache use
    e.loads.put("http://h2/metrics", VllmLoad(0.9, 5))
    assert ids(e.select(GROUP, kwargs)) == ["h1"]  # same queue: the emptier cache


def test_headers_are_ascii_and_say_when_a_fallback_served() -> None:
    e = engine()
    record = {
        "tier": "local",
        "score": 0.123456,
        "reason": "complexity: ≥ high\nnext",
        "attempts": ["local", "cloud"],
    }
    headers = e.headers(record, None)
    assert headers == {
        "x-tierwise-tier": "cloud",
        "x-tierwise-score": "0.1235",
        "x-tierwise-reason": "fallback: local failed, served by cloud; complexity: high next",
    }
    assert e.headers({**record, "score": None}, "local")["x-tierwise-score"] == "n/a"
