"""A warm sandbox for the app: one child that has already imported torch waits for the next check.

A check from the page then costs the grading plus the submission's run (a few hundred ms), not a
torch import. The pool never reuses a sandbox: `take()` hands the warm one out and a fresh one starts
behind it. Every sandbox is spawned by the pool's own long-lived thread, because bwrap's
--die-with-parent is tied to the spawning THREAD (Streamlit's script threads come and go), and the
pool also imports the drill's grader there so the first check does not pay for it either.
"""
from __future__ import annotations

import atexit
import queue
import threading
from concurrent.futures import Future

from labs.drills.sandbox import Limits, Sandbox


_STOP = object()


class WarmPool:
    def __init__(self, limits: Limits | None = None):
        self.limits = limits or Limits()
        self._requests: queue.Queue = queue.Queue()
        self._warm: Sandbox | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="drill-sandbox-pool", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _loop(self) -> None:
        while True:
            fut, grader = self._requests.get()
            if fut is _STOP:
                return
            try:
                if grader:
                    from labs.drills.graders import builder
                    builder(grader)
                result = Sandbox(self.limits) if fut is not None or self._warm is None else None
                if fut is not None:
                    fut.set_result(result)
                elif result is not None:
                    with self._lock:
                        self._warm = result
            except Exception as e:  # noqa: BLE001 - SandboxUnavailable or any other: a failed warm-up must not kill the pool thread
                if fut is not None:
                    fut.set_exception(e)

    def prewarm(self, grader: str | None = None) -> None:
        """Start a warm sandbox (and import `grader`'s module) in the background if none is waiting."""
        self._requests.put((None, grader))

    def take(self, timeout: float = 60.0) -> Sandbox:
        """The warm sandbox if one is alive, else a fresh one (started by the pool thread); refills behind it."""
        with self._lock:
            sb, self._warm = self._warm, None
        if sb is None or not sb.alive():
            if sb is not None:
                sb.kill()
            fut: Future = Future()
            self._requests.put((fut, None))
            sb = fut.result(timeout=timeout)
        self.prewarm()
        return sb

    def close(self) -> None:
        with self._lock:
            sb, self._warm = self._warm, None
        if sb is not None:
            sb.kill()
        self._requests.put((_STOP, None))


_pool: WarmPool | None = None
_pool_lock = threading.Lock()


def pool() -> WarmPool:
    """The process-wide pool (one per app server process)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = WarmPool()
        return _pool
