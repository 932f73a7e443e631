"""A platform that is slow to accept: ``202`` after a delay during the first seconds, then at once.

Run as ``python bench/_slow_platform.py PORT_FILE DELAY_S SLOW_FOR_S``: an asyncio HTTP/1.1
server on 127.0.0.1 (free port, written to PORT_FILE) answering every POST like OpenWhisk's
non-blocking invoke (``202 {"activationId": ...}``); from its first request on, for
``SLOW_FOR_S`` seconds, each answer waits ``DELAY_S`` (a cold-start storm, an overloaded
controller), without holding other connections back.  Keep-alive, one request at a time per
connection (as the loader sends them).  Stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import time
from pathlib import Path


async def main(port_file: Path, delay_s: float, slow_for_s: float) -> None:
    first = [None]
    counter = itertools.count()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                now = time.monotonic()
                if first[0] is None:
                    first[0] = now
                if now - first[0] < slow_for_s:
                    await asyncio.sleep(delay_s)
                body = b'{"activationId":"%032x"}' % next(counter)
                writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])))
