"""A loopback TCP relay that caps the bandwidth of each connection, as links do where
one connection is throttled (a CDN's per-connection limit, a long fat pipe with a small
window): a client that opens several connections gets several times the rate.

It relays bytes and knows nothing of HTTP, so any client goes through it the same way
(contentstore, skopeo, curl), keep-alive and all. Each direction of each connection is
held to ``--rate`` bytes a second on average (with at most ``--burst`` bytes ahead).

    python benchmarks/throttle.py --upstream 127.0.0.1:5000 --rate 20000000 [--port 0]

prints the port it listens on, then relays until it is terminated. Also usable in a
process: ``Throttle(upstream, rate).start()``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time

PIECE = 16 * 1024


class Throttle:
    """Listens on ``host:port`` (0: a free one) and relays each connection to ``upstream``."""

    def __init__(self, upstream: tuple[str, int], rate: float, host: str = "127.0.0.1", port: int = 0,
                 burst: int = 64 * 1024):
        self.upstream = upstream
        self.rate = rate
        self.burst = burst
        self.listener = socket.create_server((host, port), reuse_port=False)
        self.host, self.port = self.listener.getsockname()[:2]
        self._stopped = threading.Event()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "Throttle":
        threading.Thread(target=self.serve, daemon=True, name="throttle").start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self.listener.close()

    def serve(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(client,), daemon=True).start()

    def _connection(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(None)
        done = threading.Barrier(2, action=lambda: (client.close(), upstream.close()))
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink, done), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, done: threading.Barrier) -> None:
        """Copy ``source`` to ``sink`` at most at ``rate`` bytes a second."""
        started = time.monotonic()
        sent = 0
        buffer = bytearray(PIECE)
        view = memoryview(buffer)
        try:
            while True:
                ahead = (sent - self.burst) / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
                n = source.recv_into(buffer)
                if not n:
                    break
                sink.sendall(view[:n])
                sent += n
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            try:
                done.wait(timeout=600)
            except threading.BrokenBarrierError:
                pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="HOST:PORT to relay to")
    parser.add_argument("--rate", type=float, required=True, help="bytes a second, each connection and direction")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    throttle = Throttle((host, int(port)), args.rate, args.host, args.port)
    print(throttle.port, flush=True)
    throttle.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
