"""One daemon thread per served image, music or clip model: its requests run there one at a time, in order.

Heavy work never runs on the event loop or on the thread pool it shares with every other request, and a
daemon thread never holds the process when the server is told to stop.
"""

from __future__ import annotations

import asyncio
import queue
import threading

from genlab.core.cancel import Cancelled, cancellable


class Busy(Exception):
    pass


class ModelWorker:
    def __init__(self, name: str, max_waiting: int):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.max_waiting, self.waiting = max_waiting, 0
        self.lock = threading.Lock()
        threading.Thread(target=self._loop, name=f"work-{name}", daemon=True).start()

    def start(self, fn, *args) -> asyncio.Future:
        """`fn(*args)` queued for this model's thread (call from the event loop); Busy when `max_waiting`
        requests are already in line. Cancelling the future drops a job that has not started, and stops one
        that has at its sampling loop's next step (genlab.core.cancel)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self.lock:
            if self.waiting >= self.max_waiting:
                raise Busy
            self.waiting += 1
        called_off = threading.Event()
        future.add_done_callback(lambda f: f.cancelled() and called_off.set())
        self.jobs.put((loop, future, called_off, fn, args))
        return future

    def streaming(self, work):
        """Run `work(emit)` on this model's thread; returns an async iterator of what it emits, ending with
        its exception, if any, as the last item. Busy (raised here, before anything is sent) when the line is full."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        done = object()

        def run():
            emit = lambda item: loop.call_soon_threadsafe(events.put_nowait, item)  # noqa: E731
            try:
                work(emit)
            except Exception as e:  # noqa: BLE001 - the stream's last item
                emit(e)
            finally:
                emit(done)

        future = self.start(run)

        async def iterate():
            try:
                while (item := await events.get()) is not done:
                    yield item
            finally:
                future.cancel()

        return iterate()

    def _loop(self) -> None:
        while True:
            loop, future, called_off, fn, args = self.jobs.get()
            result, error = None, None
            try:
                if not called_off.is_set():  # its client left while it waited
                    with cancellable(called_off):
                        result = fn(*args)
            except Cancelled:  # its client left while it ran: nobody awaits a result
                pass
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting request
                result, error = None, e
            finally:
                with self.lock:
                    self.waiting -= 1
            if not future.cancelled():
                loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future, result, error) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
