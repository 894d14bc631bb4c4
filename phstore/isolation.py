"""Run fragile native code (HomCloud) in a long-lived child process with a time limit.

HomCloud's periodic alpha filtration can raise, abort the whole interpreter (a C++ exception
escaping into ``std::terminate``) or never return (see ``../shared/notes/homcloud-periodic.md``).
:class:`IsolatedRunner` keeps one child interpreter that imports the heavy modules once and
serves many calls; when a call overruns its time limit the child is killed, and when the child
dies the next call starts a fresh one. The caller sees :class:`ChildCrashed`,
:class:`ChildTimeout` or :class:`ChildError` and goes on with the next frame.

The child is a plain ``subprocess`` (not ``multiprocessing``): Dask worker processes are
daemonic and multi-threaded, and neither forking them nor starting daemonic children is safe.
Messages are pickled over the child's stdin/stdout; only this module's own processes talk on
that channel. The child gets SIGKILL when its parent dies, so a hung child never outlives it.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, BinaryIO

from phstore.params import MAX_SECONDS, require

_HEADER = struct.Struct("!Q")


class ChildFailure(RuntimeError):
    """A call in the child process did not return a result."""


class ChildError(ChildFailure):
    """The function raised an exception in the child (the child lives on)."""


class ChildCrashed(ChildFailure):
    """The child process died during the call (e.g. SIGABRT from a C++ exception)."""


class ChildTimeout(ChildFailure):
    """The call exceeded its time limit; the child was killed."""


def _send(stream: BinaryIO, obj: Any) -> None:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, remaining = [], n
    while remaining:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise TimeoutError
        data = os.read(fd, min(remaining, 1 << 20))
        if not data:
            raise EOFError
        chunks.append(data)
        remaining -= len(data)
    return b"".join(chunks)


def _recv(fd: int, deadline: float | None = None) -> Any:
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    return pickle.loads(_read_exact(fd, size, deadline))


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class IsolatedRunner:
    """Call ``"module:function"`` in a child interpreter that pre-imports ``preload``.

    Parameters
    ----------
    preload:
        Modules imported once when the child starts (e.g. ``("homcloud.interface",)``).
    time_limit:
        Seconds one call may take (wall clock) before the child is killed.
    """

    def __init__(self, preload: tuple[str, ...] = (), time_limit: float = 120.0) -> None:
        self.preload = preload
        self.time_limit = time_limit
        self._proc: subprocess.Popen | None = None
        self._stderr: Any = None
        self.started = 0  # children started so far (1 + restarts)

    def _start(self) -> None:
        self._stderr = tempfile.TemporaryFile()
        from phstore.cluster import worker_env  # not at the top: the child imports this module

        # phstore's malloc settings even under workers started elsewhere: Dask's own
        # MALLOC_TRIM_THRESHOLD_ slows HomCloud's many small allocations (benchmarks/README.md).
        env = os.environ | worker_env()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "phstore.isolation", *self.preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            preexec_fn=_die_with_parent,
            close_fds=True,
            env=env,
        )
        self.started += 1
        try:
            ready = _recv(self._proc.stdout.fileno(), time.monotonic() + max(self.time_limit, 300.0))
        except (EOFError, TimeoutError) as exc:
            tail = self._stderr_tail()
            self._kill()
            raise ChildCrashed(f"the worker child failed to start: {tail}") from exc
        assert ready == "ready", ready

    def _stderr_tail(self, limit: int = 400) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return " | ".join(lines[-3:])[-limit:]

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout):
                stream.close()
        if self._stderr is not None:
            self._stderr.close()
        self._proc, self._stderr = None, None

    def call(self, function: str, *args: Any, time_limit: float | None = None, **kwargs: Any) -> Any:
        """Run ``function`` (``"module:name"``) in the child; return its result.

        Raises :class:`ChildError`, :class:`ChildCrashed` or :class:`ChildTimeout`.
        """
        if self._proc is None or self._proc.poll() is not None:
            self._kill()
            self._start()
        assert self._proc is not None
        limit = self.time_limit if time_limit is None else time_limit
        try:
            _send(self._proc.stdin, (function, args, kwargs))
            status, value = _recv(self._proc.stdout.fileno(), time.monotonic() + limit)
        except TimeoutError:
            self._kill()
            raise ChildTimeout(f"exceeded the time limit of {limit:g} s") from None
        except (EOFError, BrokenPipeError):
            code = self._proc.wait()
            reason = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            tail = self._stderr_tail()
            self._kill()
            raise ChildCrashed(f"the process died ({reason}){': ' + tail if tail else ''}") from None
        if status == "error":
            raise ChildError(value)
        return value

    def close(self) -> None:
        """Stop the child (a later call starts a new one)."""
        self._kill()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self._kill()
        except Exception:
            pass


_local = threading.local()


def runner_for(preload: tuple[str, ...], time_limit: float) -> IsolatedRunner:
    """The calling thread's runner for ``preload`` (created once per thread, then reused)."""
    require("time_limit", time_limit, {"positive": True, "high": MAX_SECONDS}, "s")
    runners: dict[tuple[str, ...], IsolatedRunner] = _local.__dict__.setdefault("runners", {})
    runner = runners.get(preload)
    if runner is None:
        runner = runners[preload] = IsolatedRunner(preload, time_limit)
    runner.time_limit = time_limit
    return runner


def _serve(preload: list[str]) -> None:
    """The child's loop: import ``preload``, then answer calls until stdin closes."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the channel
    for name in preload:
        importlib.import_module(name)
    _send(stdout, "ready")
    while True:
        try:
            function, args, kwargs = _recv(stdin.fileno())
        except EOFError:
            return
        module, _, name = function.partition(":")
        try:
            result = ("ok", getattr(importlib.import_module(module), name)(*args, **kwargs))
        except Exception as exc:  # reported to the parent, the child lives on
            result = ("error", f"{type(exc).__name__}: {exc}")
        _send(stdout, result)


if __name__ == "__main__":
    _serve(sys.argv[1:])
