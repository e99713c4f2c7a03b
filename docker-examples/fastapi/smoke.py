"""The image's smoke check: serve the app in this process on a free local port, then use it over HTTP.

    docker run --rm --entrypoint /opt/venv/bin/python IMAGE /app/smoke.py

Exits non-zero when an import fails or an answer is wrong; needs no network beyond the loopback.
"""

import json
import socket
import threading
import time
import urllib.request

import uvicorn
from app import app

listener = socket.socket()
listener.bind(("127.0.0.1", 0))  # a free port: two smoke checks at once must not collide
port = listener.getsockname()[1]
server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
thread.start()
deadline = time.monotonic() + 30
while not server.started:
    assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
    time.sleep(0.05)


def call(method: str, path: str, body: object = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


try:
    assert call("GET", "/health") == {"status": "ok"}
    assert call("PUT", "/items/1", {"name": "tea", "price": 2.5}) == {"name": "tea", "price": 2.5}
    assert call("GET", "/items/1") == {"name": "tea", "price": 2.5}
finally:
    server.should_exit = True
    thread.join(10)
print("smoke ok: /health, PUT and GET /items/1")
