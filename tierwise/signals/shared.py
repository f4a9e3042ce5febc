"""Health, SLA EMA, probe counters and GPU readings shared by every worker and replica
through Redis.

Without `redis_url`, each process keeps its own signals (a breaker opened in one LiteLLM
worker is unknown to the next). With it, the shared breaker, the latency EMA, the probe
counters and the GPU readings live in Redis, under `tierwise:signals:*`; every write also
updates the process's own trackers, so that if Redis goes away the process goes on with
local state (and says so once). Reads go through a short local cache (`CACHE_S`), so a
decision costs at most one Redis round trip per signal and half second, not one per rule.

GPU readings: the freshest of this process's own and the shared one wins. A vLLM /metrics
reading (keyed by tier) describes a server every replica calls, so all replicas share it;
an NVML reading describes a card in one machine, so only the processes on that machine
share it (its Redis key names the host). Ages travel as wall-clock times: replicas on
several machines need synchronised clocks (NTP), as LiteLLM's own Redis cooldowns do.

Per-caller breakers (tierwise/faults.py) stay per process: they guard one caller's own
traffic, and a caller's requests seldom stick to one worker anyway.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from tierwise.config import TierwiseConfig
from tierwise.rules import Signals
from tierwise.signals.health import UNATTRIBUTED, HealthTracker
from tierwise.signals.latency import LatencyTracker
from tierwise.signals.vram import GpuReading, GpuState

log = logging.getLogger(__name__)

PREFIX = "tierwise:signals:"
CACHE_S = 0.5  # how stale a shared reading may be on the hot path
RETRY_S = 5.0  # after a Redis error, local state only for this long before trying again
TIMEOUT_S = 0.25  # per Redis call: a hung Redis must not stall routing

# Count a tier fault; open the shared breaker when the run is long enough and came from two
# callers (or an unattributed one). KEYS: run count, run callers, open flag, last error.
# ARGV: caller, max_failures, cooldown_ms, error. Returns 1 when it opened the breaker.
FAILURE_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3] * 4)
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[3] * 4)
redis.call('SET', KEYS[4], ARGV[4], 'PX', 3600000)
local diverse = redis.call('SISMEMBER', KEYS[2], '') == 1 or redis.call('SCARD', KEYS[2]) >= 2
if n >= tonumber(ARGV[2]) and diverse then
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
"""

# Fold one observation into the EMA (weight max(alpha, 1/(n+2)), as LatencyTracker does).
# KEYS: the tier's EMA hash. ARGV: ttft_ms, alpha, seed_ms. Returns the new EMA as a string.
EMA_SCRIPT = """
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or ARGV[3])
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local w = math.max(tonumber(ARGV[2]), 1 / (n + 2))
v = v + w * (tonumber(ARGV[1]) - v)
redis.call('HSET', KEYS[1], 'v', tostring(v), 'n', tostring(n + 1))
return tostring(v)
"""

# Store a GPU reading unless a fresher one is there already (another worker's).
# KEYS: the reading's hash. ARGV: taken at (epoch s), time to live (ms), then field, value...
GPU_SCRIPT = """
local at = tonumber(redis.call('HGET', KEYS[1], 'at') or '0')
if tonumber(ARGV[1]) < at then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'at', ARGV[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
GPU_FIELDS = ("free_gb", "total_gb", "kv_cache_usage", "waiting")


class RedisLink:
    """One Redis client with the fall-back rule: an error means local state for a while."""

    def __init__(self, url: str, clock: Callable[[], float] = time.monotonic) -> None:
        import redis

        self.url = url
        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self.client = redis.Redis.from_url(
            url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
        )
        self.failure = self.client.register_script(FAILURE_SCRIPT)
        self.ema = self.client.register_script(EMA_SCRIPT)
        self.gpu = self.client.register_script(GPU_SCRIPT)
        self._clock = clock
        self._down_until = 0.0
        self._down = False
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """(True, result), or (False, None) while Redis is unreachable."""
        if self._clock() < self._down_until:
            return False, None
        try:
            result = fn(*args, **kwargs)
        except self._errors as exc:
            with self._lock:
                self._down_until = self._clock() + RETRY_S
                if not self._down:
                    self._down = True
                    log.warning(
                        "tierwise: Redis at %s unreachable (%s); health and latency signals "
                        "are per process until it is back",
                        self.url,
                        exc,
                    )
            return False, None
        if self._down:
            with self._lock:
                if self._down:
                    self._down = False
                    log.warning("tierwise: Redis at %s is back; signals shared again", self.url)
        return True, result


class _Cache:
    """Values fetched from Redis, each kept for CACHE_S."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._values: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, fetch: Callable[[], tuple[bool, Any]]) -> tuple[bool, Any]:
        now = self._clock()
        with self._lock:
            hit = self._values.get(key)
        if hit is not None and now - hit[0] < CACHE_S:
            return True, hit[1]
        ok, value = fetch()
        if ok:
            with self._lock:
                self._values[key] = (now, value)
        return ok, value

    def forget(self, key: str) -> None:
        with self._lock:
            self._values.pop(key, None)


def _key(tier: str, what: str) -> str:
    return f"{PREFIX}{tier}:{what}"


