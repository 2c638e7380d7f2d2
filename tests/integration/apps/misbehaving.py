"""Servers that misbehave, for the --serve lifecycle tests (standard library only).

python misbehaving.py PORT never-ready | die-after N | ignore-sigterm | not-found
"""

import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, mode = int(sys.argv[1]), sys.argv[2]
served = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        global served
        served += 1
        if mode == "die-after" and served > int(sys.argv[3]):
            os._exit(7)  # dies under load
        status = 404 if mode == "not-found" or self.path.startswith("/nope") else 200
        body = b"ok"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


if mode == "never-ready":
    time.sleep(600)  # never listens
if mode == "ignore-sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
