"""One relay channel's state: the ordered, bounded buffer between a producer and a consumer.

No I/O: the server drives it. Sequence numbers come from the producer; the channel keeps
every message the consumer has not acknowledged, so a consumer can reconnect and resume
without loss, and drops replays (seq already held or acknowledged) so it never duplicates.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass
from enum import Enum

from relay.protocol import PRODUCER_LOST, DataMessage


@dataclass(frozen=True)
class Limits:
    buffer_messages: int = 1024
    buffer_bytes: int = 8 * 1024 * 1024


class Accept(Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # a replay of something already held or delivered
    IGNORED = "ignored"  # the channel already ended


class GapError(Exception):
    """The producer skipped sequence numbers: messages would be lost."""


class Channel:
    def __init__(self, channel_id: str, expiry: int, limits: Limits) -> None:
        self.id = channel_id
        self.expiry = expiry
        self.limits = limits
        self.retained: deque[DataMessage] = deque()
        self.retained_bytes = 0
        self.received = 0  # highest seq taken from the producer (held or skipped as acked)
        self.acked = 0  # highest seq the consumer confirmed
        self.terminal_seq: int | None = None
        self.cancelled = False
        self.lost_producer = False  # the relay ended the stream: its producer went away
        self.producer: object | None = None  # the live connection for each role, if any
        self.consumer: object | None = None
        self.consumer_seen = time.monotonic()  # last time a consumer was attached
        self.data_ready = asyncio.Event()
        self.space = asyncio.Event()
        self.space.set()

    @property
    def position(self) -> int:
        """The last sequence number that needs no resend: what a producer resumes after."""
        return max(self.received, self.acked)

    @property
    def finished(self) -> bool:
        return self.cancelled or (self.terminal_seq is not None and self.acked >= self.terminal_seq)

    def has_space(self) -> bool:
        return (
            len(self.retained) < self.limits.buffer_messages
            and self.retained_bytes < self.limits.buffer_bytes
        )

    def accept(self, message: DataMessage) -> Accept:
        """Take one producer message in order; raise GapError if sequence numbers were skipped."""
        if self.terminal_seq is not None or self.cancelled:
            return Accept.IGNORED
        if message.seq <= self.position:
            return Accept.DUPLICATE
        if message.seq != self.position + 1:
            raise GapError(
                f"expected seq {self.position + 1}, got {message.seq}: resend from the relay's "
                "resume point"
            )
        self.received = message.seq
        self.retained.append(message)
        self.retained_bytes += len(message.raw)
        if message.terminal:
            self.terminal_seq = message.seq
        self._refresh()
        return Accept.STORED

    def fail(self, text: str, reason: str) -> DataMessage | None:
        """End the stream with a relay-made error; None if it already ended.

        `reason` tells the consumer what it may still do: after `producer_lost` the task may
        well finish, and its result carries every event, so the seq of this message is the
        relay's own and not the producer's next one.
        """
        if self.terminal_seq is not None or self.cancelled:
            return None
        seq = self.position + 1
        raw = json.dumps(
            {"type": "error", "seq": seq, "source": "relay", "reason": reason, "message": text}
        )
        message = DataMessage(seq, "error", raw)
        self.received = seq
        self.retained.append(message)
        self.retained_bytes += len(raw)
        self.terminal_seq = seq
        self.lost_producer = reason == PRODUCER_LOST
        self._refresh()
        return message

    def ack(self, seq: int) -> None:
        """The consumer holds everything up to seq: release it from the buffer."""
        if seq <= self.acked:
            return
        self.acked = seq
        while self.retained and self.retained[0].seq <= seq:
            self.retained_bytes -= len(self.retained.popleft().raw)
        self._refresh()

    def after(self, seq: int) -> list[str]:
        """Texts of held messages with a sequence number above seq, in order."""
        if not self.retained or self.retained[-1].seq <= seq:
            return []
        start = max(0, seq + 1 - self.retained[0].seq)
        return [m.raw for m in itertools.islice(self.retained, start, None)]

    def cancel(self) -> None:
        self.cancelled = True
        self._refresh()

    def _refresh(self) -> None:
        self.data_ready.set()
        if self.has_space() or self.cancelled:
            self.space.set()
        else:
            self.space.clear()
