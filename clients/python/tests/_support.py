"""Shared by the tests: the package on sys.path, the live server's URL, a stub
server for tests that need no rl-gym."""

from __future__ import annotations

import json
import os
import sys
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple

_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

from rl_gym_client import Client  # noqa: E402

#: The task most runs use, and a second one (both bundled with the server).
TASK = "hr__101_approve_leave_request"
TASK_2 = "hr__102_file_leave_on_behalf"
ORACLE = {"model": "oracle", "provider": "builtin"}
NOOP = {"model": "noop", "provider": "builtin"}

SKIP_MESSAGE = (
    "RL_GYM_URL is not set: these tests need a running rl-gym server "
    "(e.g. RL_GYM_URL=http://127.0.0.1:8080; `cargo test --test api python_client` "
    "starts one and sets it)"
)


def live_url() -> Optional[str]:
    return os.environ.get("RL_GYM_URL") or None


def requires_server(cls: type) -> type:
    """Skips a TestCase loudly when no server is given."""
    return unittest.skipUnless(live_url(), SKIP_MESSAGE)(cls)


def live_client(**kwargs: Any) -> Client:
    url = live_url()
    assert url, SKIP_MESSAGE
    kwargs.setdefault("token", os.environ.get("RL_GYM_API_TOKEN") or None)
    kwargs.setdefault("timeout", 30.0)
    return Client(url, **kwargs)


# ---------------------------------------------------------------------------------
# A stub HTTP server: a function of (method, path, headers, body) → (status, headers,
# body), recording every request.

Reply = Tuple[int, Dict[str, str], bytes]
Handler = Callable[[str, str, Dict[str, str], Any], Reply]


def json_reply(status: int, body: Any, headers: Optional[Dict[str, str]] = None) -> Reply:
    merged = {"Content-Type": "application/json"}
    merged.update(headers or {})
    return status, merged, json.dumps(body).encode("utf-8")


class StubServer:
    def __init__(self, handler: Handler) -> None:
        self.requests: List[Tuple[str, str, Dict[str, str], Any]] = []
        stub = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                stub.requests.append((self.command, self.path, headers, body))
                status, reply_headers, payload = handler(self.command, self.path, headers, body)
                self.send_response(status)
                for name, value in reply_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> "StubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
