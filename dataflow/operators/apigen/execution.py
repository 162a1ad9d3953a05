"""Stage 2, ``ExecutionChecker``: run each call against real Python functions in a sandbox.

``Sandbox`` keeps one worker (``_sandbox_worker.py``, started with ``subprocess`` in a fresh
temporary folder): a supervisor that never imports the tools module, and under it the tool
process that runs the functions. Each call is sent as JSON with an id and answered as JSON; the
function is called with keyword arguments, arguments are never ``eval()``-ed. The tool process
cannot write the pipe this process reads: the supervisor passes on one checked reply per call
(matching id, bounded size, result and error text cut), and this process checks again (one line
per call, same id, bounded size), so a tool that writes stray or forged lines fails its own call
and never shifts another row's result. A call that exceeds ``timeout`` seconds has its worker
killed; a worker that dies (a crash, ``os._exit``, a signal, a ``MemoryError``) fails that call
with the reason. Either way the next call gets a fresh worker, so one bad function never takes
the run down.

The same module gives the tool specs (``ExecutionChecker.tool_specs()``, ``sandboxed_tool_specs``),
derived from type hints and docstrings by ``dataflow.tools.from_python`` inside the worker: the
tools module is never imported into the pipeline's process.

Tool code may be hostile (APIGen executes third-party APIs). What holds it, each a mechanism the
platform keeps rather than a rule of ours (``Sandbox.confinement`` says what is in force; a
missing one is named in one warning line per process):

- **secrets**: an allow-listed environment (``worker_environment``: ``PATH``, locale, ``TZ``;
  ``HOME`` and the temp variables point at its own folder; nothing named like a key, token,
  secret or password); this process made non-dumpable (``PR_SET_DUMPABLE`` 0, Linux), which
  closes its ``/proc/<pid>/environ`` and ``mem`` to same-user processes; a root worker drops its
  capabilities, so the same holds when the pipeline runs as root.
- **processes**: the worker starts in a new PID namespace (``unshare --pid --fork --kill-child``,
  ``--mount-proc`` where allowed, a user namespace when not root) whose init is the supervisor: killing it
  at a timeout or when the checker ends makes the kernel kill every process a tool started, in
  whatever session; a tool sees only the sandbox's processes and cannot signal the pipeline.
  Without it (no ``unshare``, or namespaces not permitted) the worker's process group is killed,
  which a child started with ``setsid`` escapes.
- **resources** (set in the tool process before the module is imported): ``RLIMIT_AS``
  (``memory_mb`` per process), ``RLIMIT_NPROC`` (``max_processes``; not applied by the kernel
  to root), ``RLIMIT_FSIZE`` (``max_file_mb``), ``RLIMIT_CORE`` 0. The memory cap is per process:
  a tool's processes together may use up to ``max_processes`` times ``memory_mb``.
- **files**: Landlock (Linux 5.13+): files can be created, written or removed only in the
  worker's temporary folder; from Landlock ABI 6 (Linux 6.12) signals reach only the tool's own
  processes. Reading is not restricted: a tool can read whatever this user can.
- a tool that kills the supervisor, or the supervisor itself dying, fails that call
  (``WorkerDied``) and the next call starts a fresh worker.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ...core import OperatorABC, RowOutcome, RunReport, merge_row
from ...core.errors import ConfigError, ToolSpecError

WORKER = Path(__file__).with_name("_sandbox_worker.py")
ERROR_CHARS = 500  # error text from the worker is cut to this (as the worker cuts it)
_SPECS_LIMIT = 8 << 20  # bytes of a first line or specs reply


class _TooLong(Exception):
    """The worker sent more than a reply may hold."""


def _cut(text: str, limit: int = ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "..."

#: environment variables a worker inherits (plus ``LC_*``); everything else is left behind
ENV_ALLOWED = frozenset({"PATH", "LANG", "LANGUAGE", "TZ"})
_SECRET_WORDS = ("KEY", "SECRET", "TOKEN", "PASSW", "CREDENTIAL", "AUTH", "COOKIE", "SESSION")


def worker_environment(workdir: str) -> dict[str, str]:
    """The whole environment of a sandbox worker: an allow-list, never a copy of ours. No
    ``PYTHON*`` variable is needed: the worker runs with ``-I`` (which ignores them) and finds
    packages through its interpreter's own ``site-packages``."""
    env = {
        k: v for k, v in os.environ.items()
        if (k in ENV_ALLOWED or k.startswith("LC_")) and not any(w in k.upper() for w in _SECRET_WORDS)
    }
    for name in ("HOME", "TMPDIR", "TEMP", "TMP"):  # a function's own and temporary files land in its folder
        env[name] = workdir
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


