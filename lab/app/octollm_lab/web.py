"""HTTP server, router and request metrics shared by every lab service.

| variable | default | meaning |
|---|---|---|
| BIND_HOST | 127.0.0.1 | address to listen on (the lab uses host networking) |

The server is a ThreadingHTTPServer whose socket has SO_REUSEPORT, so several replicas
of one service can share a port; the kernel spreads connections among them. Every
service gets GET /metrics (Prometheus text, with `http_request_duration_seconds` and
`http_requests_total` by service, endpoint, method, status, plus the default `process_*`
collectors) and the fault switches of debug.py. SIGTERM and SIGINT stop the server
gracefully: in-flight requests finish, then the shutdown hooks run. With LAB_ENDPOINTS=seed (common.py) the
debug endpoints are not served: SIGUSR1 starts the memory leak instead (LEAK_SIGNAL_MB_PER_SECOND, default 16), and
METRICS_PREFIX renames the request metrics.
"""

import json
import re
import signal
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

from . import debug
from .common import Logger, env_float, env_str, metric_name, seed_endpoints_only

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LABELS = ["service", "endpoint", "method", "status"]
REQUEST_DURATION = Histogram(metric_name("http_request_duration_seconds"), "HTTP request duration",
                             LABELS, buckets=BUCKETS)
REQUESTS_TOTAL = Counter(metric_name("http_requests_total"), "HTTP requests served", LABELS)


