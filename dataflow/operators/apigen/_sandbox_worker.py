"""The execution sandbox's worker (run as a script: it imports nothing of dataflow, except to
derive tool specs in the tool process).

``python _sandbox_worker.py <module file or folder> <memory_mb> <max_result_chars>``

Two processes, so that tool code never holds the pipe the pipeline reads:

- the **supervisor** (this script's main) talks to the pipeline over stdin/stdout. It never
  imports the tools module. It starts the tool process, forwards each request, and checks each
  reply before passing it on: one reply per call, with the request's id, a JSON object of the
  expected shape, at most ``_line_limit`` bytes, the result cut to ``max_result_chars`` and
  error text to ``ERROR_CHARS``. A reply that breaks these rules fails that call and the tool
  process is replaced; a reply left over from an earlier call is never taken for a later one.
  When the tool process dies during a call, the supervisor ends the same way (same exit code or
  signal), so the pipeline can say what happened.
- the **tool process** (``--tool``) imports the user's functions and runs them. It gives up what
  it does not need before any user code runs (no new privileges; when started as root, every
  capability, so the non-dumpable pipeline process's ``/proc/<pid>/environ`` and ``mem`` stay
  closed to it), then caps its address space (``RLIMIT_AS``). Whatever it prints goes to stderr.

Both work in the temporary folder they were started in, with the environment the pipeline gave
(an allow-list). Requests are one JSON line each: ``{"id": n, "name": str, "arguments": {...}}``
(called with keyword arguments only; arguments are data, never evaluated), answered with
``{"id": n, "ok": true, "result": <JSON>, "truncated": bool}`` or
``{"id": n, "ok": false, "error": "Type: message"}``; ``{"id": n, "op": "specs"}`` asks for the
OpenAI tool specs of the functions (derived in the tool process, so the module is imported only
inside the sandbox): ``{"id": n, "ok": true, "specs": [...]}``. The first line sent is
``{"ready": true, "functions": [...]}`` or ``{"ready": false, "error": ...}``.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import select
import signal
import subprocess
import sys

ERROR_CHARS = 500  # error text is cut to this, wherever it comes from
_SPECS_LIMIT = 8 << 20  # bytes of one specs or ready reply


def _drop_privileges() -> None:
    """No new privileges, and for a root process no capabilities at all (bounding, ambient,
    effective, permitted and inheritable sets): root without CAP_SYS_PTRACE cannot read a
    non-dumpable process's environment or memory. Linux only; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs, pr_capbset_drop, pr_cap_ambient, pr_cap_ambient_clear_all = 38, 24, 47, 4
    libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0)
    if os.geteuid() != 0:
        return
    libc.prctl(pr_cap_ambient, pr_cap_ambient_clear_all, 0, 0, 0)
    for cap in range(64):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0 and ctypes.get_errno() == 22:  # EINVAL: no such cap
            break

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (Data * 2)()  # all zero
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed: the sandbox worker cannot drop root's capabilities")


def _make_undumpable() -> None:
    """Close this process's /proc files and ptrace to the tool process (same user)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0


def _limit_memory(memory_mb: int) -> None:
    if memory_mb <= 0:
        return
    try:
        import resource

        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # pragma: no cover - non-Unix or not permitted
        pass


def _cut(text: str, limit: int = ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _encode(value: object, max_chars: int) -> tuple[object, bool]:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    if len(text) <= max_chars:
        return json.loads(text), False
    return text[:max_chars] + f"... [truncated {len(text) - max_chars} chars]", True


def _line_limit(max_chars: int) -> int:
    """Bytes one call's reply may take: a result of ``max_chars`` JSON characters, each up to
    six bytes once escaped again, plus room for the envelope."""
    return 6 * max_chars + 65536


# -- the tool process ------------------------------------------------------------------------------
def _tool_specs(functions: dict) -> list:
    """OpenAI specs of the loaded functions, by dataflow's own reader (imported from the
    installation this worker belongs to)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    if root not in sys.path:
        sys.path.insert(0, root)
    from dataflow.tools.from_python import function_to_tool

    return [function_to_tool(fn) for fn in functions.values()]


