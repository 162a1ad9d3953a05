"""Run llama.cpp's OpenAI-compatible server in a child process this process owns.

The server lives in a child (``_llama_child.py``) so it can always be killed and a crash in
native code cannot take the pipeline down. It never outlives its parent:

1. ``stop()`` closes the child's stdin, waits, then SIGTERM, then SIGKILL;
2. an ``atexit`` hook stops every running server (normal exit, ``sys.exit``, Ctrl-C/KeyboardInterrupt);
3. a SIGTERM handler (installed once, only where SIGTERM still has its default action) kills
   them, then lets SIGTERM end the process as it would have;
4. if the parent dies anyway (SIGKILL, crash), the kernel closes the parent's end of the
   child's stdin and the child exits on end-of-file; on Linux the child also gets
   ``PR_SET_PDEATHSIG=SIGKILL``. That signal is tied to the *thread* that forked, so every
   child is forked by one daemon "keeper" thread that lives as long as the process.

The child runs in its own session, so a terminal's Ctrl-C reaches only the parent, which then
stops the child through (2).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Any, Iterator

from ..core.errors import ConfigError, ServingError

_CHILD = Path(__file__).with_name("_llama_child.py")
_running: "weakref.WeakSet[LlamaServerProcess]" = weakref.WeakSet()
_atexit_installed = False
_sigterm_installed = False
_hooks_lock = threading.Lock()


class LlamaServerProcess:
    """One llama.cpp server on 127.0.0.1 serving ``model_path`` under the name ``alias``.

    ``start()`` returns the base URL (``http://127.0.0.1:PORT``) once ``/health`` answers ok;
    it is idempotent and thread-safe, and restarts a child that has died.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        alias: str = "local-model",
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_parallel: int = 1,
        startup_timeout: float = 180.0,
        params: dict[str, Any] | None = None,
    ) -> None:
        self.model_path = str(model_path)
        self.alias = alias
        self.n_ctx = int(n_ctx)
        self.n_threads = int(n_threads or os.cpu_count() or 1)
        self.n_parallel = int(n_parallel)
        self.startup_timeout = float(startup_timeout)
        self.params = dict(params or {})
        self.base_url: str | None = None
        self.starts = 0
        self._proc: subprocess.Popen | None = None
        self._lock = threading.RLock()

    # -- state ---------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def crashed(self) -> int | None:
        """The exit status of a server that ended without ``stop()`` (else None)."""
        return self._proc.poll() if self._proc is not None else None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> str:
        """Start the server if it is not running; return its base URL."""
        with self._lock:
            if self.running and self.base_url:
                return self.base_url
            if self._proc is not None:  # it died: collect it and start a fresh one
                self._reap()
            _install_hooks()
            self.base_url = self._spawn()
            self.starts += 1
            return self.base_url

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (no-op when it is not running). Never leaves the child behind."""
        if not self._lock.acquire(timeout=timeout):  # another thread is mid-start: kill outright
            proc = self._proc
            if proc is not None and proc.poll() is None:
                proc.kill()
            return
        with _released(self._lock):
            if self._proc is None:
                return
            proc = self._proc
            try:
                if proc.stdin is not None:
                    proc.stdin.close()  # the child exits on end of file
                proc.wait(timeout=timeout)
            except (subprocess.TimeoutExpired, OSError):
                proc.terminate()
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self._reap()

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        self.base_url = None
        _running.discard(self)
        if proc is None:
            return
        _keeper.spawned.discard(proc)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def __del__(self) -> None:  # pragma: no cover - last resort; atexit normally handles it
        try:
            self.stop(timeout=1.0)
        except Exception:
            pass

    # -- spawning ------------------------------------------------------------------------------
    def _spawn(self) -> str:
        try:
            import xllamacpp  # noqa: F401  (fail here, with the install hint, not in the child)
        except ImportError as exc:
            raise ConfigError(
                f'the embedded model needs the xllamacpp runtime ({exc}). Install it with: pip install "dataflow-fc[local]"'
            ) from None
        config = {
            "model": self.model_path,
            "alias": self.alias,
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "n_parallel": self.n_parallel,
            "params": self.params,
            "parent_pid": os.getpid(),
            "pdeathsig": True,  # forked by the keeper thread, which lives as long as we do
        }
        log = tempfile.TemporaryFile()
        kwargs: dict[str, Any] = {}
        if os.name == "posix":
            kwargs["start_new_session"] = True
        proc = _keeper.popen(
            [sys.executable, str(_CHILD), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            close_fds=True,
            **kwargs,
        )
        self._proc = proc
        _running.add(self)
        try:
            url = self._read_ready_line(proc, log)
            self._wait_healthy(url)
        except BaseException:
            self._reap()
            raise
        finally:
            log.close()
        return url

    def _read_ready_line(self, proc: subprocess.Popen, log: Any) -> str:
        deadline = time.monotonic() + self.startup_timeout
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServingError(
                    f"the local model server did not start within {self.startup_timeout:.0f}s "
                    f"(model {self.model_path}){_tail(log)}"
                )
            ready, _, _ = select.select([fd], [], [], min(left, 0.5)) if os.name == "posix" else ([fd], [], [])
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
            elif proc.poll() is not None:
                break
        line = buf.split(b"\n", 1)[0].strip()
        try:
            message = json.loads(line) if line else {}
        except ValueError:
            message = {"error": line.decode(errors="replace")}
        if "url" in message:
            return str(message["url"]).rstrip("/")
        code = proc.poll()
        error = message.get("error") or f"exited with status {code}"
        raise ServingError(
            f"the local model server failed to start with model {self.model_path}: {error}{_tail(log)}"
        )

    def _wait_healthy(self, url: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last = ""
        while time.monotonic() < deadline:
            if not self.running:
                raise ServingError(f"the local model server exited while loading {self.model_path}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:  # 503 while the model loads
                last = f"HTTP {exc.code}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise ServingError(f"the local model server at {url} was not healthy within {self.startup_timeout:.0f}s: {last}")


@contextlib.contextmanager
def _released(lock: Any) -> Iterator[None]:
    """Release an already acquired ``lock`` on leaving the block."""
    try:
        yield
    finally:
        lock.release()


def _tail(log: Any, limit: int = 2000) -> str:
    try:
        log.seek(0)
        text = log.read().decode(errors="replace").strip()
    except (OSError, ValueError):
        return ""
    return f"; server log: {text[-limit:]}" if text else ""


def stop_all() -> None:
    """Stop every server started by this process."""
    for server in list(_running):
        try:
            server.stop(timeout=3.0)
        except Exception:  # pragma: no cover - keep stopping the others
            pass
    _keeper.kill_leftovers()


def _on_sigterm(signum: int, frame: Any) -> None:
    # No locks here (the interrupted code may hold them): kill every child outright.
    for proc in list(_keeper.spawned):
        try:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
        except Exception:  # pragma: no cover - keep going; the child also dies with us
            pass
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # end the process the way SIGTERM would have


def _install_hooks() -> None:
    """Register the atexit hook (once) and, from the main thread, the SIGTERM handler (once)."""
    global _atexit_installed, _sigterm_installed
    with _hooks_lock:
        if not _atexit_installed:
            _atexit_installed = True
            atexit.register(stop_all)
        if _sigterm_installed or threading.current_thread() is not threading.main_thread():
            return
        _sigterm_installed = True
        try:
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)
        except (ValueError, OSError, AttributeError):  # pragma: no cover - e.g. no SIGTERM
            pass


def install_hooks() -> None:
    """Public alias: call from the main thread early (``LocalModelLLMServing`` does so when
    constructed) so the SIGTERM handler is in place even if the server starts in a worker thread."""
    _install_hooks()


class _Keeper:
    """A daemon thread that lives as long as the process and runs every ``Popen``: Linux ties
    ``PR_SET_PDEATHSIG`` to the thread that forked, so forking from here makes it mean "when
    this process dies", whichever thread asked for the server."""

    def __init__(self) -> None:
        self._jobs: "queue.Queue[tuple[Any, Any, list]]" = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.spawned: set[subprocess.Popen] = set()  # strong refs until reaped

    def popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="dataflow-llama-keeper", daemon=True)
                self._thread.start()
        done = threading.Event()
        box: list = []
        self._jobs.put(((args, kwargs), done, box))
        done.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def _loop(self) -> None:
        while True:
            (args, kwargs), done, box = self._jobs.get()
            try:
                proc = subprocess.Popen(*args, **kwargs)
                self.spawned.add(proc)
                box.append(proc)
            except BaseException as exc:  # handed back to the caller
                box.append(exc)
            done.set()

    def kill_leftovers(self) -> None:
        """Kill children whose owner never got hold of them (e.g. Ctrl-C during ``popen``)."""
        for proc in list(self.spawned):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            self.spawned.discard(proc)


_keeper = _Keeper()