class HttpError(Exception):
    def __init__(self, status, message, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


class Request:
    def __init__(self, method, path, query, headers, body, client):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.client = client
        self.params = {}

    def json(self):
        if not self.body:
            return {}
        try:
            data = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(400, f"invalid JSON body: {exc}") from exc
        if not isinstance(data, dict):
            raise HttpError(400, "JSON body must be an object")
        return data


class Response:
    def __init__(self, body=None, status=200, headers=None, content_type=None):
        self.body = body
        self.status = status
        self.headers = dict(headers or {})
        self.content_type = content_type

    def encode(self):
        if isinstance(self.body, (bytes, bytearray)):
            return bytes(self.body), self.content_type or "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode("utf-8"), self.content_type or "text/plain; charset=utf-8"
        payload = json.dumps(self.body, default=json_default).encode("utf-8")
        return payload, self.content_type or "application/json"


def json_default(value):
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def as_response(result):
    if isinstance(result, Response):
        return result
    if isinstance(result, tuple):
        status, body = result
        return Response(body, status)
    return Response(result)


class Router:
    """Method + path pattern with `{name}` parameters."""

    def __init__(self):
        self.routes = []

    def add(self, method, pattern, handler):
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$"
        self.routes.append((method.upper(), pattern, re.compile(regex), handler))

    def match(self, method, path):
        """Return (handler, params, pattern); raise 404 or 405."""
        allowed = False
        for route_method, pattern, regex, handler in self.routes:
            found = regex.match(path)
            if found:
                if route_method == method:
                    return handler, found.groupdict(), pattern
                allowed = True
        if allowed:
            raise HttpError(405, "method not allowed")
        raise HttpError(404, "not found")


class ReusePortHTTPServer(ThreadingHTTPServer):
    # Non-daemon threads joined on close: requests in flight finish on SIGTERM.
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 128

    def server_bind(self):
        # Several replicas may listen on one port under host networking.
        if hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # TCPServer's bind, not HTTPServer's: that one resolves the FQDN, which can hang.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class App:
    def __init__(self, service, log=None):
        self.service = service
        self.log = log or Logger(service)
        self.router = Router()
        self.leaker = debug.MemoryLeaker(self.log)
        self.delays = debug.DelayTable()
        self.shutdown_hooks = []
        self.signal_hooks = {}
        self.server = None
        self.add("GET", "/metrics", self._metrics)
        if seed_endpoints_only():
            # the lab's leak switch without an endpoint: a signal (lab/ctl's oom fault sends it)
            self.signal_hooks[signal.SIGUSR1] = lambda: self.leaker.configure(
                mb_per_second=env_float("LEAK_SIGNAL_MB_PER_SECOND", 16), enabled=True)
            return
        self.add("POST", "/debug/leak", self._debug_leak)
        self.add("GET", "/debug/memory", lambda req: debug.memory_report(self.service, self.leaker))
        self.add("GET", "/debug/delay", lambda req: {"delays_ms": self.delays.as_dict()})
        self.add("POST", "/debug/delay", self._debug_delay)

    def add(self, method, pattern, handler):
        self.router.add(method, pattern, handler)

    def route(self, method, pattern):
        def register(handler):
            self.add(method, pattern, handler)
            return handler
        return register

    def _metrics(self, request):
        return Response(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)

    def _debug_leak(self, request):
        body = request.json()
        return self.leaker.configure(mb_per_second=body.get("mb_per_second"),
                                     enabled=body.get("enabled", True), clear=body.get("clear", False))

    def _debug_delay(self, request):
        body = request.json()
        target = body.get("target")
        if not target:
            raise HttpError(400, "target is required")
        self.delays.set(target, body.get("ms", 0))
        self.log.warning("delay configured", target=target, ms=body.get("ms", 0))
        return {"delays_ms": self.delays.as_dict()}

    def dispatch(self, handler):
        started = time.perf_counter()
        pattern = "unmatched"
        try:
            url = urlsplit(handler.path)
            length = int(handler.headers.get("Content-Length") or 0)
            body = handler.rfile.read(length) if length > 0 else b""
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            request = Request(handler.command, url.path, query, handler.headers, body,
                              handler.client_address[0])
            func, request.params, pattern = self.router.match(handler.command, url.path)
            response = as_response(func(request))
        except HttpError as exc:
            response = Response(dict({"error": exc.message}, **exc.extra), exc.status)
        except Exception as exc:  # one bad request must not kill the server
            self.log.error("request failed", method=handler.command, path=handler.path,
                           error=f"{type(exc).__name__}: {exc}")
            response = Response({"error": "internal error"}, 500)
        payload, content_type = response.encode()
        try:
            handler.send_response(response.status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers.items():
                handler.send_header(name, str(value))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout); nothing to answer
        labels = (self.service, pattern, handler.command, str(response.status))
        REQUEST_DURATION.labels(*labels).observe(time.perf_counter() - started)
        REQUESTS_TOTAL.labels(*labels).inc()

    def make_server(self, host, port):
        app = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "octollm-lab"

            def do_GET(self):
                app.dispatch(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

            def log_message(self, fmt, *args):
                app.log.debug("http access", client=self.client_address[0], line=fmt % args)

        self.server = ReusePortHTTPServer((host, port), Handler)
        return self.server

    def start_in_thread(self, host="127.0.0.1", port=0):
        """Serve in a daemon thread (tests); returns the bound port."""
        server = self.make_server(host, port)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server.server_address[1]

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def serve(self, port, host=None):
        """Serve until SIGTERM/SIGINT, then run the shutdown hooks."""
        host = host or env_str("BIND_HOST", "127.0.0.1")
        debug.start_from_env(self.leaker, self.delays)
        server = self.make_server(host, port)

        def on_stop(signum, frame):
            self.log.info("shutting down", signal=signal.Signals(signum).name)
            # shutdown() waits for serve_forever to return: call it off the main thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        for signum, hook in self.signal_hooks.items():
            signal.signal(signum, lambda num, frame, hook=hook: hook())
        self.log.info("listening", host=host, port=server.server_address[1])
        try:
            server.serve_forever(poll_interval=0.5)
        finally:
            server.server_close()
            for hook in self.shutdown_hooks:
                try:
                    hook()
                except Exception as exc:
                    self.log.warning("shutdown hook failed", error=exc)
            self.log.info("stopped")
