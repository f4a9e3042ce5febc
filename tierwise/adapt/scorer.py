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
from typing import Any

from tierwise.adapt.model import Adaptation, sketch_of
from tierwise.adapt.store import AdaptStore
from tierwise.request import ChatRequest
from tierwise.scoring.base import Band, Score, Scorer

log = logging.getLogger(__name__)

ADAPT_NOTE = "adapt"  # request.memo / Decision.notes key: {"raw", "sketch", "version", ...}


class AdaptedScorer(Scorer):
    """base.score(), then the current adaptation's correction (none: the score as it is)."""

    def __init__(
        self, base: Scorer, store: AdaptStore, reload_s: float = 5.0, encoder: Any = None
    ) -> None:
        super().__init__(base.bands)
        self.base = base
        self.name = base.name
        self.store = store
        self.reload_s = reload_s
        self._encoder = encoder
        self._current: Adaptation | None = None
        self._stamp: float | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def score(self, request: ChatRequest) -> Score:
        score = self.base.score(request)
        sketch = self._sketch(request.last_user_text)
        current = self.current()
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

    def current(self) -> Adaptation | None:
        """The version in service, re-read when the store's pointer changed."""
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
                log.info("tierwise adapt: version %s in service", self.store.current_version())
            except (OSError, ValueError) as exc:
                log.warning("tierwise adapt: keeping the previous version: %s", exc)
            self._stamp = stamp
            return self._current

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
