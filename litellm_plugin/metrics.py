"""Poll vLLM servers' /metrics in the background: KV-cache usage and requests waiting.

Each reading feeds two consumers:
- the core's VRAM rule, through `GpuState` keyed by tier name (a tier counts as full only
  when its least-loaded replica is);
- replica choice inside a tier, through `ReplicaLoad` keyed by metrics URL.

Polling runs on a daemon thread with a per-request timeout, so a slow or dead server never
delays a routing decision: it only leaves its reading to go stale.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import httpx

from tierwise.signals.vram import GpuReading, GpuState

log = logging.getLogger(__name__)

# vLLM renamed the KV-cache gauge in v0.10 (V1 engine); accept both names.
KV_CACHE_METRICS = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
WAITING_METRIC = "vllm:num_requests_waiting"


@dataclass(frozen=True)
class VllmLoad:
    kv_cache_usage: float | None
    waiting: int | None

    @property
    def empty(self) -> bool:
        return self.kv_cache_usage is None and self.waiting is None


def parse_vllm_metrics(text: str) -> VllmLoad:
    """KV-cache usage (the highest over model labels) and waiting requests (their sum)."""
    kv: float | None = None
    waiting: float | None = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, value = _sample(line)
        if value is None or math.isnan(value):
            continue
        if name in KV_CACHE_METRICS:
            kv = value if kv is None else max(kv, value)
        elif name == WAITING_METRIC:
            waiting = value if waiting is None else waiting + value
    return VllmLoad(kv, None if waiting is None else int(waiting))


def _sample(line: str) -> tuple[str, float | None]:
    """Name and value of one Prometheus text-format sample line."""
    brace = line.find("{")
    if brace >= 0:
        name = line[:brace]
        rest = line[line.rfind("}") + 1 :].split()
    else:
        parts = line.split()
        name, rest = (parts[0], parts[1:]) if parts else ("", [])
    try:
        return name, float(rest[0]) if rest else None
    except ValueError:
        return name, None


@dataclass(frozen=True)
class Target:
    """One /metrics URL and the tier it reports for."""

    url: str
    tier: str


class ReplicaLoad:
    """Latest load per metrics URL, with staleness; read by replica choice."""

    def __init__(self, gpu: GpuState) -> None:
        self._gpu = gpu  # shares its clock and staleness window
        self._loads: dict[str, tuple[float, VllmLoad]] = {}
        self._lock = threading.Lock()

    def put(self, url: str, load: VllmLoad) -> None:
        with self._lock:
            self._loads[url] = (self._gpu.now(), load)

    def get(self, url: str) -> VllmLoad | None:
        with self._lock:
            entry = self._loads.get(url)
        if entry is None or self._gpu.now() - entry[0] > self._gpu.stale_after_s:
            return None
        return entry[1]


class MetricsPoller:
    """Daemon thread polling every target; writes per-URL loads and per-tier GPU readings."""

    def __init__(
        self,
        targets: Iterable[Target],
        gpu: GpuState,
        loads: ReplicaLoad,
        interval_s: float = 2.0,
        timeout_s: float = 1.0,
        fetch: Callable[[str, float], str] | None = None,
    ) -> None:
        self.targets = tuple(targets)
        self.gpu = gpu
        self.loads = loads
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._fetch = fetch or _http_get
        self.errors: dict[str, str] = {}  # url -> last error, for `doctor`-style reporting
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.targets or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="tierwise-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + self.interval_s + 1)
            self._thread = None

    def poll_once(self) -> None:
        per_tier: dict[str, list[VllmLoad]] = {}
        for target in self.targets:
            try:
                load = parse_vllm_metrics(self._fetch(target.url, self.timeout_s))
            except Exception as exc:  # network errors, HTTP errors: the reading goes stale
                if self.errors.get(target.url) != str(exc):
                    log.warning("tierwise: cannot read %s: %s", target.url, exc)
                self.errors[target.url] = str(exc)
                continue
            self.errors.pop(target.url, None)
            if load.empty:
                continue
            self.loads.put(target.url, load)
            per_tier.setdefault(target.tier, []).append(load)
        for tier, loads in per_tier.items():
            best = min(loads, key=load_rank)
            self.gpu.put(
                tier,
                GpuReading(
                    taken_at=self.gpu.now(),
                    kv_cache_usage=best.kv_cache_usage,
                    waiting=best.waiting,
                ),
            )

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval_s)


def load_rank(load: VllmLoad) -> tuple[int, float]:
    """Order replicas by queue first, then KV-cache use: less is better; unknown counts as 0."""
    return (load.waiting or 0, load.kv_cache_usage or 0.0)


def _http_get(url: str, timeout_s: float) -> str:
    response = httpx.get(url, timeout=timeout_s)
    response.raise_for_status()
    return response.text


def least_loaded(urls: Mapping[str, str], loads: ReplicaLoad) -> str | None:
    """Of {key: metrics_url}, the key whose server is least loaded; None if any reading is missing
    (then the host's own strategy should choose, not a guess from partial data)."""
    ranked: list[tuple[tuple[int, float], str]] = []
    for key, url in urls.items():
        load = loads.get(url)
        if load is None:
            return None
        ranked.append((load_rank(load), key))
    return min(ranked)[1] if ranked else None
