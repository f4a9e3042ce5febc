"""`tierwise report`: the dashboard's summary as plain tables in the terminal."""

from __future__ import annotations

from typing import Any


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def _usd(value: float) -> str:
    if value == 0:
        return "$0"
    return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _table(headers: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Columns padded to their widest cell; the first `left` columns flush left."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def format_report(summary: dict[str, Any], db: str) -> str:
    t = summary["totals"]
    span_h = (summary["until"] - summary["since"]) / 3600
    hosts = ", ".join(f"{h['host']} {h['count']:,}" for h in summary["hosts"]) or "none"
    out = [
        f"tierwise report · {db} · window {summary['window']} ({span_h:.1f} h)",
        "",
        f"requests      {t['requests']:,}  ({hosts})",
        f"spend         {_usd(t['cost_usd'])}   all on the top tier: {_usd(t['top_cost_usd'])}",
        f"saved         {_usd(t['saved_usd'])}  ({_pct(t['saved_ratio'])})",
        f"cache hits    {t['cache_hits']:,}  ({_pct(t['cache_hit_rate'])})   "
        f"summarized {t['summarized']:,}   fallbacks {t['fallbacks']:,}   "
        f"errors {t['errors']:,}   probes {t['probes']:,}",
        f"LLM judge     {t['judged']:,} rated   {t['judge_kept']:,} kept the score "
        "(timeout, error, busy)",
        f"TTFT          p50 {_ms(t['ttft_p50_ms'])}   p95 {_ms(t['ttft_p95_ms'])}   "
        f"decision p50 {t['decide_p50_ms'] or 0:.3f} ms   p95 {t['decide_p95_ms'] or 0:.3f} ms",
        "",
    ]
    rows = [
        [
            r["tier"],
            r["status"],
            f"{r['requests']:,}",
            _pct(r["share"]),
            _ms(r["ttft_p50_ms"]),
            _ms(r["ttft_p95_ms"]),
            _ms(r["latency_p50_ms"]),
            _ms(r["latency_p95_ms"]),
            f"{r['failures']:,} ({_pct(r['failure_rate'])})",
            f"{r['fallbacks_in']:,}",
            _usd(r["cost_usd"]),
        ]
        for r in summary["tiers"]
    ]
    out += _table(
        [
            "tier",
            "health",
            "requests",
            "share",
            "ttft p50",
            "ttft p95",
            "latency p50",
            "latency p95",
            "failed attempts",
            "fallbacks in",
            "cost",
        ],
        rows,
        left=2,
    )
    errors = [(r["tier"], r["last_error"]) for r in summary["tiers"] if r["last_error"]]
    if errors:
        out += ["", "last error per tier:"] + [f"  {tier}: {error}" for tier, error in errors]
    out += [""]
    out += _table(
        ["top reasons", "requests", "share"],
        [[r["reason"], f"{r['count']:,}", _pct(r["share"])] for r in summary["reasons"]],
    )
    return "\n".join(out)
