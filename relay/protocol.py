"""The relay's wire contract: channel tokens, URL paths and message shapes.

Shared by the relay server, the proxy-side consumer and (by copy of the same rules, since
it ships as standalone source) the HPC worker. No I/O here.

Tokens are stateless: ``v1.<expiry>.<mac>`` where mac = HMAC-SHA256(secret,
"<channel>|<role>|<expiry>"). The proxy mints one per role and channel; the relay checks it
before the WebSocket upgrade, so a relay restart needs no shared state to accept them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qs, urlsplit

Role = Literal["produce", "consume"]
ROLES: tuple[Role, ...] = ("produce", "consume")
TOKEN_VERSION = "v1"
MIN_SECRET_BYTES = 32
CHANNEL_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# One canonical token form: an expiry with no sign, no leading zero and at most 11 digits
# (unix seconds until the year 5138), and the unpadded base64url of a 32-byte HMAC.
EXPIRY_RE = re.compile(r"[1-9][0-9]{0,10}")
MAC_RE = re.compile(r"[A-Za-z0-9_-]{43}")
AFTER_RE = re.compile(r"0|[1-9][0-9]{0,17}")
MAX_DEPTH = 16  # nesting a real message needs: 5 (token -> delta -> tool_calls -> call -> function)
PATH_RE = re.compile(r"^/v1/channels/(?P<channel>[^/]+)/(?P<role>produce|consume)$")

# Messages a producer may send; the relay forwards them to the consumer unchanged.
DATA_TYPES = frozenset({"token", "usage", "error", "done"})
TERMINAL_TYPES = frozenset({"error", "done"})
# The `reason` of a relay-made error after which the task's result can still finish the answer.
PRODUCER_LOST = "producer_lost"
# WebSocket close codes the relay uses beside the standard ones.
CLOSE_CANCELLED = 4001  # the consumer cancelled or left: stop generating
CLOSE_REPLACED = 4002  # a newer connection took this role on the channel
CLOSE_EXPIRED = 4003  # the channel's token expired


class TokenError(Exception):
    """A bearer token that does not grant the requested channel and role."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # short label for metrics: missing, malformed, expired, bad_mac


class ProtocolError(Exception):
    """A message that breaks the relay protocol; the message says which rule."""


def check_secret(secret: bytes) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"the relay secret must be at least {MIN_SECRET_BYTES} bytes (got {len(secret)}); "
            'make one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    return secret


def _mac(secret: bytes, channel: str, role: str, expiry: int) -> str:
    digest = hmac.new(secret, f"{channel}|{role}|{expiry}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def mint_token(
    secret: bytes, channel: str, role: Role, ttl_s: float, now: float | None = None
) -> str:
    """A token that lets its bearer take `role` on `channel` until now + ttl_s."""
    if not CHANNEL_RE.match(channel):
        raise ValueError(f"channel id {channel!r} must be 8-64 of A-Z a-z 0-9 _ -")
    expiry = int((time.time() if now is None else now) + ttl_s)
    return f"{TOKEN_VERSION}.{expiry}.{_mac(secret, channel, role, expiry)}"


def verify_token(
    secret: bytes, token: str | None, channel: str, role: str, now: float | None = None
) -> int:
    """Return the token's expiry (unix seconds) or raise TokenError saying why it fails."""
    if not token:
        raise TokenError("missing", "send 'Authorization: Bearer <token>' for this channel")
    parts = token.split(".")
    if (
        len(parts) != 3
        or parts[0] != TOKEN_VERSION
        or not EXPIRY_RE.fullmatch(parts[1])
        or not MAC_RE.fullmatch(parts[2])
    ):
        raise TokenError("malformed", "the bearer token is not a relay token (v1.<expiry>.<mac>)")
    expiry = int(parts[1])
    expected = _mac(secret, channel, role, expiry)
    if not hmac.compare_digest(expected, parts[2]):
        raise TokenError("bad_mac", f"the token does not grant '{role}' on this channel")
    if expiry <= (time.time() if now is None else now):
        raise TokenError("expired", "the token has expired; request a new channel")
    return expiry


@dataclass(frozen=True)
class Target:
    """What a connection asks for: a channel, a role and (consumers) where to resume."""

    channel: str
    role: Role
    after: int = 0


