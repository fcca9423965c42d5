"""Keep track of the meter processes an ``NFStreamer`` forks, so that they never outlive their use.

nfstream runs its meters as child processes feeding a ``multiprocessing.Queue`` and reads that queue with
a blocking ``get()``. Two gaps follow, both closed here:

- a consumer that stops early (closes the generator) leaves the meters running, blocked on a full queue;
  ``MeterGuard.stop`` terminates exactly the processes this streamer created;
- a meter that dies without reporting (a crash in nDPI/libpcap on a hostile capture, an OOM kill) leaves
  the reader blocked in ``get()`` forever. The guard's watchdog thread notices the non-zero exit code,
  ends the other meters and closes the parent's copy of the queue's write end: with no writer left, the
  blocked read ends with ``EOFError`` and the caller reports ``died``. (Posting an error event on the
  queue does not work: a meter killed while writing keeps the queue's write lock forever.)

The guard hooks the streamer's multiprocessing context (``NFStreamer._mp_context``, which nfstream uses
for its Process and Queue objects); the watchdog starts only after the last meter has been started, so
no thread exists while nfstream forks.
"""

from __future__ import annotations

import threading
from typing import Any

_POLL_SECONDS = 0.5


class _RecordingContext:
    """Delegates to the real context; remembers the Process and Queue objects it makes."""

    def __init__(self, context: Any, guard: MeterGuard) -> None:
        self._context, self._guard = context, guard

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def Process(self, *args: Any, **kwargs: Any) -> Any:
        process = self._context.Process(*args, **kwargs)
        real_start = process.start

        def start() -> None:
            real_start()
            self._guard.started(process)

        process.start = start
        return process

    def Queue(self, *args: Any, **kwargs: Any) -> Any:
        self._guard.queue = self._context.Queue(*args, **kwargs)
        return self._guard.queue


class MeterGuard:
    """Attach to an ``NFStreamer`` before iterating it; call ``stop()`` when done (always)."""

    def __init__(self, streamer: Any) -> None:
        self.expected = int(streamer.n_meters)
        self.processes: list[Any] = []
        self.queue: Any = None
        self.died: str | None = None
        self._halt = threading.Event()
        self._watchdog: threading.Thread | None = None
        streamer._mp_context = _RecordingContext(streamer._mp_context, self)

    def started(self, process: Any) -> None:
        self.processes.append(process)
        if len(self.processes) == self.expected and self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="nfstream-meter-watchdog", daemon=True)
            self._watchdog.start()

    def _watch(self) -> None:
        while not self._halt.wait(_POLL_SECONDS):
            for process in self.processes:
                code = process.exitcode
                if code not in (None, 0):
                    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                    self.died = f"nfstream meter process died ({how}) before finishing the capture"
                    self._end_meters()
                    if self.queue is not None:
                        self.queue._writer.close()  # last write end: the blocked reader gets EOFError
                    return

    def stop(self, terminate: bool) -> None:
        """Stop the watchdog; with ``terminate``, also end meters still running (early exit, error)."""
        self._halt.set()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout=2 * _POLL_SECONDS)
        if terminate:
            self._end_meters()

    def _end_meters(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(timeout=5)
