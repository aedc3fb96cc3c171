"""A real HTTP server on 127.0.0.1, in a background thread of the test process, serving in-memory files
with switchable faults — for download tests (no mocks of the network stack).

    with FileServer() as server:
        url = server.add("/model.pt", data, drop_at=5000)   # the first response dies after byte 5000
        ...
        assert server.count("/model.pt") == 2
        assert server.requests[-1].range == "bytes=5000-"

Faults (per file): `drop_at` closes the connection once the response reaches that file offset (for the
first `drop_times` responses); `corrupt_at` flips the byte at that offset in every response; `fail_status`
answers the first `fail_times` requests with that status; `delay` sleeps per 64 KiB chunk (to keep a
transfer going while another process starts); `ranges=False` ignores Range headers; `redirect_to` answers
every request with a 302 to that URL; `headers` are sent with every 200/206 answer (e.g. Content-Type);
`length` is the Content-Length sent instead of the true one (None: none at all, the body ends when the
connection closes); `trailing` more bytes (zeros) follow the data, or stop sooner if the client hangs up.
Unknown paths get 404.

The other half of "no network" is `offline_mmgen_command(...)`: the real `mmgen` under an audit hook that
reports every socket operation the process performed, to prove a command opened no socket at all.
"""

from __future__ import annotations

import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_CHUNK = 64 * 1024
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
SOCKETS_NONE = "socket events: []"  # what a process that never touched the network prints at exit

# Python raises an audit event for every socket created, bound, connected or resolved (socket.__new__,
# socket.bind, socket.connect, socket.getaddrinfo, ...); the hook records them and prints them at exit.
_AUDITED_MMGEN = """
import atexit, sys
events = []
sys.addaudithook(lambda event, args: events.append(event) if event.startswith("socket.") else None)
atexit.register(lambda: print(f"socket events: {events}", file=sys.stderr))
from mmgen.cli import main
sys.argv[0] = "mmgen"
main()
"""


def offline_mmgen_command(*args: str) -> list[str]:
    """argv for `mmgen ARGS` that ends its stderr with `socket events: [...]` (SOCKETS_NONE when none)."""
    return [sys.executable, "-c", _AUDITED_MMGEN, *map(str, args)]


@dataclass
class Served:
    data: bytes
    drop_at: int | None = None
    drop_times: int = 1
    corrupt_at: int | None = None
    fail_status: int | None = None
    fail_times: int = 0
    delay: float = 0.0
    ranges: bool = True
    redirect_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    length: int | None | str = "true"
    trailing: int = 0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None  # the Range header as sent, if any
    status: int  # what the server answered


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-body (a capped or interrupted download) is part of the story, not an error to
    print a traceback for; anything else still is."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FileServer:
    """Threaded HTTP/1.0 server on an ephemeral port; use as a context manager."""

    def __init__(self):
        self.files: dict[str, Served] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, path: str, data: bytes, **faults) -> str:
        """Serve `data` at `path` with the given faults; returns its URL."""
        self.files[path] = Served(data, **faults)
        return self.base_url + path

    def count(self, path: str) -> int:
        """Requests received for `path` so far."""
        with self._lock:
            return sum(r.path == path for r in self.requests)

    def _log(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _take(self, served: Served, fault: str) -> bool:
        """Consume one use of a counted fault ('fail' or 'drop'); True if it applies to this response."""
        with self._lock:
            left = getattr(served, f"{fault}_times")
            if left <= 0:
                return False
            setattr(served, f"{fault}_times", left - 1)
            return True


def _handler_for(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # keep test output clean
            pass

        def do_GET(self):
            self._respond(body=True)

        def do_HEAD(self):
            self._respond(body=False)

        def _respond(self, body: bool) -> None:
            served = server.files.get(self.path)
            asked = self.headers.get("Range")
            status = self._status(served, asked)
            server._log(Request(self.command, self.path, asked, status))
            if status == 302:
                self.send_response(status)
                self.send_header("Location", served.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if status >= 400:
                self.send_response(status)
                if status == 416:
                    self.send_header("Content-Range", f"bytes */{len(served.data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data, start = served.data, 0
            end = len(data)
            match = _RANGE.fullmatch(asked or "")
            if status == 206:
                start = int(match[1])
                end = min(int(match[2]) + 1, len(data)) if match[2] else len(data)
            self.send_response(status)
            length = end - start if served.length == "true" else served.length
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes" if served.ranges else "none")
            for name, value in served.headers.items():
                self.send_header(name, value)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            self.end_headers()
            if body:
                self._send_body(served, start, end)

        def _status(self, served: Served | None, asked: str | None) -> int:
            if served is None:
                return 404
            if served.redirect_to is not None:
                return 302
            if served.fail_status is not None and server._take(served, "fail"):
                return served.fail_status
            match = _RANGE.fullmatch(asked or "")
            if not served.ranges or match is None:
                return 200
            return 416 if int(match[1]) >= len(served.data) else 206

        def _send_body(self, served: Served, start: int, end: int) -> None:
            drop = served.drop_at if served.drop_at is not None and start < served.drop_at < end else None
            if drop is not None and not server._take(served, "drop"):
                drop = None
            offset = start
            while offset < (drop if drop is not None else end):
                stop = min(offset + _CHUNK, drop if drop is not None else end)
                chunk = bytearray(served.data[offset:stop])
                if served.corrupt_at is not None and offset <= served.corrupt_at < stop:
                    chunk[served.corrupt_at - offset] ^= 0xFF
                self.wfile.write(chunk)
                offset = stop
                if served.delay:
                    time.sleep(served.delay)
            for _ in range(0, served.trailing, _CHUNK):
                try:
                    self.wfile.write(bytes(_CHUNK))
                except OSError:  # the client hung up
                    return
            if drop is not None:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)  # mid-body: the client sees a broken transfer
                self.close_connection = True

    return Handler
