"""GPU memory readings: a pynvml daemon thread for local cards, a shared store for all sources.

The rule chain never calls NVML itself (that would put a driver call on the request path);
it reads the latest value a background thread left in `GpuState`. Remote servers (vLLM's
/metrics) feed the same store from their own pollers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)
GIB = 1024**3


@dataclass(frozen=True)
class GpuReading:
    """The latest capacity figures for one tier; any field may be unknown."""

    taken_at: float
    free_gb: float | None = None
    total_gb: float | None = None
    kv_cache_usage: float | None = None  # 0..1, from vLLM
    waiting: int | None = None  # requests queued, from vLLM


class GpuState:
    """Latest reading per key (an NVML device index or a tier name), with staleness."""

    def __init__(self, stale_after_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._readings: dict[str, GpuReading] = {}
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._clock()

    def put(self, key: str, reading: GpuReading) -> None:
        with self._lock:
            self._readings[key] = reading

    def get(self, key: str) -> GpuReading | None:
        """The reading for `key`, or None if there is none or it is stale."""
        with self._lock:
            reading = self._readings.get(key)
        if reading is None or self._clock() - reading.taken_at > self.stale_after_s:
            return None
        return reading

    def snapshot(self) -> dict[str, GpuReading]:
        with self._lock:
            return dict(self._readings)


def nvml_key(device: int) -> str:
    return f"nvml:{device}"


def load_nvml() -> ModuleType | None:
    """The pynvml module (from nvidia-ml-py), or None when it is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


class NvmlMonitor:
    """Daemon thread that polls free memory of a set of NVML devices into a GpuState.

    `nvml` is the pynvml module or any object with the same five functions; tests pass a
    fake. If NVML cannot start (no driver, no GPU), the monitor says why in `error` and
    the VRAM rule sees no readings, which leaves routing unchanged.
    """

    def __init__(
        self,
        state: GpuState,
        devices: Iterable[int],
        interval_s: float = 1.0,
        nvml: Any | None = None,
    ) -> None:
        self.state = state
        self.devices = sorted(set(devices))
        self.interval_s = interval_s
        self.nvml = nvml if nvml is not None else load_nvml()
        self.error = "" if self.nvml is not None else "pynvml not installed (tierwise[gpu])"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handles: dict[int, Any] = {}

    def start(self) -> bool:
        """Initialise NVML and start polling; False (with `error` set) when it cannot."""
        if self.nvml is None or not self.devices:
            return False
        try:
            self.nvml.nvmlInit()
            self._handles = {d: self.nvml.nvmlDeviceGetHandleByIndex(d) for d in self.devices}
        except Exception as exc:  # NVMLError has many subclasses; all mean "no readings"
            self.error = f"NVML unavailable: {exc}"
            log.warning("VRAM monitor off: %s", self.error)
            return False
        self.poll_once()
        self._thread = threading.Thread(target=self._run, name="tierwise-nvml", daemon=True)
        self._thread.start()
        return True

    def poll_once(self) -> None:
        if self.nvml is None:
            return
        for device, handle in self._handles.items():
            try:
                info = self.nvml.nvmlDeviceGetMemoryInfo(handle)
            except Exception as exc:
                self.error = f"reading device {device} failed: {exc}"
                continue
            self.state.put(
                nvml_key(device),
                GpuReading(
                    taken_at=self.state.now(),
                    free_gb=info.free / GIB,
                    total_gb=info.total / GIB,
                ),
            )

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s * 2 + 1)
        if self.nvml is not None and self._handles:
            try:
                self.nvml.nvmlShutdown()
            except Exception:
                log.debug("nvmlShutdown failed", exc_info=True)
            self._handles = {}
