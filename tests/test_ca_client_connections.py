"""The service's CA client over a connection the CA closes under it.

Seen in CI (test_races, PostgreSQL): a card check answered 503 "OCSP ... unreachable: [Errno 104]
Connection reset by peer". The client had kept an idle connection as long as uvicorn does (5 s) and
sent its next question on it just as the CA closed it. Here a real socket server answers one
request per connection and then resets the connection (SO_LINGER 0) when the next request comes.
"""
from __future__ import annotations

import json
import socket
import struct
import threading

import pytest

from jpki_service.adapters.ca_client import CAClient, CARefused

_NOT_FOUND = json.dumps({"type": "https://jpki-mock.invalid/problems/unknown-certificate",
                         "title": "Unknown certificate", "status": 404}).encode()


def _read_request(connection: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return b""
        data += chunk
    return data


class OneAnswerPerConnection:
    """Answers the first request of each connection (keep-alive), resets the connection at the second."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self.resets = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one_connection, args=(connection,), daemon=True).start()

    def _one_connection(self, connection: socket.socket) -> None:
        with connection:
            if not _read_request(connection):
                return
            connection.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/problem+json\r\n"
                               b"Content-Length: %d\r\n\r\n%s" % (len(_NOT_FOUND), _NOT_FOUND))
            if _read_request(connection):
                self.resets += 1
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def resetting_ca():
    server = OneAnswerPerConnection()
    yield server
    server.close()


def test_a_connection_reset_under_a_kept_connection_is_asked_again_on_a_new_one(resetting_ca):
    client = CAClient(resetting_ca.url, token="t")
    try:
        for _ in range(3):
            with pytest.raises(CARefused) as refused:
                client.certificate("1")
            assert refused.value.status == 404
    finally:
        client.close()
    # Each request after the first met a reset on the kept connection and was answered on a new one.
    assert resetting_ca.resets == 2
    assert resetting_ca.connections == 3
