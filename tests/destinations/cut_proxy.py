"""A TCP proxy to a broker in a process of its own, so a test can make the broker go away mid-run:
once more than `limit` bytes went from clients to the broker, the process exits and every
connection through it drops at once, as when the broker's host dies. Nothing of it lives in the
test's process (no thread left holding sockets for later tests).

    python -m tests.destinations.cut_proxy <broker port> [<limit bytes>]   # prints its own port
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

CHUNK = 65536


class Proxy:
    def __init__(self, target: int, limit: int | None):
        self.target, self.limit, self.sent = target, limit, 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        await asyncio.gather(self.pipe(reader, up_writer, True), self.pipe(up_reader, writer, False))

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, to_broker: bool) -> None:
        try:
            while data := await reader.read(CHUNK):
                if to_broker and self.limit is not None and self.sent + len(data) > self.limit:
                    writer.write(data[: self.limit - self.sent])  # the broker got this much of it
                    await writer.drain()
                    os._exit(0)  # then it is gone: no goodbye
                self.sent += len(data) if to_broker else 0
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


async def serve(target: int, limit: int | None) -> None:
    server = await asyncio.start_server(Proxy(target, limit).handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class CutProxy:
    """The proxy's process, from the test's side: `port` to connect to, `gone` once it exited."""

    def __init__(self, target: int, limit: int | None = None):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.destinations.cut_proxy", str(target), str(limit or "")],
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
    port, limit = int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else ""
    asyncio.run(serve(port, int(limit) if limit else None))
