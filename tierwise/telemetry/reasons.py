"""Turn a decision's reasons into one short, low-cardinality key: what decided the tier.

A decision lists every rule that acted ("capability: vision needed; skipped local, hpc",
"complexity: score 0.17 LOW (...) -> local", ...). Dashboards and metric labels need the one
that *decided*: the complexity floor when the chosen tier is the one complexity asked for,
otherwise the last rule that moved the request off it. Numbers are dropped so that
"sla: hpc EMA 3120 ms > 3000 ms" and "... 3200 ms ..." count as the same reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tierwise.decision import Decision

RULES = ("capability", "context", "complexity", "vram", "sla", "health", "custom")
_TARGET = re.compile(r"-> (\S+)\s*$")
_TIERS = re.compile(r"do not fit (.+)$|for context: (.+?) cannot hold")
_STAYED = re.compile(r"summarize and stay on (\S+?):")


def rule_of(reason: str) -> str:
    """The rule a reason line came from ('' for lines that are not a rule's)."""
    head = reason.split(":", 1)[0]
    return head if head in RULES else ""


def reason_key(decision: Decision) -> str:
    """A short key such as 'complexity: HIGH', 'capability: vision' or 'sla: hpc slow'."""
    return key_of(decision.reasons, decision.tier, decision.band, decision.probe)


def key_of(reasons: Sequence[str], tier: str, band: str, probe: bool = False) -> str:
    if probe:
        return f"sla: {tier} probe"
    target = None
    acted: list[str] = []
    for line in reasons:
        rule = rule_of(line)
        if rule == "complexity":
            match = _TARGET.search(line)
            target = match.group(1) if match else None
        elif rule:
            acted.append(line)
    if target == tier or (target is not None and not acted):
        return f"complexity: {band}"
    if not acted:
        return "default"
    return _short(acted[-1])


def _short(line: str) -> str:
    rule, _, rest = line.partition(":")
    words = rest.split(";", 1)[0].split()
    if rule == "capability":
        return f"capability: {words[0]}" if words else rule
    if rule == "context":
        stayed = _STAYED.search(rest)
        if stayed:
            return f"context: summarized to stay on {stayed.group(1)}"
        match = _TIERS.search(rest.split(";", 1)[0])
        return f"context: too long for {match.group(1) or match.group(2)}" if match else rule
    subject = words[0] if words else ""
    if rule == "vram":
        return f"vram: {subject} full"
    if rule == "sla":
        return f"sla: {subject} slow"
    if rule == "health":
        return f"health: {subject} cooling down"
    return rule
