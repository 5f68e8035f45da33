"""Latency on loopback: user-space TCP relays that hold every byte for a fixed time, in each direction.

``tc netem`` is missing on these machines (the kernel has no netem module),
so the delay is added in user space.  Each relay listens on one port and
forwards to another; what it reads from one side it writes to the other
``delay`` seconds later, in order, per direction, and a half-close (EOF)
travels the same way.  The test bed puts one in front of every tor's ORPort
(tor advertises the relay's port, ``ORPort addr:P1 NoListen``, and listens
itself on ``ORPort addr:P2 NoAdvertise``), so every hop between relays, the
client's first hop included, pays the delay; and one in front of each of the
edge's ports, the exit's hop.  A circuit of n hops thus adds n + 1 one-way
delays each way to every request.

The edge tells exits apart by who owns the peer socket; behind a relay the
peer is the relay, so ``origin(peer)`` gives the address of the connection the
relay accepted for the connection it made.
"""

from __future__ import annotations

import asyncio
import logging
import threading

log = logging.getLogger(__name__)

READ_SIZE = 65536
QUEUE_CHUNKS = 256  # per direction: at most 16 MiB held in flight


class Delays:
    """Delaying relays, all served by one asyncio loop on a thread of its own."""

    def __init__(self, delay: float):
        if delay < 0:
            raise ValueError("the delay must not be negative")
        self.delay = delay
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="delays", daemon=True)
        self._servers: list[asyncio.AbstractServer] = []
        self._origins: dict[tuple[str, int], tuple[str, int]] = {}  # relay's outgoing socket → accepted peer
        self._thread.start()

    def add(self, listen: tuple[str, int], target: tuple[str, int]) -> int:
        """Relay ``listen`` → ``target`` (port 0: a free one); returns the port it listens on."""
        future = asyncio.run_coroutine_threadsafe(self._listen(listen, target), self._loop)
        return future.result(10)

    def origin(self, peer: tuple[str, int]) -> tuple[str, int] | None:
        """The client a relay connection stands for, if ``peer`` is a relay's outgoing socket."""
        return self._origins.get((peer[0], peer[1]))

    def stop(self) -> None:
        """Close every relay and its connections, and end the loop's thread."""
        if not self._thread.is_alive():
            return

        async def close_all():
            for server in self._servers:
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _listen(self, listen, target) -> int:
        server = await asyncio.start_server(lambda r, w: self._relay(r, w, target), listen[0], listen[1])
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    async def _relay(self, client_reader, client_writer, target) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        except OSError as exc:
            log.debug("relay to %s:%d failed: %s", *target, exc)
            client_writer.transport.abort()
            return
        outgoing = upstream_writer.get_extra_info("sockname")[:2]
        self._origins[outgoing] = client_writer.get_extra_info("peername")[:2]
        try:
            async with asyncio.TaskGroup() as both:
                both.create_task(self._pipe(client_reader, upstream_writer))
                both.create_task(self._pipe(upstream_reader, client_writer))
        except (asyncio.CancelledError, ExceptionGroup):
            # a reset on one side resets the other; stop() cancels, and asyncio would log a relay
            # task that ends cancelled, so it ends quietly
            for writer in (client_writer, upstream_writer):
                writer.transport.abort()
        finally:
            self._origins.pop(outgoing, None)
            for writer in (client_writer, upstream_writer):
                writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it arrived."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)

        async def take_in():
            while True:
                data = await reader.read(READ_SIZE)
                await queue.put((loop.time() + self.delay, data))
                if not data:
                    return

        async def give_out():
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        async with asyncio.TaskGroup() as both:
            both.create_task(take_in())
            both.create_task(give_out())
