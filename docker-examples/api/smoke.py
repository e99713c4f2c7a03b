"""The image's smoke check: serve the app on a free local port, ask it a question, and reach libpq.

    docker run --rm --entrypoint /opt/venv/bin/python IMAGE /app/smoke.py

Exits non-zero when an import fails or an answer is wrong; needs no network and no database.
"""

import json
import socket
import tempfile
import threading
import time
import urllib.request

import psycopg2
import uvicorn
from app import app

listener = socket.socket()
listener.bind(("127.0.0.1", 0))  # a free port: two smoke checks at once must not collide
port = listener.getsockname()[1]
server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
thread.start()
deadline = time.monotonic() + 60
while not server.started:
    assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
    time.sleep(0.05)


def call(method: str, path: str, body: object = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


try:
    health = call("GET", "/health")
    assert health["status"] == "ok" and health["libpq"] > 0, health
    answer = call(
        "POST",
        "/ask",
        {
            "question": "Which layer keeps the bytes of a deleted file?",
            "passages": [
                "Multi-stage builds copy only the finished venv into the final image.",
                "A lower layer keeps the bytes of a file that a later layer deletes.",
                "CPU-only torch avoids gigabytes of CUDA libraries.",
            ],
        },
    )
    assert answer["answer"].startswith("A lower layer"), answer
finally:
    server.should_exit = True
    thread.join(10)

# libpq itself, without a server: a connection to a socket directory that does not exist fails inside libpq.
with tempfile.TemporaryDirectory() as empty:
    try:
        psycopg2.connect(host=empty, dbname="none", connect_timeout=5)
    except psycopg2.OperationalError as error:
        assert empty in str(error), error
    else:
        raise AssertionError("connected to a PostgreSQL server that does not exist")
print(f"smoke ok: torch {health['torch']}, libpq {health['libpq']}, answer scored {answer['score']}")
