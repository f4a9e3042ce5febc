"""A small Ollama-compatible server standing in for a local Ollama at the network edge.

Run: python -m tests.servers.ollama_stub --port 8102 --name ollama --model llama3.2:1b
It answers GET /api/tags, /api/ps, /api/version and POST /api/chat (NDJSON streaming and
plain), the parts Open WebUI uses to list and call Ollama models. Like the OpenAI stand-in,
replies are "[<name>] " followed by the words of the last user message, GET /requests
returns what it received, and POST /control changes its behaviour (fail_status, ttft_ms).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from typing import Any

from tierwise.standin import JsonHandler, last_user_text

VERSION = "0.12.6"


class OllamaState:
    def __init__(self, name: str, models: list[str]) -> None:
        self.name = name
        self.models = models
        self.ttft_ms = 0.0
        self.fail_status = 0  # non-zero: answer every chat request with this HTTP status
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def control(self, changes: dict[str, Any]) -> None:
        with self.lock:
            for key, value in changes.items():
                if key not in {"ttft_ms", "fail_status"}:
                    raise KeyError(key)
                setattr(self, key, value)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _model_entry(model: str) -> dict[str, Any]:
    return {
        "name": model,
        "model": model,
        "modified_at": _now(),
        "size": 1_300_000_000,
        "digest": f"{abs(hash(model)):064x}"[:64],
        "details": {
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "1.2B",
            "quantization_level": "Q4_K_M",
        },
    }


class Handler(JsonHandler):
    state: OllamaState

    def do_GET(self) -> None:
        state = self.state
        path = self.path.rstrip("/")
        if path == "/api/tags":
            self._json(200, {"models": [_model_entry(m) for m in state.models]})
        elif path == "/api/ps":
            self._json(200, {"models": []})
        elif path == "/api/version":
            self._json(200, {"version": VERSION})
        elif path in ("", "/"):
            self._json(200, "Ollama is running")
        elif path == "/requests":
            with state.lock:
                self._json(200, list(state.requests))
        elif path == "/health":
            self._json(200, {"ok": True, "name": state.name})
        else:
            self._json(404, {"error": f"no route {self.path}"})

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        state = self.state
        path = self.path.rstrip("/")
        if path == "/control":
            try:
                state.control(self._body())
            except KeyError as exc:
                self._json(400, {"error": f"unknown control key {exc}"})
                return
            self._json(200, {"ok": True})
            return
        if path == "/reset":
            with state.lock:
                state.requests.clear()
            self._json(200, {"ok": True})
            return
        if path != "/api/chat":
            self._json(404, {"error": f"no route {self.path}"})
            return
        body = self._body()
        with state.lock:
            state.requests.append({"body": body})
            ttft, fail = state.ttft_ms, state.fail_status
        if ttft:
            time.sleep(ttft / 1000)
        if fail:
            self._json(fail, {"error": f"{state.name} failing on purpose"})
            return
        model = body.get("model") or state.models[0]
        words = f"[{state.name}] {last_user_text(body)}".split()
        pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        final = {
            "model": model,
            "created_at": _now(),
            "done": True,
            "done_reason": "stop",
            "total_duration": 1_000_000,
            "prompt_eval_count": prompt_tokens,
            "eval_count": len(pieces),
        }
        if body.get("stream", True):
            self._stream(model, pieces, final)
        else:
            final["message"] = {"role": "assistant", "content": "".join(pieces)}
            self._json(200, final)

    def _stream(self, model: str, pieces: list[str], final: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for piece in pieces:
                line = {
                    "model": model,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": piece},
                    "done": False,
                }
                self.wfile.write(json.dumps(line).encode() + b"\n")
                self.wfile.flush()
            final["message"] = {"role": "assistant", "content": ""}
            self.wfile.write(json.dumps(final).encode() + b"\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        self.close_connection = True


def serve(port: int, name: str, models: list[str], host: str = "127.0.0.1") -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"state": OllamaState(name, models)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="ollama")
    parser.add_argument("--model", action="append", default=[])
    args = parser.parse_args()
    server = serve(args.port, args.name, args.model or [f"{args.name}-model:latest"])
    print(f"ollama stub {args.name} listening on {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
