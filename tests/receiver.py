"""A real webhook receiver for the tests: an HTTP server on loopback that checks every
request's signature as docs/webhooks.md tells a receiver to, and can fail each event's first
attempts. Plus an endpoint that never answers (a listening socket nobody accepts on)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from domain.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify


@dataclass
class Received:
    event: dict[str, Any]
    attempt: int
    signed: bool


@dataclass
class Receiver:
    """What arrived: ``delivered`` in the order it was answered 2xx, ``refused`` the attempts
    answered 500 on purpose, ``forged`` requests whose signature did not verify."""

    fail_first: int = 0
    secret: str = ""
    delivered: list[Received] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    forged: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handle(self, headers: Any, body: bytes) -> int:
        signed = verify(self.secret, headers.get(SIGNATURE_HEADER, ""), body, now_s=time.time())
        event = json.loads(body)
        with self.lock:
            if not signed or headers.get(EVENT_ID_HEADER) != event["id"]:
                self.forged.append(event.get("id", "?"))
                return 400
            attempt = self.attempts.get(event["id"], 0) + 1
            self.attempts[event["id"]] = attempt
            if attempt <= self.fail_first:
                return 500
            self.delivered.append(Received(event, attempt, signed))
            return 204

    def of_transaction(self, transaction_id: str) -> list[Received]:
        with self.lock:
            return [
                r for r in self.delivered if r.event["data"]["transaction_id"] == transaction_id
            ]

    def wait_for(self, done: Callable[[], bool], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                with self.lock:
                    got = [
                        (r.event["type"], r.event["data"].get("transaction_id"))
                        for r in self.delivered
                    ]
                raise AssertionError(f"receiver at {self.url} waited in vain; it got {got}")
            time.sleep(0.1)


@contextmanager
def serving(receiver: Receiver) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(receiver.handle(self.headers, body))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def unanswering() -> Iterator[str]:
    """A URL whose connections are taken by the kernel and never answered."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hooks"
    finally:
        sock.close()