_undumpable = False


def make_process_undumpable() -> bool:
    """``prctl(PR_SET_DUMPABLE, 0)`` for this process (Linux): its ``/proc/<pid>/environ``,
    ``mem``, ``fd`` and ptrace stay closed to other processes of the same user that lack
    CAP_SYS_PTRACE, such as a sandbox worker. Also disables core dumps and debugger attach for
    this process. Returns whether the process is now non-dumpable."""
    global _undumpable
    if _undumpable:
        return True
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        _undumpable = libc.prctl(4, 0, 0, 0, 0) == 0  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        _undumpable = False
    return _undumpable


_namespace_lock = threading.Lock()
_namespace: tuple[list[str], str] | None = None  # (command prefix, why there is none)
_warned: set[str] = set()


def pid_namespace_command() -> tuple[list[str], str]:
    """The ``unshare`` command prefix that starts a worker as init of a new PID namespace (with
    its own ``/proc`` where mounting one is allowed, and a user namespace when not root), or
    ``([], why not)``. Tried once per process with ``true``."""
    global _namespace
    with _namespace_lock:
        if _namespace is None:
            _namespace = _probe_pid_namespace()
        return _namespace


def _probe_pid_namespace() -> tuple[list[str], str]:
    if not sys.platform.startswith("linux"):
        return [], "PID namespaces are a Linux feature"
    unshare, true = shutil.which("unshare"), shutil.which("true")
    if unshare is None or true is None:
        return [], "the unshare command (util-linux) is not installed"
    users = [[]] if os.geteuid() == 0 else [["--user", "--map-current-user"], ["--user", "--map-root-user"]]
    # its own /proc when mounting one is allowed; the namespace alone still ties every process to its init
    candidates = [[unshare, *user, "--pid", "--fork", "--kill-child", *proc]
                  for proc in (["--mount-proc"], []) for user in users]
    problem = ""
    for command in candidates:
        try:
            done = subprocess.run([*command, true], capture_output=True, text=True, timeout=10,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            problem = str(exc)
            continue
        if done.returncode == 0:
            return command, ""
        problem = " ".join(done.stderr.split())[:200] or f"exit status {done.returncode}"
    return [], f"unshare cannot create one here ({problem})"


def _warn_missing(confinement: dict) -> None:
    """One stderr line per process naming each confinement that is not in force."""
    missing = []
    if not confinement.get("pid_namespace"):
        missing.append(f"a PID namespace ({confinement.get('pid_namespace_problem')}): processes a tool "
                       "starts in a new session can outlive the checker, and tools can signal this user's "
                       "other processes")
    landlock = confinement.get("landlock") or {}
    if not landlock.get("abi"):
        missing.append(f"Landlock ({landlock.get('problem', 'not reported')}): tools can write wherever "
                       "this user can")
    elif not landlock.get("signals") and not confinement.get("pid_namespace"):
        missing.append("Landlock signal scoping (needs Linux 6.12): tools can signal this user's processes")
    processes = (confinement.get("rlimits") or {}).get("processes")
    if isinstance(processes, str):
        missing.append(f"a process cap ({processes})")
    line = "; ".join(missing)
    if line and line not in _warned:
        _warned.add(line)
        print(f"warning: the execution sandbox runs without {line}", file=sys.stderr, flush=True)


def _death(what: str, code: int | None, tail: str = "") -> str:
    """``WorkerDied: <what>: <how it ended>[; stderr: ...]`` for an exit code or -signal."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        detail = f"killed by {name}"
        if name == "SIGKILL":
            detail += " (killed itself, or the system ran out of memory)"
        elif name == "SIGXFSZ":
            detail += " (a file reached max_file_mb)"
    elif code is not None:
        detail = f"exited with code {code}"
    else:
        detail = "stopped answering"
    return f"WorkerDied: {what}: {detail}" + (f"; stderr: {tail}" if tail else "")


def sandboxed_tool_specs(module_path: str | os.PathLike, timeout: float = 30.0) -> list[dict]:
    """OpenAI specs of a tools module's public functions (type hints + docstrings), derived in a
    sandbox worker: the module's code never runs in this process. Raises ``ToolSpecError``."""
    with Sandbox(module_path, timeout=timeout, max_result_chars=0) as sandbox:
        return sandbox.specs()


class Sandbox:
    """A replaceable worker process that runs the functions of one module file or folder."""

    #: start workers in a PID namespace / confine them with Landlock when the platform allows
    #: (class-level switches for tests and for platforms where a mechanism misbehaves)
    use_pid_namespace = True
    use_landlock = True

    def __init__(self, module_path: str | os.PathLike, timeout: float = 5.0, memory_mb: int = 512,
                 max_result_chars: int = 2000, startup_timeout: float = 30.0, max_processes: int = 32,
                 max_file_mb: int = 64, environment: dict | None = None):
        self.module_path = str(Path(module_path).resolve())
        if not Path(self.module_path).exists():
            raise ConfigError(f"tools module not found ({module_path}) — pass a .py file or a folder of them")
        #: ``{"class": name, "data": JSON file path or None}``: the tools are the public methods of
        #: ``name(<data>)``, built in the tool process (a stateful environment); None: module functions
        self.environment = dict(environment) if environment else None
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.max_result_chars = max_result_chars
        self.startup_timeout = startup_timeout
        self.max_processes = max_processes
        self.max_file_mb = max_file_mb
        #: what confines the current worker: ``pid_namespace`` (bool, with ``pid_namespace_problem``),
        #: ``landlock`` (``{"abi", "signals"}`` or ``{"abi": 0, "problem"}``), ``rlimits``
        self.confinement: dict = {}
        self.functions: list[str] = []
        self.restarts = 0
        #: calls answered since the worker started or was last reset (0: its state is fresh)
        self.calls_since_reset = 0
        self._started = False
        self._proc: subprocess.Popen | None = None
        self._workdir: str | None = None
        self._buffer = b""
        self._eof = False
        self._next_id = 0

    # -- public -----------------------------------------------------------------------------------
    def specs(self) -> list[dict]:
        """OpenAI tool specs of the module's functions, derived inside the worker."""
        try:
            proc = self._ensure()
        except ConfigError as exc:
            raise ToolSpecError(self.module_path, str(exc)) from None
        try:
            assert proc.stdin is not None
            self._next_id += 1
            proc.stdin.write(json.dumps({"id": self._next_id, "op": "specs"}).encode() + b"\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise ToolSpecError(self.module_path, self._died("the worker died before the call")) from None
        reply = self._read_line(self.timeout, limit=_SPECS_LIMIT)
        if reply is None:
            what = self._died("deriving the tool specs") if self._eof or proc.poll() is not None else \
                f"deriving the tool specs took more than {self.timeout:g}s"
            self._kill()
            raise ToolSpecError(self.module_path, what)
        try:
            message = json.loads(reply)
        except json.JSONDecodeError:
            message = {}
        if not isinstance(message, dict) or message.get("id") != self._next_id or not message.get("ok"):
            error = message.get("error") if isinstance(message, dict) else None
            if isinstance(message, dict) and "exit" in message:
                error = self._exit_text("deriving the tool specs", message["exit"])
            self._kill()
            error = str(error or "the worker sent an unreadable reply")
            raise ToolSpecError(self.module_path, error.removeprefix("ToolSpecError: ")[:2000])
        specs = message.get("specs")
        if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
            self._kill()
            raise ToolSpecError(self.module_path, "the worker sent specs that are not a list of objects")
        return specs

    @property
    def alive(self) -> bool:
        """Whether a worker is running now (False before the first call, and after a timeout, a
        crash or ``close``: the next call starts a fresh worker, with fresh state)."""
        return self._proc is not None and self._proc.poll() is None

    def reset(self) -> None:
        """Give the next call fresh state: the supervisor replaces the tool process (module and
        environment built anew, the folder emptied). Nothing is done when no call ran since the
        worker started. A worker that does not answer is killed (the next call starts a new one).
        Raises ``ConfigError`` when the fresh tool process cannot import the module."""
        if not self.alive or self.calls_since_reset == 0:
            if not self.alive:
                self._kill()
                self.calls_since_reset = 0
            return
        self.calls_since_reset = 0
        message = self._operation("reset", self.startup_timeout)
        if message is None or message.get("ok") is not True:
            error = message.get("error") if message is not None else None
            self._kill()
            if isinstance(error, str):
                raise ConfigError(f"importing tools module {self.module_path} failed: {_cut(error)}")

    def state(self) -> dict:
        """The environment's data now (the public JSON attributes of the environment instance, or
        the module's JSON globals), read inside the worker. Raises ``ToolSpecError`` when the
        worker cannot say (it died or timed out: its state is lost)."""
        self._ensure()
        message = self._operation("state", self.timeout)
        if message is None or not message.get("ok") or not isinstance(message.get("state"), dict):
            self._kill()
            raise ToolSpecError(self.module_path, "the worker could not report the environment's state")
        return message["state"]

    def _operation(self, op: str, timeout: float) -> dict | None:
        """Send ``{"id", "op"}`` to the running worker; its reply with that id, or None."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        self._next_id += 1
        try:
            proc.stdin.write(json.dumps({"id": self._next_id, "op": op}).encode() + b"\n")
            proc.stdin.flush()
            reply = self._read_line(timeout, limit=_SPECS_LIMIT)
            message = json.loads(reply) if reply is not None else None
        except (BrokenPipeError, OSError, _TooLong, json.JSONDecodeError):
            return None
        return message if isinstance(message, dict) and message.get("id") == self._next_id else None

    def call(self, name: str, arguments: dict) -> dict:
        """``{"ok": True, "result": ..., "truncated": bool}`` or ``{"ok": False, "error": str}``."""
        if not isinstance(arguments, dict):
            return {"ok": False, "error": "TypeError: arguments must be a JSON object"}
        self._next_id += 1  # each call has its own id: a reply to another call is never taken for it
        try:
            line = json.dumps({"id": self._next_id, "name": name, "arguments": arguments}, ensure_ascii=False) + "\n"
        except (TypeError, ValueError) as exc:
            return {"ok": False, "error": f"TypeError: arguments are not JSON: {exc}"}
        proc = self._ensure()
        self.calls_since_reset += 1
        try:
            assert proc.stdin is not None
            proc.stdin.write(line.encode("utf-8"))
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return {"ok": False, "error": self._died("the worker died before the call")}
        try:
            reply = self._read_line(self.timeout, limit=6 * self.max_result_chars + 65536)
        except _TooLong:
            self._kill()
            return {"ok": False, "error": "ProtocolError: the worker sent a reply larger than the result limit"}
        if reply is None:
            if not self._eof and proc.poll() is None:
                self._kill()
                return {"ok": False, "error": f"TimeoutError: the call did not finish within {self.timeout:g}s"}
            return {"ok": False, "error": self._died("the worker died during the call")}
        try:
            message = json.loads(reply)
        except json.JSONDecodeError:
            message = None
        if (not isinstance(message, dict) or message.get("id") != self._next_id
                or not isinstance(message.get("ok"), bool) or self._buffer):
            self._kill()  # never let a stray or forged line answer a later call
            return {"ok": False, "error": "ProtocolError: the worker sent an unreadable or unexpected reply"}
        if "exit" in message and not message["ok"]:  # the tool process died; the supervisor says how
            error = self._exit_text("the worker died during the call", message["exit"])
            self._kill()
            return {"ok": False, "error": error}
        if message.get("restart"):
            self._kill()
        if message["ok"]:
            answer = {"ok": True, "result": message.get("result"), "truncated": message.get("truncated") is True}
        else:
            error = message.get("error")
            answer = {"ok": False, "error": _cut(error) if isinstance(error, str) else "Error: (no error text)"}
        return answer

    def close(self) -> None:
        self._kill()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self._kill()
        except Exception:
            pass

    # -- worker management ------------------------------------------------------------------------
    def _ensure(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._proc is not None:
            self._kill()
        if self._started:
            self.restarts += 1
        self._started = True
        self.calls_since_reset = 0
        self._workdir = tempfile.mkdtemp(prefix="dataflow_sandbox_")
        self._stderr = open(os.path.join(self._workdir, ".stderr"), "wb")
        env = worker_environment(self._workdir)
        make_process_undumpable()  # before the first worker exists
        prefix, problem = pid_namespace_command() if self.use_pid_namespace else ([], "turned off")
        settings = {"memory_mb": self.memory_mb, "max_result_chars": self.max_result_chars,
                    "max_processes": self.max_processes, "max_file_mb": self.max_file_mb,
                    "own_user_namespace": "--user" in prefix, "landlock": self.use_landlock,
                    "environment": self.environment}
        self._proc = subprocess.Popen(
            [*prefix, sys.executable, "-I", "-B", str(WORKER), self.module_path, json.dumps(settings)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, cwd=self._workdir, env=env,
            start_new_session=True,
        )
        self.confinement = {"pid_namespace": bool(prefix), "pid_namespace_problem": problem}
        self._buffer = b""
        try:
            ready = self._read_line(self.startup_timeout, limit=_SPECS_LIMIT)
        except _TooLong:
            ready = "{}"
        if ready is None:
            reason = self._died("the worker did not start")
            raise ConfigError(f"cannot start the execution sandbox for {self.module_path}: {reason}")
        try:
            hello = json.loads(ready)
        except json.JSONDecodeError:
            hello = {}
        if not isinstance(hello, dict) or not hello.get("ready"):
            self._kill()
            error = hello.get("error") if isinstance(hello, dict) else None
            raise ConfigError(f"importing tools module {self.module_path} failed: "
                              f"{_cut(error) if isinstance(error, str) else 'the worker sent an unreadable reply'}")
        self.functions = [f for f in hello.get("functions") or [] if isinstance(f, str)]
        reported = hello.get("confinement")
        if isinstance(reported, dict):
            self.confinement.update({k: reported.get(k) for k in ("landlock", "rlimits")})
        _warn_missing(self.confinement)
        return self._proc

    def _read_line(self, timeout: float, limit: int = _SPECS_LIMIT) -> str | None:
        """One line from the worker within ``timeout`` (None: timed out or end of file);
        ``_TooLong`` once more than ``limit`` bytes arrive without a line end."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        self._eof = False
        while b"\n" not in self._buffer:
            if len(self._buffer) > limit:
                raise _TooLong()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                self._eof = True
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        if len(line) > limit:
            raise _TooLong()
        return line.decode("utf-8", errors="replace")

    def _died(self, what: str) -> str:
        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        tail = self._stderr_tail()
        self._kill()
        return _death(what, code, tail)

    def _exit_text(self, what: str, code: Any) -> str:
        """The death of the tool process, as the supervisor reported it."""
        return _death(what, code if isinstance(code, int) and not isinstance(code, bool) else None,
                      self._stderr_tail())

    def _stderr_tail(self, n: int = 300) -> str:
        if not self._workdir:
            return ""
        try:
            data = Path(self._workdir, ".stderr").read_bytes()[-n:]
        except OSError:
            return ""
        return " ".join(data.decode("utf-8", errors="replace").split())

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError, OSError):
                    proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
            for stream in (proc.stdin, proc.stdout):
                try:
                    if stream:
                        stream.close()
                except OSError:
                    pass
        if getattr(self, "_stderr", None) is not None:
            self._stderr.close()
            self._stderr = None
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


class ExecutionChecker(OperatorABC):
    """Runs every call of a row in the sandbox. Adds ``execution_ok``, ``execution_results``
    (one ``{"name", "ok", "result" | "error"}`` per call) and ``execution_reason``; a row with a
    failing call is dropped as ``failed_execution: ...`` unless ``keep_failed=True``.

    Each row starts from fresh module state (``Sandbox.reset``): a counter kept in a global goes
    1, 2 within a row and starts again at 1 in the next. When a call of a row times out or kills
    its worker, the row's later calls are not run on the fresh worker that replaces it (their
    state would silently be gone): each fails as ``StateLost: not run: the worker was restarted
    after call i ...``."""

    def __init__(self, module_path: str | os.PathLike, timeout: float = 5.0, memory_mb: int = 512,
                 max_result_chars: int = 2000, keep_failed: bool = False, max_processes: int = 32,
                 max_file_mb: int = 64):
        super().__init__()
        if not Path(module_path).exists():  # a user error: report it before any step (and LLM call) runs
            raise ConfigError(f"ExecutionChecker: tools module not found ({module_path}) — pass module_path= "
                              "a .py file or a folder of them")
        self.module_path = str(module_path)
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.max_result_chars = max_result_chars
        self.keep_failed = keep_failed
        self.max_processes = max_processes
        self.max_file_mb = max_file_mb

    def tool_specs(self) -> list[dict]:
        """OpenAI specs of the module's functions (type hints + docstrings), derived inside the
        sandbox (the module is never imported into this process)."""
        return sandboxed_tool_specs(self.module_path, timeout=max(self.timeout, 30.0))

    def run(self, storage: Any, input_answers_key: str = "answers", output_key: str = "execution_ok",
            output_results_key: str = "execution_results", output_reason_key: str = "execution_reason") -> RunReport:
        return self._run_step(
            storage, inputs={"input_answers_key": input_answers_key},
            outputs={"output_key": output_key, "output_results_key": output_results_key,
                     "output_reason_key": output_reason_key},
            params={"module": _module_fingerprint(self.module_path), "timeout": self.timeout,
                    "memory_mb": self.memory_mb, "max_result_chars": self.max_result_chars,
                    "keep_failed": self.keep_failed, "max_processes": self.max_processes,
                    "max_file_mb": self.max_file_mb},
            batch_fn=lambda rows: self.process_batch(rows, input_answers_key, output_key, output_results_key,
                                                     output_reason_key),
        )

    def process_batch(self, rows: list[dict], input_answers_key: str = "answers", output_key: str = "execution_ok",
                      output_results_key: str = "execution_results",
                      output_reason_key: str = "execution_reason") -> list[RowOutcome]:
        from ...tools.calls import read_calls

        outcomes = []
        with Sandbox(self.module_path, self.timeout, self.memory_mb, self.max_result_chars,
                     max_processes=self.max_processes, max_file_mb=self.max_file_mb) as sandbox:
            for row in rows:
                try:
                    calls = read_calls(row.get(input_answers_key, row.get("function_calls")))
                except (ValueError, json.JSONDecodeError) as exc:
                    outcomes.append(RowOutcome.drop(f"failed_execution: unreadable calls ({exc})"))
                    continue
                results, errors = [], []
                sandbox.reset()  # each row starts from fresh module state, never another row's
                lost = ""  # why the worker was replaced during this row: later calls would see fresh state
                for index, call in enumerate(calls):
                    if lost:
                        answer = {"ok": False, "error": f"StateLost: not run: the worker was restarted after {lost}, "
                                                        "so the state of the earlier calls is gone"}
                    else:
                        answer = sandbox.call(call["name"], call["arguments"])
                        if not sandbox.alive:
                            lost = f"call {index} ({call['name']}) failed"
                    entry: dict[str, Any] = {"name": call["name"], "ok": bool(answer.get("ok"))}
                    if answer.get("ok"):
                        entry["result"] = answer.get("result")
                        if answer.get("truncated"):
                            entry["truncated"] = True
                    else:
                        entry["error"] = answer.get("error", "unknown error")
                        errors.append(f"call {index} ({call['name']}): {entry['error']}")
                    results.append(entry)
                reason = "; ".join(errors)
                if errors and not self.keep_failed:
                    outcomes.append(RowOutcome.drop(f"failed_execution: {reason}"))
                else:
                    outcomes.append(RowOutcome.keep(merge_row(row, **{
                        output_key: not errors, output_results_key: results, output_reason_key: reason})))
            if sandbox.restarts:  # workers replaced after a call killed or hung its worker
                self.stat_update("worker_restarts", sandbox.restarts)
        return outcomes


def _module_fingerprint(path: str) -> str:
    """Hash of the module source(s), so an edited tool invalidates a reused step."""
    import hashlib

    p = Path(path)
    files = [p] if p.is_file() else sorted(p.glob("*.py")) if p.is_dir() else []
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]
