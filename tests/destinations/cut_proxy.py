"""A TCP proxy to a broker in a process of its own, so a test can make the broker go away mid-run:
once more than `limit` bytes, or more than `events` change events (counted by their envelope's
`type`), went from clients to the broker, it forwards what came before and exits, and every
connection through it drops at once, as when the broker's host dies. Nothing of it lives in the
test's process (no thread left holding sockets for later tests).

    python -m tests.destinations.cut_proxy <broker port> <limit bytes|-> <events|-> <own port|0>
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

CHUNK = 65536
MARK = b"dev.activation.change"  # once in every event's payload, whatever the broker's framing


class Proxy:
    def __init__(self, target: int, limit: int | None, events: int | None):
        self.target, self.limit, self.events = target, limit, events
        self.sent, self.seen, self.tail = 0, 0, b""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        await asyncio.gather(self.pipe(reader, up_writer, True), self.pipe(up_reader, writer, False))

    def cut_at(self, data: bytes) -> int | None:
        """Where in `data` the broker goes away, or None."""
        if self.limit is not None and self.sent + len(data) > self.limit:
            return self.limit - self.sent
        if self.events is not None:
            seen, start, joined = self.seen, 0, self.tail + data
            while (found := joined.find(MARK, start)) >= 0:
                seen, start = seen + 1, found + 1
                if seen > self.events:  # the next event goes out half
                    return max(found - len(self.tail), 0)
            self.seen, self.tail = seen, joined[-len(MARK) + 1 :]
        return None

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, to_broker: bool) -> None:
        try:
            while data := await reader.read(CHUNK):
                if to_broker:
                    cut = self.cut_at(data)
                    if cut is not None:
                        writer.write(data[:cut])  # the broker got this much of it
                        await writer.drain()
                        os._exit(0)  # then it is gone: no goodbye
                    self.sent += len(data)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


async def serve(target: int, limit: int | None, events: int | None, port: int) -> None:
    server = await asyncio.start_server(Proxy(target, limit, events).handle, "127.0.0.1", port)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class CutProxy:
    """The proxy's process, from the test's side: `port` to connect to, `gone` once it exited."""

    def __init__(self, target: int, limit: int | None = None, *, events: int | None = None, port: int = 0):
        optional = [str(v) if v is not None else "-" for v in (limit, events)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.destinations.cut_proxy", str(target), *optional, str(port)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],  # the repository: `tests` importable
        )
        self.port = int(self.process.stdout.readline())

    @property
    def gone(self) -> bool:
        return self.process.poll() is not None

    def close(self) -> None:
        if not self.gone:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()

    def __enter__(self) -> CutProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    target, limit, events, port = sys.argv[1:5]
    optional = [None if v == "-" else int(v) for v in (limit, events)]
    asyncio.run(serve(int(target), *optional, int(port)))
