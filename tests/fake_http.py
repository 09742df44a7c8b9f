"""What the tests' fake HTTP servers share: a quiet HTTP/1.1 handler that reads a JSON body, and a threaded
server on a free port of 127.0.0.1 used as a context manager. Each fake (the scripted OpenAI server, the judge,
the fault injector) subclasses both and keeps only its own answers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def json_body(self):
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def reply(self, code, data):
        """Answer `code` with `data` as a JSON body."""
        raw = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


class LocalServer:
    """`with Sub(...) as s:` serves `handler` at `s.url` (`http://127.0.0.1:PORT/v1`) until the block ends."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], poll_interval: float = 0.5):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": poll_interval},
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