class SharedHealth(HealthTracker):
    """The shared breaker in Redis; per-caller breakers and the fall-back stay local."""

    def __init__(self, link: RedisLink, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock)
        self.link = link
        self._cache = _Cache(clock)

    def record_success(self, tier: str, caller: str | None = None) -> None:
        super().record_success(tier, caller)
        self.link.call(self.link.client.delete, _key(tier, "run"), _key(tier, "callers"))

    def record_failure(
        self,
        tier: str,
        max_failures: int,
        cooldown_s: float,
        error: str = "",
        caller: str | None = None,
    ) -> bool:
        opened_here = super().record_failure(tier, max_failures, cooldown_s, error, caller)
        keys = [_key(tier, k) for k in ("run", "callers", "open", "error")]
        argv = [UNATTRIBUTED if caller is None else caller, max_failures, int(cooldown_s * 1000)]
        ok, opened = self.link.call(self.link.failure, keys=keys, args=[*argv, error[:200]])
        self._cache.forget(tier)
        return bool(opened) if ok else opened_here

    def shared_left(self, tier: str) -> float:
        ok, left_ms = self._cache.get(
            tier, lambda: self.link.call(self.link.client.pttl, _key(tier, "open"))
        )
        if not ok:
            return super().shared_left(tier)
        return max(0.0, float(left_ms or 0) / 1000)

    def last_error(self, tier: str) -> str:
        ok, error = self.link.call(self.link.client.get, _key(tier, "error"))
        if not ok or error is None:
            return super().last_error(tier)
        return bytes(error).decode(errors="replace")


class SharedLatency(LatencyTracker):
    """The EMA and probe counters in Redis; this process's own copy is the fall-back."""

    def __init__(self, link: RedisLink, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.link = link
        self._cache = _Cache(clock)

    def observe(self, tier: str, ttft_ms: float, alpha: float, seed_ms: float) -> float:
        local = super().observe(tier, ttft_ms, alpha, seed_ms)
        ok, value = self.link.call(
            self.link.ema, keys=[_key(tier, "ema")], args=[ttft_ms, alpha, seed_ms]
        )
        self._cache.forget(tier)
        return float(value) if ok else local

    def _shared(self, tier: str) -> tuple[bool, Any]:
        return self._cache.get(
            tier, lambda: self.link.call(self.link.client.hmget, _key(tier, "ema"), ["v", "n"])
        )

    def ema_ms(self, tier: str, seed_ms: float) -> float:
        ok, pair = self._shared(tier)
        if not ok:
            return super().ema_ms(tier, seed_ms)
        return float(pair[0]) if pair[0] is not None else seed_ms

    def samples(self, tier: str) -> int:
        ok, pair = self._shared(tier)
        if not ok:
            return super().samples(tier)
        return int(pair[1] or 0)

    def should_probe(self, tier: str, probe_every: int) -> bool:
        local = super().should_probe(tier, probe_every)
        ok, count = self.link.call(self.link.client.incr, _key(tier, "skipped"))
        return int(count) % probe_every == 0 if ok else local


class SharedGpu(GpuState):
    """GPU readings in Redis (see the module docstring for who shares which reading)."""

    def __init__(
        self,
        link: RedisLink,
        stale_after_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        host: str | None = None,
    ) -> None:
        super().__init__(stale_after_s, clock)
        self.link = link
        self._wall = wall
        self._host = host or socket.gethostname()
        self._cache = _Cache(clock)

    def _redis_key(self, key: str) -> str:
        where = f"{self._host}:{key}" if key.startswith("nvml:") else key
        return f"{PREFIX}gpu:{where}"

    def put(self, key: str, reading: GpuReading) -> None:
        super().put(key, reading)
        taken_at = self._wall() - (self.now() - reading.taken_at)
        pairs: list[Any] = []
        for name in GPU_FIELDS:
            value = getattr(reading, name)
            if value is not None:
                pairs += [name, repr(value)]
        ttl_ms = int(self.stale_after_s * 1000)
        self.link.call(
            self.link.gpu, keys=[self._redis_key(key)], args=[repr(taken_at), ttl_ms, *pairs]
        )
        self._cache.forget(key)

    def get(self, key: str) -> GpuReading | None:
        """The fresher of this process's reading and the shared one; None if both are stale."""
        own = super().get(key)
        ok, fields = self._cache.get(
            key, lambda: self.link.call(self.link.client.hgetall, self._redis_key(key))
        )
        shared = self._reading(fields) if ok and fields else None
        fresh = [
            r
            for r in (own, shared)
            if r is not None and self.now() - r.taken_at <= self.stale_after_s
        ]
        return max(fresh, key=lambda r: r.taken_at) if fresh else None

    def _reading(self, fields: dict[bytes, bytes]) -> GpuReading | None:
        values = {k.decode(): v.decode() for k, v in fields.items()}
        try:
            age = max(0.0, self._wall() - float(values.pop("at")))
            return GpuReading(
                taken_at=self.now() - age,
                free_gb=_float(values.get("free_gb")),
                total_gb=_float(values.get("total_gb")),
                kv_cache_usage=_float(values.get("kv_cache_usage")),
                waiting=None if "waiting" not in values else int(values["waiting"]),
            )
        except (KeyError, ValueError):
            return None  # not written by this version: ignore it


def _float(text: str | None) -> float | None:
    return None if text is None else float(text)


def signals_for(config: TierwiseConfig) -> Signals:
    """Shared signals when the config names a Redis, else this process's own."""
    if not config.redis_url:
        return Signals()
    link = RedisLink(config.redis_url)
    return Signals(latency=SharedLatency(link), health=SharedHealth(link), gpu=SharedGpu(link))
