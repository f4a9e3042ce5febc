"""The router's view of an adaptation: any scorer's score, corrected by the current version.

Wraps whatever scorer the config built (the scorer itself is not touched). Each request's
own score, its sketch and the version used travel in `request.memo[ADAPT_NOTE]` into the
decision's notes, and from there into the decision log, which is what `tierwise adapt`
learns from. A version file that appears, changes or is rolled back is picked up within
`adapt.reload_s`; an unreadable one is logged and the previous version keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from tierwise.adapt.model import Adaptation, sketch_of
from tierwise.adapt.store import AdaptStore
from tierwise.request import ChatRequest
from tierwise.scoring.base import Band, Score, Scorer

log = logging.getLogger(__name__)

ADAPT_NOTE = "adapt"  # request.memo / Decision.notes key: {"raw", "sketch", "version", ...}
TENANTS_FOLLOWED = 4096  # tenants whose version pointer a process keeps watching


class AdaptedScorer(Scorer):
    """base.score(), then the current adaptation's correction (none: the score as it is).

    tenant_store: with `adapt.scope: tenant`, where a caller scope's own versions live; a
    caller with one is served it, every other caller the install-wide version.
    """

    def __init__(
        self,
        base: Scorer,
        store: AdaptStore,
        reload_s: float = 5.0,
        encoder: Any = None,
        tenant_store: Callable[[str], AdaptStore] | None = None,
    ) -> None:
        super().__init__(base.bands)
        self.base = base
        self.name = base.name
        self.store = store
        self.reload_s = reload_s
        self._encoder = encoder
        self._install = Follower(store, reload_s)
        self._tenant_store = tenant_store
        self._tenants: OrderedDict[str, Follower] = OrderedDict()
        self._lock = threading.Lock()

    def score(self, request: ChatRequest) -> Score:
        score = self.base.score(request)
        sketch = self._sketch(request.last_user_text)
        current = self.current(request.scope.key() if self._tenant_store else None)
        value = current.adjust(score.value, sketch) if current is not None else score.value
        version = current.version if current is not None else 0
        request.memo[ADAPT_NOTE] = {
            "raw": score.value,
            "sketch": sketch.hex() if sketch else None,
            "version": version,
        }
        if current is None:
            return score
        return Score(
            value=value,
            band=Band.of(value, self.bands),
            source=f"{score.source}+adapt-v{version}",
            drivers=score.drivers,
        )

    def current(self, tenant: str | None = None) -> Adaptation | None:
        """The version in service for a tenant (its own, else the install-wide one)."""
        if tenant and self._tenant_store is not None:
            with self._lock:
                follower = self._tenants.get(tenant)
                if follower is None:
                    follower = Follower(self._tenant_store(tenant), self.reload_s)
                    self._tenants[tenant] = follower
                    while len(self._tenants) > TENANTS_FOLLOWED:
                        self._tenants.popitem(last=False)
                self._tenants.move_to_end(tenant)
            own = follower.current()
            if own is not None:
                return own
        return self._install.current()

    def _sketch(self, text: str) -> bytes | None:
        encoder = self._encoder
        if encoder is None:
            from tierwise.static_encoder import StaticEncoderUnavailable, shared_static_encoder

            try:
                encoder = self._encoder = shared_static_encoder()
            except StaticEncoderUnavailable:
                self._encoder = False
                return None
        if encoder is False or not text:
            return None
        return sketch_of(encoder.encode([text])[0])


class Follower:
    """One store's version in service, re-read when the store's pointer changed."""

    def __init__(self, store: AdaptStore, reload_s: float) -> None:
        self.store = store
        self.reload_s = reload_s
        self._current: Adaptation | None = None
        self._stamp: float | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def current(self) -> Adaptation | None:
        now = time.monotonic()
        if self._stamp is not None and now - self._checked < self.reload_s:
            return self._current
        with self._lock:
            self._checked = now
            stamp = self.store.stamp()
            if stamp == self._stamp:
                return self._current
            try:
                self._current = self.store.current()
                log.info("tierwise adapt: %s: version %s", self.store.dir, self._current_number())
            except (OSError, ValueError) as exc:
                log.warning("tierwise adapt: keeping the previous version: %s", exc)
            self._stamp = stamp
            return self._current

    def _current_number(self) -> int:
        return self._current.version if self._current is not None else 0
