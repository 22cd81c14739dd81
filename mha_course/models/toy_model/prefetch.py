"""Making the next training batch while the current step runs: `prefetch` iterates a batch
generator in a background thread, a fixed number of items ahead, in the same order. NumPy and
Python build a batch (corrupt, pack) while torch, which releases the GIL, computes the step
before; the batches, and so the run, are the same as without it.
"""

from __future__ import annotations

import queue
import threading

__all__ = ["prefetch"]


class prefetch:
    """Iterate `items` (an iterator) in a background thread, `ahead` items ahead of the
    consumer, in the same order: the NumPy and Python work of making a batch overlaps the
    previous step's torch work, which releases the GIL. An exception in `items` is raised by
    `next`; `close()` stops the thread."""

    def __init__(self, items, ahead: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(iter(items),), daemon=True)
        self._thread.start()

    def _fill(self, items) -> None:
        try:
            for item in items:
                if not self._put((True, item)):
                    return  # closed
            self._put((False, StopIteration()))
        except Exception as error:  # handed to the consumer, raised there
            self._put((False, error))

    def _put(self, entry) -> bool:
        """Put `entry` once there is room; False if `close` came first."""
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        return self

    def __next__(self):
        ok, item = self._queue.get()
        if not ok:
            self._queue.put((False, item))  # every later `next` raises it too
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
