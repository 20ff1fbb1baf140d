"""Background tasks that live as long as the gateway process: each runs under a supervisor that logs and restarts it
with backoff if it dies (an exception, or an unexpected return), so a Redis reply nobody anticipated can't silently
end usage writing or rate-limit settling for the rest of the process's life."""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("hearth.gateway.supervisor")

TaskFactory = Callable[[], Coroutine[Any, Any, Any]]


class Supervisor:
    def __init__(self, *, first_delay_s: float = 0.1, max_delay_s: float = 10.0) -> None:
        self._first_delay_s = first_delay_s
        self._max_delay_s = max_delay_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self.num_restarts: dict[str, int] = {}

    def start(self, name: str, factory: TaskFactory) -> None:
        """Runs `factory()` until stop(); a fresh coroutine from `factory` after each death."""
        if name in self._tasks:
            raise ValueError(f"a background task named {name!r} is already running")
        self.num_restarts[name] = 0
        self._tasks[name] = asyncio.create_task(self._supervise(name, factory), name=name)

    async def _supervise(self, name: str, factory: TaskFactory) -> None:
        delay = self._first_delay_s
        while not self._stopping:
            try:
                await factory()
                if self._stopping:
                    return
                log.error("background task %s returned; restarting it in %.1f s", name, delay)
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._stopping:  # a cancel that surfaced as another error (redis-py's timeouts) while stopping
                    return
                log.exception("background task %s died; restarting it in %.1f s", name, delay)
            self.num_restarts[name] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_delay_s)

    def running(self) -> dict[str, bool]:
        return {name: not task.done() for name, task in self._tasks.items()}

    async def stop(self) -> None:
        # Cancelled again until done: on Python 3.11 a cancel that lands as redis-py's own asyncio.timeout expires can
        # surface as TimeoutError, which a loop may catch as a Redis outage and go on (seen as a hung test shutdown).
        self._stopping = True
        pending = set(self._tasks.values())
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        self._tasks.clear()
