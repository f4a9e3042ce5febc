"""`tierwise eval-summarize`: do long chats stay on the tier their question needs?

Every turn of every generated chat is routed three ways, on the same request:
- reference: the complexity tier, i.e. the decision with the context rule left out (as if
  every window were unlimited);
- without summarization: the configured rule chain, summarization off;
- with summarization: the same chain with summarization on, then prepare() with a summarizer
  that calls a real HTTP model server.
What was sent is recounted from the fitted messages and checked against the tier's window.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tierwise.bench.stats import percentile
from tierwise.config import TierwiseConfig
from tierwise.progress import Progress
from tierwise.request import ChatRequest, Scope
from tierwise.router import TierRouter
from tierwise.rules import RoutingError
from tierwise.summarize import Summarizer
from tierwise.training.long_chats import TOOLS, LongChat


@dataclass(frozen=True)
class TurnResult:
    chat: str
    size: float
    turn: int
    tokens: int  # the whole conversation, as the client sent it
    long: bool  # more than the cheapest tier can take
    reference: str
    with_tier: str
    without_tier: str
    action: str
    calls: int
    sent_tokens: int  # recounted from the fitted messages
    over_window: bool  # sent_tokens more than the chosen tier takes
    without_over_window: bool
    decide_ms: float
    decide_without_ms: float
    prepare_ms: float
    summarizer_ms: float


def routers(
    config: TierwiseConfig, summarizer: Summarizer | None
) -> tuple[TierRouter, TierRouter, TierRouter]:
    """(reference, without, with): one config, three ways of handling context."""
    on = config.summarize.model_copy(update={"enabled": True})
    off = config.summarize.model_copy(update={"enabled": False})
    no_context = config.rules.model_copy(
        update={"order": tuple(r for r in config.rules.order if r != "context")}
    )
    reference = TierRouter(config.model_copy(update={"rules": no_context, "summarize": off}))
    without = TierRouter(config.model_copy(update={"summarize": off}))
    with_ = TierRouter(config.model_copy(update={"summarize": on}), summarizer=summarizer)
    return reference, without, with_


def run(
    config: TierwiseConfig,
    chats: Sequence[LongChat],
    summarizer: Summarizer | None,
    show_progress: bool = True,
) -> list[TurnResult]:
    reference, without, with_ = routers(config, summarizer)
    margin = config.rules.context_margin
    local = config.ranked_tiers[0]
    results: list[TurnResult] = []
    total = sum(len(c.turns) for c in chats)
    progress = Progress(total, "turns") if show_progress else None
    for chat in chats:
        history: list[dict[str, Any]] = []
        if chat.system:
            history.append({"role": "system", "content": chat.system})
        tools = list(TOOLS) if chat.uses_tools else None
        for number, turn in enumerate(chat.turns):
            history.append(turn[0])
            body: dict[str, Any] = {"model": "auto", "messages": list(history)}
            if tools:
                body["tools"] = tools
            scope = Scope(user=chat.chat_id)
            ref = reference.decide(ChatRequest.from_openai(body, scope=scope))
            plain = ChatRequest.from_openai(body, scope=scope)
            started = time.perf_counter()
            try:
                without_tier = without.decide(plain).tier
            except RoutingError:
                without_tier = "none"
            decide_without_ms = (time.perf_counter() - started) * 1000
            request = ChatRequest.from_openai(body, scope=scope)
            started = time.perf_counter()
            decision = with_.decide(request)
            decided = time.perf_counter()
            fitted = with_.prepare(request, decision)
            prepared = time.perf_counter()
            sent = ChatRequest.from_openai({**body, "messages": fitted.messages}).prompt_tokens
            tokens = request.prompt_tokens
            results.append(
                TurnResult(
                    chat=chat.chat_id,
                    size=chat.size,
                    turn=number,
                    tokens=tokens,
                    long=not local.fits(tokens, margin),
                    reference=ref.tier,
                    with_tier=decision.tier,
                    without_tier=without_tier,
                    action=fitted.action,
                    calls=fitted.summarizer_calls,
                    sent_tokens=sent,
                    over_window=not config.tier(decision.tier).fits(sent, margin),
                    without_over_window=without_tier != "none"
                    and not config.tier(without_tier).fits(plain.prompt_tokens, margin),
                    decide_ms=(decided - started) * 1000,
                    decide_without_ms=decide_without_ms,
                    prepare_ms=(prepared - decided) * 1000,
                    summarizer_ms=fitted.summarizer_ms,
                )
            )
            history.extend(turn[1:])
            if progress:
                progress.advance()
    if progress:
        progress.close()
    return results


def summarize_group(rows: Sequence[TurnResult]) -> dict[str, Any]:
    """Rates, calls and latency over a group of turns."""
    long = [r for r in rows if r.long]
    call_rows = [r for r in rows if r.calls]
    return {
        "turns": len(rows),
        "long_turns": len(long),
        "stay_with": _share(long, lambda r: r.with_tier == r.reference),
        "stay_without": _share(long, lambda r: r.without_tier == r.reference),
        "stay_with_all_turns": _share(rows, lambda r: r.with_tier == r.reference),
        "stay_without_all_turns": _share(rows, lambda r: r.without_tier == r.reference),
        "summarizer_calls": sum(r.calls for r in rows),
        "calls_per_turn": round(sum(r.calls for r in rows) / len(rows), 4) if rows else 0.0,
        "calls_per_long_turn": round(sum(r.calls for r in long) / len(long), 4) if long else 0.0,
        "max_calls_in_a_turn": max((r.calls for r in rows), default=0),
        "actions": dict(Counter(r.action for r in rows)),
        "over_window_with": sum(r.over_window for r in rows),
        "over_window_without": sum(r.without_over_window for r in rows),
        "tiers_with": dict(Counter(r.with_tier for r in long)),
        "tiers_without": dict(Counter(r.without_tier for r in long)),
        "latency_ms": {
            "decide_without": _pcts(r.decide_without_ms for r in rows),
            "decide_with": _pcts(r.decide_ms for r in rows),
            "prepare_all_turns": _pcts(r.prepare_ms for r in rows),
            "prepare_no_call": _pcts(r.prepare_ms for r in rows if not r.calls),
            "prepare_with_call": _pcts(r.prepare_ms for r in call_rows),
            "summarizer_call": _pcts(r.summarizer_ms / r.calls for r in call_rows),
        },
    }


def report(results: Sequence[TurnResult], setup: dict[str, Any]) -> dict[str, Any]:
    sizes = sorted({r.size for r in results})
    return {
        "setup": setup,
        "overall": summarize_group(results),
        "by_size": {
            f"{size:g}x": summarize_group([r for r in results if r.size == size]) for size in sizes
        },
    }


def format_report(data: dict[str, Any]) -> str:
    setup, overall = data["setup"], data["overall"]
    lines = [
        f"long chats: {setup['chats']} from {setup['prompts']} (seed {setup['seed']}), grown to "
        f"{', '.join(f'{s:g}x' for s in setup['sizes'])} the {setup['local_tier']} window of "
        f"{setup['local_window']} tokens",
        f"summarizer: {setup['summarizer']}",
        f"turns: {overall['turns']}, of which {overall['long_turns']} exceed what "
        f"{setup['local_tier']} takes (long turns)",
        "",
        f"{'':<8}{'turns':>7}{'long':>7}{'stay with':>12}{'stay without':>14}"
        f"{'calls/turn':>12}{'calls/long':>12}{'max calls':>11}{'over window':>13}",
    ]
    rows = [*data["by_size"].items(), ("all", overall)]
    for name, group in rows:
        lines.append(
            f"{name:<8}{group['turns']:>7}{group['long_turns']:>7}"
            f"{_pct(group['stay_with']):>12}{_pct(group['stay_without']):>14}"
            f"{group['calls_per_turn']:>12.3f}{group['calls_per_long_turn']:>12.3f}"
            f"{group['max_calls_in_a_turn']:>11}"
            f"{group['over_window_with']:>7} / {group['over_window_without']:<3}"
        )
    lines += [
        "",
        "stay = long turns routed to their complexity tier (the decision with unlimited windows)",
        "over window = requests larger than the chosen tier takes: with / without summarization",
        f"actions (all turns): {_counts(overall['actions'])}",
        f"long turns by tier, with: {_counts(overall['tiers_with'])}; "
        f"without: {_counts(overall['tiers_without'])}",
        "",
        f"{'latency, ms':<40}{'p50':>9}{'p99':>9}{'n':>7}",
    ]
    labels = {
        "decide_without": "decide(), summarization off",
        "decide_with": "decide(), summarization on",
        "prepare_all_turns": "prepare(), every turn",
        "prepare_no_call": "prepare(), turns without a call",
        "prepare_with_call": "prepare(), turns with a call",
        "summarizer_call": "one summarizer call (HTTP round trip)",
    }
    for key, label in labels.items():
        stats = overall["latency_ms"][key]
        lines.append(f"{label:<40}{stats['p50']:>9.3f}{stats['p99']:>9.3f}{stats['n']:>7}")
    return "\n".join(lines)


def rows_as_dicts(results: Iterable[TurnResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]


def _share(rows: Sequence[TurnResult], test: Any) -> dict[str, Any]:
    hits = sum(1 for r in rows if test(r))
    return {"hits": hits, "of": len(rows), "share": round(hits / len(rows), 4) if rows else None}


def _pct(share: dict[str, Any]) -> str:
    return "-" if share["share"] is None else f"{100 * share['share']:.1f}%"


def _pcts(values: Iterable[float]) -> dict[str, float]:
    samples = list(values)
    return {
        "p50": round(percentile(samples, 50), 4) if samples else 0.0,
        "p99": round(percentile(samples, 99), 4) if samples else 0.0,
        "n": len(samples),
    }


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"