def parse_target(path: str) -> Target:
    """Parse ``/v1/channels/<id>/<produce|consume>[?after=N]``; ValueError says what is wrong."""
    parts = urlsplit(path)
    match = PATH_RE.match(parts.path)
    if not match:
        raise ValueError("use /v1/channels/<channel>/produce or /v1/channels/<channel>/consume")
    channel = match["channel"]
    if not CHANNEL_RE.match(channel):
        raise ValueError("a channel id is 8-64 of A-Z a-z 0-9 _ -")
    after_values = parse_qs(parts.query).get("after", ["0"])
    if len(after_values) != 1 or not AFTER_RE.fullmatch(after_values[0]):
        raise ValueError("'after' must be one non-negative integer (the last sequence received)")
    role: Role = "produce" if match["role"] == "produce" else "consume"
    return Target(channel, role, int(after_values[0]))


def channel_path(channel: str, role: Role, after: int = 0) -> str:
    query = f"?after={after}" if after else ""
    return f"/v1/channels/{channel}/{role}{query}"


class DataMessage(NamedTuple):
    """One producer message: its sequence number, type and the original text. (A tuple:
    one is made per token, and a frozen dataclass costs several times more to build.)"""

    seq: int
    type: str
    raw: str

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES


def parse_producer_message(raw: str | bytes) -> DataMessage | None:
    """Validate a producer frame: a JSON object with a known type, a positive int seq and
    fields of the right shape (see check_event).

    Returns None for a heartbeat, which only proves the producer is alive.
    """
    data = _json_object(raw)
    assert isinstance(raw, str)  # _json_object refuses binary frames
    if data.get("type") == "heartbeat":
        return None
    check_event(data)
    return DataMessage(data["seq"], data["type"], raw)


def check_event(data: dict[str, Any]) -> None:
    """Raise ProtocolError unless `data` is an event the consumer can use as it is.

    The same rules hold for events read from the task's result, so both sources fail the
    same way on the same bad event.
    """
    kind = data.get("type")
    if kind not in DATA_TYPES:
        raise ProtocolError(f"unknown message type {kind!r}; allowed: {sorted(DATA_TYPES)}")
    seq = data.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq < 2**53:
        raise ProtocolError("every message needs an integer 'seq' from 1 to 2**53")
    if not _shallow(data) and _depth(data) > MAX_DEPTH:
        raise ProtocolError(f"a message may nest at most {MAX_DEPTH} levels deep")
    for key, kinds in _FIELDS[kind].items():
        if key in data and not isinstance(data[key], kinds):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise ProtocolError(f"'{key}' of a {kind} message must be {names}")
    delta = data.get("delta") or {}
    for key, kinds in _DELTA_FIELDS.items():
        if key in delta and not isinstance(delta[key], kinds):
            raise ProtocolError(f"'delta.{key}' has the wrong type")


_OPTIONAL_STR = (str, type(None))
_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "token": {"delta": (dict,)},
    "usage": {"usage": (dict,)},
    "error": {"message": _OPTIONAL_STR, "status": (int, type(None))},
    "done": {"finish_reason": _OPTIONAL_STR},
}
_DELTA_FIELDS: dict[str, tuple[type, ...]] = {
    "content": _OPTIONAL_STR,
    "reasoning_content": _OPTIONAL_STR,
    "tool_calls": (list, type(None)),
}


def _shallow(data: dict[str, Any]) -> bool:
    """True when no container nests below the second level: a plain token or done message.

    Checked per frame, so the common case skips the full walk of _depth.
    """
    for value in data.values():
        if isinstance(value, dict):
            for inner in value.values():
                if isinstance(inner, (dict, list)):
                    return False
        elif isinstance(value, list):
            return False
    return True


def _depth(value: Any) -> int:
    """How deeply containers nest in a parsed JSON value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                stack.extend((child, level + 1) for child in item)
    return deepest


def parse_control(raw: str | bytes) -> dict[str, Any]:
    """A consumer's ack/cancel or a relay's hello/cancel: a JSON object with a 'type'."""
    data = _json_object(raw)
    if not isinstance(data.get("type"), str):
        raise ProtocolError("a control message is a JSON object with a 'type'")
    return data


def _json_object(raw: str | bytes) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raise ProtocolError("send text frames holding JSON, not binary frames")
    try:
        data = _DECODER.decode(raw)
    except ValueError:
        raise ProtocolError("a frame is not valid JSON (or holds a number too large)") from None
    except RecursionError:
        raise ProtocolError(f"a message may nest at most {MAX_DEPTH} levels deep") from None
    if not isinstance(data, dict):
        raise ProtocolError("a message must be a JSON object")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder for every frame: json.loads(raw, parse_constant=...) builds a new one per call,
# which cost more than the parse itself.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)
