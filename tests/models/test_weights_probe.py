"""The pretrained-weights probe asks the hub the way huggingface_hub will download: its configured
endpoint (HF_ENDPOINT), through its HTTP session (so HTTPS_PROXY applies), never a raw socket."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from harness.models import weights


class OneShotServer:
    """A local TCP server answering every connection with ``reply`` and keeping the request lines."""

    def __init__(self, reply: bytes):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        self.reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(4096)
                self.requests.append(data.decode(errors="replace").splitlines()[0] if data else "")
                conn.sendall(self.reply)

    def close(self) -> None:
        self.sock.close()


def _reset_hub_session() -> None:
    """huggingface_hub keeps one HTTP client per process; proxies are read when it is created."""
    from huggingface_hub import utils

    reset = getattr(utils, "close_session", None) or getattr(utils, "reset_sessions", None)
    if reset is not None:
        reset()


@pytest.fixture
def hub_env(monkeypatch) -> Iterator[pytest.MonkeyPatch]:
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    _reset_hub_session()
    yield monkeypatch
    _reset_hub_session()


def probe_through(server: OneShotServer, *, timeout: float = 5) -> bool:
    try:
        return weights.hub_reachable(timeout=timeout)
    finally:
        server.close()


def test_probe_asks_the_configured_endpoint(hub_env):
    from huggingface_hub import constants

    server = OneShotServer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    hub_env.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.port}")  # what HF_ENDPOINT sets
    assert probe_through(server) is True, "any HTTP answer means the hub (mirror) is there"
    assert server.requests and server.requests[0].startswith("HEAD / HTTP/1.1")


def test_probe_goes_through_the_https_proxy(hub_env):
    from huggingface_hub import constants

    proxy = OneShotServer(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    hub_env.setattr(constants, "ENDPOINT", "https://huggingface.co")
    hub_env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    _reset_hub_session()
    assert probe_through(proxy) is False, "a proxy that refuses the tunnel: not reachable"
    assert proxy.requests and proxy.requests[0].startswith("CONNECT huggingface.co:443")


def test_probe_is_off_when_the_hub_is_offline(hub_env):
    from huggingface_hub import constants

    server = OneShotServer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    hub_env.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.port}")
    hub_env.setattr(constants, "HF_HUB_OFFLINE", True)
    assert probe_through(server) is False
    assert server.requests == [], "HF_HUB_OFFLINE: no request at all"
