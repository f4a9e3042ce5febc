"""A small OpenAI-compatible server standing in for an upstream LLM at the network edge.

Run: python -m tierwise.standin --port 8101 --name local
`tierwise up` starts one per tier that has no real model configured, so a fresh machine shows
routing working; the tests use it as every tier's upstream. Standard library only.

It answers /v1/chat/completions (plain and SSE streaming, usage, tool calls), /v1/models,
and a vLLM-style /metrics. Tests change its behaviour while it runs via POST /control
(time to first token, failures, metric values, per-prompt `rules`) and read what it
received from GET /requests.

Replies are deterministic: "[<name>] " followed by the words of the last user message, so a
test can tell which tier answered and what it was sent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_KEPT_REQUESTS = 1000


class StubState:
    def __init__(self, name: str, models: list[str]) -> None:
        self.name = name
        self.models = models
        self.ttft_ms = 0.0
        self.token_delay_ms = 0.0
        self.fail_status = 0  # non-zero: answer every chat request with this HTTP status
        self.fail_message = ""  # the error message of those answers (default: says who failed)
        self.fail_after_tokens = -1  # >= 0: crash mid-stream after this many tokens
        self.kv_cache_usage = 0.1
        self.waiting = 0
        self.reply: str | None = None  # fixed reply text instead of the echo
        # [{"contains": text, "reply"/"ttft_ms"/"fail_status": ...}]: the first rule whose
        # text is in any message of a request overrides those settings for that request.
        self.rules: list[dict[str, Any]] = []
        # The most recent requests (bounded: `tierwise up` may run for days).
        self.requests: deque[dict[str, Any]] = deque(maxlen=MAX_KEPT_REQUESTS)
        self.lock = threading.Lock()

    def control(self, changes: dict[str, Any]) -> None:
        with self.lock:
            for key, value in changes.items():
                if not hasattr(self, key) or key in {"requests", "lock", "name"}:
                    raise KeyError(key)
                setattr(self, key, value)


def _words(text: str) -> list[str]:
    parts = text.split()
    return [w + (" " if i < len(parts) - 1 else "") for i, w in enumerate(parts)] or [""]


def _rule_for(rules: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
    """The first rule whose `contains` text is in some message of the request, else {}."""
    texts = [str(m.get("content") or "") for m in body.get("messages") or []]
    for rule in rules:
        if any(str(rule.get("contains", "")) in text for text in texts):
            return rule
    return {}


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message (text parts joined), which a stand-in echoes."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


class JsonHandler(BaseHTTPRequestHandler):
    """Quiet HTTP/1.1 handler with JSON in and out: the base of the stand-in servers."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        return json.loads(raw or b"{}")


class Handler(JsonHandler):
    state: StubState

    def do_GET(self) -> None:
        state = self.state
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._json(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": m, "object": "model", "owned_by": state.name} for m in state.models
                    ],
                },
            )
        elif self.path == "/requests":
            with state.lock:
                self._json(200, list(state.requests))
        elif self.path == "/metrics":
            label = f'{{model_name="{state.models[0]}"}}'
            text = (
                "# TYPE vllm:gpu_cache_usage_perc gauge\n"
                f"vllm:gpu_cache_usage_perc{label} {state.kv_cache_usage}\n"
                "# TYPE vllm:num_requests_waiting gauge\n"
                f"vllm:num_requests_waiting{label} {state.waiting}\n"
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
        elif self.path == "/health":
            self._json(200, {"ok": True, "name": state.name})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        state = self.state
        if self.path == "/control":
            try:
                state.control(self._body())
            except KeyError as exc:
                self._json(400, {"error": f"unknown control key {exc}"})
                return
            self._json(200, {"ok": True})
            return
        if self.path == "/reset":
            with state.lock:
                state.requests.clear()
            self._json(200, {"ok": True})
            return
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        body = self._body()
        record: dict[str, Any] = {
            "body": body,
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }
        with state.lock:
            state.requests.append(record)
            ttft, fail, reply = state.ttft_ms, state.fail_status, state.reply
            rule = _rule_for(state.rules, body)
        ttft = rule.get("ttft_ms", ttft)
        fail = rule.get("fail_status", fail)
        reply = rule.get("reply", reply)
        if ttft:
            time.sleep(ttft / 1000)
        if fail:
            error = state.fail_message or f"{state.name} failing on purpose"
            self._json(fail, {"error": {"message": error, "type": "stub"}})
            return
        text = reply if reply is not None else f"[{state.name}] {last_user_text(body)}"
        model = body.get("model") or state.models[0]
        prompt_tokens = sum(
            len(str(m.get("content", "")).split()) for m in body.get("messages", [])
        )
        tool_call = None
        if body.get("tools") and "call tool" in last_user_text(body).lower():
            fn = body["tools"][0].get("function", {})
            tool_call = {
                "id": f"call_{uuid.uuid4().hex[:8]}",
                "type": "function",
                "function": {"name": fn.get("name", "tool"), "arguments": json.dumps({"q": "x"})},
            }
        if body.get("stream"):
            self._stream(body, text, model, prompt_tokens, tool_call, record)
        else:
            message: dict[str, Any] = {"role": "assistant", "content": None if tool_call else text}
            if tool_call:
                message["tool_calls"] = [tool_call]
            completion_tokens = len(text.split())
            self._json(
                200,
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": "tool_calls" if tool_call else "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                },
            )

    def _stream(
        self,
        body: dict[str, Any],
        text: str,
        model: str,
        prompt_tokens: int,
        tool_call: dict[str, Any] | None,
        record: dict[str, Any],
    ) -> None:
        state = self.state
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"

        def send(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> None:
            payload: dict[str, Any] = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage:
                payload["usage"] = usage
            self._chunk(f"data: {json.dumps(payload)}\n\n".encode())

        words = _words(text)
        try:
            send({"role": "assistant", "content": ""})
            if tool_call:
                send({"tool_calls": [{"index": 0, **tool_call}]})
            else:
                for i, word in enumerate(words):
                    if state.fail_after_tokens >= 0 and i >= state.fail_after_tokens:
                        self._crash()
                        return
                    if state.token_delay_ms:
                        time.sleep(state.token_delay_ms / 1000)
                    send({"content": word})
            send({}, finish="tool_calls" if tool_call else "stop")
            if (body.get("stream_options") or {}).get("include_usage"):
                send(
                    {},
                    usage={
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": len(words),
                        "total_tokens": prompt_tokens + len(words),
                    },
                )
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")  # the last chunk: the body is complete
        except (BrokenPipeError, ConnectionResetError):
            record["aborted"] = True  # the client hung up mid-stream (e.g. a cancel)

    def _chunk(self, data: bytes) -> None:
        """One chunk of a chunked body (an empty one ends the body)."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _crash(self) -> None:
        """Die mid-body as a crashed upstream does: the connection closes before the chunked
        body's last chunk, so the client's HTTP library reports an incomplete body (aiohttp:
        ClientPayloadError, httpx: RemoteProtocolError) rather than a clean end."""
        with contextlib.suppress(OSError):  # already gone
            self.connection.shutdown(socket.SHUT_RDWR)


def serve(port: int, name: str, models: list[str], host: str = "127.0.0.1") -> ThreadingHTTPServer:
    state = StubState(name, models)
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--name", default="stub")
    parser.add_argument("--model", action="append", default=[])
    args = parser.parse_args()
    server = serve(args.port, args.name, args.model or [f"{args.name}-model"], host=args.host)
    print(f"stub {args.name} listening on {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