def _load(path: str) -> dict:
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(path, f) for f in os.listdir(path) if f.endswith(".py") and not f.startswith("_"))
    functions: dict = {}
    sys.path.insert(0, os.path.dirname(os.path.abspath(files[0])) if files else path)
    for i, file in enumerate(files):
        name = f"_sandboxed_tools_{i}"
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        public = getattr(module, "__all__", None)
        for attr, obj in vars(module).items():
            if not inspect.isfunction(obj):
                continue
            if public is not None:
                if attr in public:
                    functions[attr] = obj
            elif not attr.startswith("_") and obj.__module__ == name:
                functions[attr] = obj
    return functions


def _error(exc: BaseException) -> str:
    return _cut(f"{_cut(type(exc).__name__, 100)}: {_cut(str(exc))}")


def serve_tools(module_path: str, memory_mb: int, max_chars: int) -> None:
    """The tool process: import the functions, then answer requests from stdin on fd 1 (the
    pipe to the supervisor); what functions print goes to stderr."""
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message: dict) -> None:
        protocol.write(json.dumps(message, ensure_ascii=False) + "\n")
        protocol.flush()

    try:
        _drop_privileges()
        functions = _load(module_path)
    except BaseException as exc:  # noqa: BLE001 - report any import failure to the parent
        send({"ready": False, "error": _error(exc)})
        return
    _limit_memory(memory_mb)
    send({"ready": True, "functions": sorted(functions)})
    for line in sys.stdin:
        request_id = None
        try:
            request = json.loads(line)
            request_id = request.get("id")
            if request.get("op") == "specs":
                send({"id": request_id, "ok": True, "specs": _tool_specs(functions)})
                continue
            fn = functions.get(request["name"])
            if fn is None:
                send({"id": request_id, "ok": False,
                      "error": f"NameError: the module has no function {_cut(str(request['name']), 200)!r}"})
                continue
            result = fn(**(request.get("arguments") or {}))
            encoded, truncated = _encode(result, max_chars)
            send({"id": request_id, "ok": True, "result": encoded, "truncated": truncated})
        except MemoryError:
            send({"id": request_id, "ok": False, "error": "MemoryError: the function exceeded the memory limit",
                  "restart": True})
            return
        except BaseException as exc:  # noqa: BLE001 - SystemExit etc. fail the call, not the worker
            send({"id": request_id, "ok": False, "error": _error(exc)})


# -- the supervisor --------------------------------------------------------------------------------
class ProtocolViolation(Exception):
    """The tool process wrote something that is not the one reply the call expects."""


class _ToolProcess:
    """The child that runs the functions, and a bounded reader of its replies."""

    def __init__(self, module_path: str, memory_mb: int, max_chars: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-B", os.path.abspath(__file__), "--tool", module_path, str(memory_mb),
             str(max_chars)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, close_fds=True,
        )
        self.fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        self.buffer = b""

    def pending(self) -> bool:
        """Whether the tool process wrote anything (or exited) since its last reply."""
        return bool(self.buffer) or bool(select.select([self.fd], [], [], 0)[0])

    def read_line(self, limit: int) -> bytes | None:
        """One line, or None at end of file; ``ProtocolViolation`` past ``limit`` bytes."""
        while b"\n" not in self.buffer:
            if len(self.buffer) > limit:
                raise ProtocolViolation(f"a reply longer than {limit} bytes")
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        if len(line) > limit:
            raise ProtocolViolation(f"a reply longer than {limit} bytes")
        return line

    def send(self, line: bytes) -> bool:
        try:
            self.proc.stdin.write(line)  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            return True
        except (BrokenPipeError, OSError):
            return False

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass


