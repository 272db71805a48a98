"""A small local OpenAI-compatible HTTP server for tests: no test calls a remote API.

``FakeOpenAI`` serves ``POST /v1/chat/completions`` and ``GET /v1/models`` in OpenAI's JSON shapes from a
``ThreadingHTTPServer`` on 127.0.0.1 (a free port) in a background thread, so the product code talks to
it through the real ``openai`` client::

    with FakeOpenAI() as server:                   # or the ``fake_openai`` fixture
        client = openai.OpenAI(base_url=server.base_url, api_key="test")
        ...
        server.completions                          # every chat request body, in arrival order
        server.fail_next(2, status=500)             # the next two chat requests answer 500

An answer is ``reply(request body)`` (by default the first line of the last user message, prefixed
``Summary of``); usage counts are ``prompt_tokens`` (fixed, or a quarter of the prompt's characters) and
the answer's words. Failures carry ``retry-after-ms: 1`` so the client's retries take no time, and
``x-request-id``. Import the fixture into a test module with ``from tests.openai_fake import fake_openai``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

#: Models listed by GET /v1/models.
MODELS = ("fake-summary-1", "fake-summary-2")

Reply = Callable[[dict[str, Any]], str]


def default_reply(body: dict[str, Any]) -> str:
    """``Summary of <first line of the last user message>.``"""
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    content = str(users[-1].get("content", "")) if users else ""
    first = next((line.strip() for line in content.splitlines() if line.strip()), "nothing")
    return f"Summary of {first}"


@dataclass
class _Behaviour:
    lock: threading.Lock = field(default_factory=threading.Lock)
    completions: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)  # statuses of the next failing answers
    reply: Reply = default_reply
    prompt_tokens: int | None = None  # None: a quarter of the prompt's characters


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # silence the per-request stderr line
        return

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:12]}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, kind: str) -> None:
        self._send(
            status,
            {"error": {"message": message, "type": kind, "param": None, "code": None}},
            {"retry-after-ms": "1"},
        )

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            self._error(404, f"no route {self.path}", "invalid_request_error")
            return
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "pulse-tests"} for m in MODELS]
        self._send(200, {"object": "list", "data": data})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"no route {self.path}", "invalid_request_error")
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._error(400, "body is not JSON", "invalid_request_error")
            return
        state = self.server.behaviour
        with state.lock:
            state.completions.append(body)
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
            failure = state.failures.pop(0) if state.failures else None
        if failure is not None:
            kind = "rate_limit_exceeded" if failure == 429 else "server_error"
            self._error(failure, f"fake failure {failure}", kind)
            return
        if not body.get("model") or not isinstance(body.get("messages"), list):
            self._error(400, "model and messages are required", "invalid_request_error")
            return
        self._send(200, self._completion(body, state))

    @staticmethod
    def _completion(body: dict[str, Any], state: _Behaviour) -> dict[str, Any]:
        answer = state.reply(body)
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body["messages"])
        prompt_tokens = state.prompt_tokens if state.prompt_tokens is not None else prompt_chars // 4 + 1
        completion_tokens = len(answer.split())
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    behaviour: _Behaviour


class FakeOpenAI:
    """The server in a background thread; a context manager (listens on 127.0.0.1, a free port)."""

    def __init__(self) -> None:
        self._behaviour = _Behaviour()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        if self._server is None:
            server = _Server(("127.0.0.1", 0), _Handler)
            server.behaviour = self._behaviour
            thread = threading.Thread(target=server.serve_forever, name="fake-openai", daemon=True)
            thread.start()
            self._server, self._thread = server, thread
        return self.base_url

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, what an ``openai.OpenAI(base_url=...)`` takes."""
        if self._server is None:
            raise RuntimeError("the fake OpenAI server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def completions(self) -> list[dict[str, Any]]:
        """Bodies of the chat completion requests received (failed ones included), oldest first."""
        with self._behaviour.lock:
            return list(self._behaviour.completions)

    @property
    def request_headers(self) -> list[dict[str, str]]:
        """Headers (lower-cased names) of those requests, in the same order."""
        with self._behaviour.lock:
            return list(self._behaviour.headers)

    def fail_next(self, count: int = 1, *, status: int = 500) -> None:
        """The next ``count`` chat requests answer ``status`` (500, 429...) in OpenAI's error shape."""
        with self._behaviour.lock:
            self._behaviour.failures.extend([status] * count)

    def answer_with(self, reply: Reply, *, prompt_tokens: int | None = None) -> None:
        """Answer chat requests with ``reply(body)``; ``prompt_tokens`` fixes the reported usage."""
        with self._behaviour.lock:
            self._behaviour.reply = reply
            self._behaviour.prompt_tokens = prompt_tokens

    def reset(self) -> None:
        """Forget the requests, pending failures and custom answers."""
        with self._behaviour.lock:
            self._behaviour.completions.clear()
            self._behaviour.headers.clear()
            self._behaviour.failures.clear()
            self._behaviour.reply = default_reply
            self._behaviour.prompt_tokens = None


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started fake OpenAI server, stopped after the test."""
    with FakeOpenAI() as server:
        yield server
