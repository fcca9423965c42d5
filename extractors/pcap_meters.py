"""The meter processes an ``NFStreamer`` forks: lean flow transport, and never outliving their use.

nfstream runs its meters as child processes feeding a ``multiprocessing.Queue`` and reads that queue with
a blocking ``get()``. ``MeterGuard`` hooks the streamer's multiprocessing context
(``NFStreamer._mp_context``, which nfstream uses for its Process and Queue objects) to:

- run each meter with ``NFlow`` pickled as a ``pcap_columns.LeanFlow`` (the fields flowhawk uses, packed:
  ~10x smaller, several times cheaper to pickle and unpickle than the full object). The patch is applied
  inside the forked meter only, never in the calling process.
- stop the meters when the consumer stops early (closes the generator): nfstream would leave them
  running, blocked on a full queue. ``stop`` terminates exactly the processes this streamer created.
- not hang when a meter dies without reporting (a crash in nDPI/libpcap on a hostile capture, an OOM
  kill), which leaves nfstream's reader blocked in ``get()`` forever. The watchdog thread notices the
  non-zero exit code, ends the other meters and closes the parent's copy of the queue's write end: with
  no writer left, the blocked read ends with ``EOFError`` and the caller reports ``died``. (Posting an
  error event on the queue does not work: a meter killed while writing keeps the queue's write lock.)

The watchdog starts only after the last meter has been started, so no thread exists while nfstream forks.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

from flowhawk.extractors.pcap_columns import lean_reduce

_POLL_SECONDS = 0.5


class _RecordingContext:
    """Delegates to the real context; remembers the Process and Queue objects it makes."""

    def __init__(self, context: Any, guard: MeterGuard) -> None:
        self._context, self._guard = context, guard

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def Process(self, *args: Any, **kwargs: Any) -> Any:
        if callable(kwargs.get("target")):
            kwargs["target"] = partial(_lean_meter, kwargs["target"])
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


def _lean_meter(target: Any, *args: Any, **kwargs: Any) -> Any:
    """Body of a meter process (forked, so the patch stays in the child): lean pickling, then nfstream's
    own ``meter_workflow``."""
    from nfstream.flow import NFlow

    NFlow.__reduce__ = lean_reduce
    return target(*args, **kwargs)


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
