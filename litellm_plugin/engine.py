"""What the LiteLLM hooks and the SDK routing strategy share: decide, pick deployments, learn.

The decision travels with the request inside LiteLLM's own metadata, as
`metadata.spend_logs_metadata.tierwise` (a plain JSON dict), so it lands in the standard
logging payload and the spend logs, and every retry or fallback hop of the same request sees
it: LiteLLM copies the metadata shallowly between hops, so this nested dict is shared.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from litellm_plugin.headers import header_value
from litellm_plugin.metadata import RECORD_KEY, metadata_of, record_in
from litellm_plugin.metrics import MetricsPoller, ReplicaLoad, Target, least_loaded
from litellm_plugin.settings import METRICS_KEY, TIER_KEY, PluginSetup
from litellm_plugin.steps import Step, load_steps
from litellm_plugin.tier_call import ask_tier
from tierwise.cache import SemanticCache, cache_encoder
from tierwise.decision import Decision
from tierwise.faults import Fault
from tierwise.request import ChatRequest, Scope
from tierwise.router import TierRouter
from tierwise.scoring.base import Scorer
from tierwise.telemetry import Telemetry

log = logging.getLogger("tierwise.litellm")

# The endpoint a client called, by LiteLLM's call type, for the refusal message.
ENDPOINTS = {
    "atext_completion": "POST /v1/completions (text completion, e.g. Continue's autocomplete)",
    "text_completion": "POST /v1/completions (text completion, e.g. Continue's autocomplete)",
    "aembedding": "POST /v1/embeddings",
    "embedding": "POST /v1/embeddings",
    "aresponses": "POST /v1/responses",
}


MEMOS_KEPT = 4096  # requests in flight whose memo the cache backend may ask for
JUDGE_TOKENS = 16  # a rating, or "Rating: 7" from a chattier model


class Engine:
    """Routing state for one `auto` group: the core router, live signals, counters."""

    def __init__(self, setup: PluginSetup, scorer: Scorer | None = None) -> None:
        self.setup = setup
        self.settings = setup.settings
        self.router = TierRouter(setup.config, scorer=scorer, ask_judge=self.ask_judge)
        self.loads = ReplicaLoad(self.router.signals.gpu)
        self.poller = MetricsPoller(
            self._metrics_targets(),
            self.router.signals.gpu,
            self.loads,
            interval_s=self.settings.metrics_interval_s,
            timeout_s=self.settings.metrics_timeout_s,
        )
        self.steps: list[Step] = load_steps(self.settings.steps, setup)
        if setup.config.summarize.enabled:
            from litellm_plugin.context import FitContext

            self.steps.append(FitContext(self))
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self.cache: SemanticCache | None = None
        self.telemetry = Telemetry.for_router(self.router, host="litellm")
        # request.memo (e.g. the question's embedding) by litellm_call_id, so the cache
        # backend, which LiteLLM calls with its own kwargs, reuses what deciding computed.
        self._memos: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._warm: set[str] = set()  # deployments called at least once by this process

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background signal sources (NVML thread, /metrics poller) and the cache."""
        self.router.start_monitors()
        self.poller.start()
        if self.setup.config.cache.enabled:
            self.cache = SemanticCache(self.setup.config.cache, cache_encoder(self.setup.config))

    def close(self) -> None:
        self.poller.stop()
        self.router.close()
        if self.cache is not None:
            self.cache.close()

    def log_request(self, metadata: Mapping[str, Any], **measured: Any) -> None:
        """One row for a finished `auto` request: the decision it carried plus what happened."""
        record = record_in(metadata)
        if record is None:
            return
        decision = Decision.from_dict(record)
        sketch = measured.pop("sketch", None)
        if sketch and isinstance(decision.notes.get("adapt"), dict):
            decision.notes["adapt"]["sketch"] = sketch
        served = measured.pop("tier", None) or (record.get("attempts") or [decision.tier])[-1]
        self.telemetry.request(
            decision,
            scope=self.scope_of({}, metadata),
            tier=served,
            summarized=bool(record.get("context")),
            **measured,
        )

    def remember_memo(self, call_id: object, memo: dict[str, Any]) -> None:
        if not isinstance(call_id, str) or not memo:
            return
        with self._stats_lock:
            self._memos[call_id] = memo
            while len(self._memos) > MEMOS_KEPT:
                self._memos.popitem(last=False)

    def memo_of(self, call_id: object) -> dict[str, Any]:
        with self._stats_lock:
            return dict(self._memos.get(call_id, {})) if isinstance(call_id, str) else {}

    def count(self, what: str) -> int:
        with self._stats_lock:
            self.stats[what] += 1
            return self.stats[what]

    # -- decision --------------------------------------------------------------------------

    def is_ours(self, model: object) -> bool:
        return model == self.settings.model_group

    def request_view(self, body: Mapping[str, Any], metadata: Mapping[str, Any]) -> ChatRequest:
        """The core's view of a LiteLLM request body; raises RequestError when malformed."""
        return ChatRequest.from_openai(body, scope=self.scope_of(body, metadata))

    @staticmethod
    def scope_of(body: Mapping[str, Any], metadata: Mapping[str, Any]) -> Scope:
        """Who asked. The end user a client names (`user`) partitions the cache further, but
        only inside its API key's scope: naming someone else's id reaches nothing of theirs."""
        end_user = _str(body.get("user")) or _str(metadata.get("user_api_key_end_user_id"))
        return Scope(
            user=end_user or _str(metadata.get("user_api_key_user_id")),
            team=_str(metadata.get("user_api_key_team_id")),
            api_key=_str(metadata.get("user_api_key_hash")),
        )

    def decide(self, request: ChatRequest) -> Decision:
        """Score and run the rules; raises RoutingError when no tier can take the request."""
        return self.router.decide(request)

    async def adecide(self, request: ChatRequest) -> Decision:
        """decide() off the event loop, with the LLM judge when `scoring.judge.enabled`."""
        return await self.router.adecide(request)

    async def ask_judge(self, messages: list[dict[str, str]], request: ChatRequest) -> str:
        """The core's judge call: the judge tier's deployments, through the proxy's router.
        No retries: the judge has seconds, and a failed verdict costs nothing (fail-open)."""
        tier = self.setup.config.judge_tier.name
        return await ask_tier(
            self.settings.model_group, tier, messages, JUDGE_TOKENS, "judge", num_retries=0
        )

    def fail_open(self, error: BaseException, where: str) -> Decision:
        """The default tier, when tierwise itself broke: logged, counted, and said in reasons."""
        n = self.count("fail_open")
        self.telemetry.error(where)
        log.error(
            "tierwise: fail-open #%d in %s (%s: %s); serving the default tier %s",
            n,
            where,
            type(error).__name__,
            error,
            self.setup.default_tier,
            exc_info=error,
        )
        return self.default_decision(
            f"fail-open: tierwise error ({type(error).__name__}); default tier"
        )

    def default_decision(self, reason: str) -> Decision:
        """Serve the default tier, the others (cheapest first) as its fallbacks."""
        default = self.setup.config.tier(self.setup.default_tier)
        others = [t.name for t in self.setup.config.ranked_tiers if t.name != default.name]
        return Decision(
            tier=default.name,
            models=default.models,
            score=float("nan"),
            band="",
            reasons=(reason,),
            fallback_chain=tuple(others),
            scorer="none",
        )

    @staticmethod
    def record_of(
        decision: Decision, fail_open: bool = False, caller: str | None = None
    ) -> dict[str, Any]:
        """The JSON dict stored in the request's metadata (and so in the spend logs)."""
        record = decision.as_dict()
        record.pop("models", None)
        if math.isnan(decision.score):
            record["score"] = None
        record["reason"] = "; ".join(decision.reasons) or "default"
        record["fail_open"] = fail_open
        record["attempts"] = []  # tiers handed to LiteLLM, in order; the last one served
        record["caller"] = caller  # faults.caller_of(scope): a hash, for the health breaker
        trace = record.get("adapt")
        if isinstance(trace, dict):  # the sketch stays in this process (engine memo), not in
            record["adapt"] = {k: v for k, v in trace.items() if k != "sketch"}  # spend logs
        return record

    def attach(self, metadata: dict[str, Any], record: dict[str, Any]) -> None:
        """Put the record where LiteLLM's logging and spend logs pick it up."""
        spend = metadata.get("spend_logs_metadata")
        spend = dict(spend) if isinstance(spend, Mapping) else {}
        spend[RECORD_KEY] = record
        metadata["spend_logs_metadata"] = spend

    def attempts_needed(self, record: Mapping[str, Any]) -> int:
        """Retries for every candidate deployment to be tried once (tiers in the chain)."""
        tiers = [record["tier"], *record.get("fallback_chain", ())]
        return max(0, sum(len(self.setup.deployments_of(t)) for t in tiers) - 1)

    # -- deployment choice -----------------------------------------------------------------

    def select(
        self, healthy: Sequence[dict[str, Any]], request_kwargs: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        """Narrow the `auto` group's healthy deployments to one tier (and maybe one replica).

        Walks the decision's tier then its fallback chain, skipping deployments that already
        failed this request (LiteLLM's own `previous_models` record), so a retry or fallback
        hop lands on the next tier. When every candidate has failed, it hands back the decided
        tier again, so the client sees the provider's error rather than "no deployments".
        """
        metadata = metadata_of(request_kwargs)
        record = record_in(metadata)
        if record is None:  # the pre-call hook did not run (SDK call, other endpoint)
            record = self.record_of(
                self.default_decision("not a chat request tierwise scored; default tier")
            )
            if metadata is not None:
                self.attach(metadata, record)
        failed = failed_deployment_ids(metadata)
        if record.get("fault") and record["attempts"]:
            # A request fault: every tier would refuse it too. Retry where it failed (it
            # never left the proxy), so LiteLLM's retries walk no dearer tier.
            again = [d for d in healthy if deployment_id(d) in failed]
            return again or list(healthy)
        by_tier: dict[str, list[dict[str, Any]]] = {}
        for deployment in healthy:
            tier = tier_of(deployment)
            if tier is not None:
                by_tier.setdefault(tier, []).append(deployment)
        order = [record["tier"], *record.get("fallback_chain", ())]
        chosen_tier, available = order[0], by_tier.get(order[0], [])
        for tier in order:
            fresh = [d for d in by_tier.get(tier, []) if deployment_id(d) not in failed]
            if fresh:
                chosen_tier, available = tier, fresh
                break
        if not available:
            return list(healthy)
        record["attempts"].append(chosen_tier)
        return self.pick_replicas(available)

    def pick_replicas(self, deployments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """With `replicas: metrics`, the least-loaded vLLM replica; else LiteLLM chooses."""
        if self.settings.replicas != "metrics" or len(deployments) < 2:
            return deployments
        urls: dict[str, str] = {}
        for d in deployments:
            url = (d.get("model_info") or {}).get(METRICS_KEY)
            if not url:
                return deployments
            urls[deployment_id(d)] = url
        best = least_loaded(urls, self.loads)
        if best is None:
            return deployments
        return [d for d in deployments if deployment_id(d) == best]

    # -- outcomes --------------------------------------------------------------------------

    def observe_success(
        self, tier: str, ttft_ms: float | None, caller: str | None = None, deployment: str = ""
    ) -> None:
        """A served attempt. A deployment's first call in this process is not timed: LiteLLM
        builds its HTTP client then (measured: about 2 s on a loaded 2-core machine), which
        is the proxy warming up, not the tier being slow."""
        with self._stats_lock:
            first = deployment not in self._warm
            self._warm.add(deployment)
        self.router.record(tier, ok=True, ttft_ms=None if first else ttft_ms, caller=caller)

    def observe_failure(
        self, tier: str, fault: Fault, error: str, caller: str | None = None
    ) -> None:
        """Feed a failed attempt to the core, which counts tier faults only."""
        self.router.record(tier, ok=False, error=error, fault=fault, caller=caller)

    def unsupported_endpoint(self, call_type: str) -> str:
        """Why `auto` refuses a non-chat call, and what to send instead."""
        endpoint = ENDPOINTS.get(call_type, call_type)
        group = self.settings.model_group
        return (
            f"model {group!r} routes chat completions only (POST /v1/chat/completions); "
            f"{endpoint} is not routed by complexity. Name one of the deployments' own models "
            f"for it instead of {group!r} (e.g. a local model for autocomplete or embeddings)"
        )

    def headers(
        self, record: Mapping[str, Any], served_tier: str | None, failed: bool = False
    ) -> dict[str, str]:
        """x-tierwise-* for a response; every value is header-safe (litellm_plugin/headers.py)."""
        decided = str(record.get("tier"))
        tried = record.get("attempts") or [decided]
        served = served_tier or tried[-1]
        reason = str(record.get("reason") or "")
        if failed:
            fault = "request refused" if record.get("fault") else "every tier tried failed"
            reason = f"failed ({fault}; tried {', '.join(tried)}); {reason}"
        elif served != decided:
            reason = f"fallback: {decided} failed, served by {served}; {reason}"
        score = record.get("score")
        headers = {
            "x-tierwise-tier": header_value(str(served)),
            "x-tierwise-score": "n/a" if score is None else f"{float(score):.4f}",
            "x-tierwise-reason": header_value(reason),
        }
        hit = record.get("cache")
        if isinstance(hit, Mapping):
            kind = "exact" if hit.get("exact") else f"similar {hit.get('similarity')}"
            headers["x-tierwise-cache"] = header_value(
                f"hit ({kind}; answered by {hit.get('answered_by')})"
            )
        return headers

    # -- helpers ---------------------------------------------------------------------------

    def _metrics_targets(self) -> list[Target]:
        targets = {Target(d.metrics_url, d.tier) for d in self.setup.deployments if d.metrics_url}
        for tier in self.setup.config.tiers:
            if tier.vram is not None and tier.vram.source == "vllm" and tier.vram.metrics_url:
                targets.add(Target(tier.vram.metrics_url, tier.name))
        return sorted(targets, key=lambda t: (t.tier, t.url))


def failed_deployment_ids(metadata: Mapping[str, Any] | None) -> set[str]:
    """Deployments that already failed this request, from LiteLLM's retry breadcrumbs."""
    ids = set()
    for attempt in (metadata or {}).get("previous_models") or ():
        if isinstance(attempt, Mapping) and isinstance(attempt.get("deployment_id"), str):
            ids.add(attempt["deployment_id"])
    return ids


def tier_of(deployment: Mapping[str, Any]) -> str | None:
    tier = (deployment.get("model_info") or {}).get(TIER_KEY)
    return tier if isinstance(tier, str) else None


def deployment_id(deployment: Mapping[str, Any]) -> str:
    return str((deployment.get("model_info") or {}).get("id"))


def _str(value: object) -> str | None:
    return str(value) if value not in (None, "") else None