def _end_like(code: int) -> None:
    """End this process the way the tool process ended (exit code or signal)."""
    sys.stdout.flush()
    if code < 0:
        try:
            signal.signal(-code, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL, SIGSTOP: no handler to reset
            pass
        try:
            os.kill(os.getpid(), -code)
        except (OSError, ValueError):
            pass
        os._exit(128 - code)
    os._exit(code)


def _checked_reply(raw: bytes, request: dict, max_chars: int) -> dict:
    """The tool process's reply to ``request``, in the shape the pipeline expects."""
    try:
        reply = json.loads(raw)
    except ValueError:
        raise ProtocolViolation("a reply that is not JSON") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ProtocolViolation("a reply that is not a JSON object with a boolean 'ok'")
    if reply.get("id") != request["id"]:
        raise ProtocolViolation("a reply to another call")
    out: dict = {"id": request["id"], "ok": reply["ok"]}
    if not reply["ok"]:
        error = reply.get("error")
        out["error"] = _cut(error) if isinstance(error, str) else "Error: (no error text)"
        if reply.get("restart") is True:
            out["restart"] = True
    elif request.get("op") == "specs":
        specs = reply.get("specs")
        if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
            raise ProtocolViolation("specs that are not a list of objects")
        out["specs"] = specs
    else:
        if "result" not in reply:
            raise ProtocolViolation("a reply without a result")
        out["result"], truncated = _encode(reply["result"], max_chars)
        out["truncated"] = truncated or reply.get("truncated") is True
    return out


def _checked_ready(raw: bytes | None) -> dict:
    if raw is None:
        return {"ready": False, "error": "WorkerDied: the tool process exited while importing the module"}
    try:
        hello = json.loads(raw)
    except ValueError:
        hello = None
    if not isinstance(hello, dict) or not isinstance(hello.get("ready"), bool):
        return {"ready": False, "error": "ProtocolError: the tool process sent an unreadable first line"}
    if not hello["ready"]:
        error = hello.get("error")
        return {"ready": False, "error": _cut(error) if isinstance(error, str) else "Error: (no error text)"}
    functions = hello.get("functions")
    if not isinstance(functions, list) or not all(isinstance(f, str) and len(f) <= 200 for f in functions):
        return {"ready": False, "error": "ProtocolError: the tool process sent an unreadable function list"}
    return {"ready": True, "functions": functions}


def supervise(module_path: str, memory_mb: int, max_chars: int) -> None:
    workdir = os.path.realpath(os.getcwd())
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _make_undumpable()

    def send(message: dict) -> None:
        protocol.write(json.dumps(message, ensure_ascii=False) + "\n")
        protocol.flush()

    def start() -> tuple[_ToolProcess, dict]:
        tool = _ToolProcess(module_path, memory_mb, max_chars)
        try:
            hello = _checked_ready(tool.read_line(_SPECS_LIMIT))
        except ProtocolViolation as exc:
            hello = {"ready": False, "error": f"ProtocolError: the tool process sent {exc}"}
        return tool, hello

    tool, hello = start()
    send(hello)
    if not hello["ready"]:
        tool.kill()
        return
    try:
        for line in sys.stdin:
            request = json.loads(line)  # from the pipeline: trusted
            if tool.pending():  # left over from an earlier call, or the process has exited
                tool.kill()
                tool, hello = start()
                if not hello["ready"]:
                    send({"id": request["id"], "ok": False, "error": f"WorkerDied: restarting: {hello['error']}"})
                    return
            if not tool.send(line.encode("utf-8") if line.endswith("\n") else (line + "\n").encode("utf-8")):
                _end_like(tool.proc.wait())
            limit = _SPECS_LIMIT if request.get("op") == "specs" else _line_limit(max_chars)
            try:
                raw = tool.read_line(limit)
                if raw is None:  # the tool process died during the call: end the same way
                    _end_like(tool.proc.wait())
                reply = _checked_reply(raw, request, max_chars)  # type: ignore[arg-type]
            except ProtocolViolation as exc:
                tool.kill()
                send({"id": request["id"], "ok": False,
                      "error": f"ProtocolError: the tool process sent {exc}; it was replaced"})
                tool, hello = start()
                if not hello["ready"]:
                    return
                continue
            send(reply)
            if reply.get("restart"):
                tool.kill()
                return
    finally:
        tool.kill()
    _remove_workdir(workdir)  # stdin closed: the parent is gone


def _remove_workdir(workdir: str) -> None:
    """Delete the temporary folder this worker was started in. Called when stdin closes without
    the parent killing the worker first, i.e. the pipeline process died (a SIGKILL leaves it no
    chance to clean up)."""
    import shutil

    if os.path.basename(workdir).startswith("dataflow_sandbox_"):  # made by Sandbox (mkdtemp)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    if sys.argv[1] == "--tool":
        serve_tools(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        supervise(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))


if __name__ == "__main__":
    main()
