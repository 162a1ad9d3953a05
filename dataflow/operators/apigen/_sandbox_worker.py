"""The execution sandbox's worker (run as a script: it imports nothing of dataflow, except to
derive tool specs in the tool process).

``python _sandbox_worker.py <module file or folder> <settings JSON>``, where the settings are
``{"memory_mb", "max_result_chars", "max_processes", "max_file_mb", "own_user_namespace",
"landlock"}`` (see ``execution.Sandbox``). The pipeline starts it in a new PID namespace when it
can (``unshare``): then this process is the namespace's init, and when it dies the kernel kills
every process a tool started, whatever session or group it moved to.

Two processes, so that tool code never holds the pipe the pipeline reads:

- the **supervisor** (this script's main) talks to the pipeline over stdin/stdout. It never
  imports the tools module. It starts the tool process, forwards each request, and checks each
  reply before passing it on: one reply per call, with the request's id, a JSON object of the
  expected shape, at most ``_line_limit`` bytes, the result cut to ``max_result_chars`` and
  error text to ``ERROR_CHARS``. A reply that breaks these rules fails that call and the tool
  process is replaced; a reply left over from an earlier call is never taken for a later one.
  When the tool process dies during a call, the supervisor answers that call with how it ended
  (``{"id": n, "ok": false, "exit": <code or -signal>, "restart": true}``) and exits, and the
  pipeline starts a fresh worker.
- the **tool process** (``--tool``) gives up what it does not need before it imports any user
  code (``_confine``): no new privileges, and when started as root every capability (so the
  non-dumpable pipeline process's ``/proc/<pid>/environ`` and ``mem`` stay closed to it); resource
  limits (``RLIMIT_AS`` memory, ``RLIMIT_NPROC`` processes, ``RLIMIT_FSIZE`` file size,
  ``RLIMIT_CORE`` 0); and Landlock (Linux 5.13+), which lets it create, write, remove or rename
  files only inside its temporary folder (and write ``/dev/null``) and, from Landlock ABI 6 (Linux
  6.12), signal only processes it started. What is in force is reported in its first line. Then
  it imports the user's functions and runs them; whatever they print goes to stderr.

Both work in the temporary folder they were started in, with the environment the pipeline gave
(an allow-list). Requests are one JSON line each: ``{"id": n, "name": str, "arguments": {...}}``
(called with keyword arguments only; arguments are data, never evaluated), answered with
``{"id": n, "ok": true, "result": <JSON>, "truncated": bool}`` or
``{"id": n, "ok": false, "error": "Type: message"}``; ``{"id": n, "op": "specs"}`` asks for the
OpenAI tool specs of the functions (derived in the tool process, so the module is imported only
inside the sandbox): ``{"id": n, "ok": true, "specs": [...]}``. ``{"id": n, "op": "state"}`` asks
for the environment's data (``{"id": n, "ok": true, "state": {...}}``: the public JSON attributes
of the environment instance, or the module's JSON globals); ``{"id": n, "op": "reset"}`` makes the
supervisor replace the tool process with a fresh one and empty the folder (``{"id": n, "ok":
true}``), so nothing of earlier calls survives. With ``settings["environment"] = {"class": name,
"data": JSON file}`` the tool process builds ``name(<the file's data>)`` after importing the module
and its public methods are the tools (a stateful environment, as in tau-bench and APIGen-MT). The first line sent is
``{"ready": true, "functions": [...], "confinement": {...}}`` or ``{"ready": false, "error": ...}``.
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


def _set_limit(name: str, value: int) -> str:
    """Set one resource limit (soft and hard); '' or why it could not be set."""
    try:
        import resource

        resource.setrlimit(getattr(resource, name), (value, value))
        return ""
    except (ImportError, AttributeError, ValueError, OSError) as exc:  # pragma: no cover - non-Unix
        return f"{name}: {exc}"


def _threads_of_user(uid: int) -> int:
    """Threads (what ``RLIMIT_NPROC`` counts) of processes whose real user is ``uid``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                total += int(fields["Threads"])
        except (OSError, KeyError, ValueError, IndexError):
            continue
    return total


def _set_rlimits(settings: dict) -> dict:
    """Core dumps off, file size, address space and process count capped. ``RLIMIT_NPROC``
    counts every thread of the real user: in a user namespace of our own only ours, else all of
    the user's, so then the cap is what the user runs now plus ``max_processes``. The kernel does
    not apply it to root (uid 0)."""
    applied: dict = {}
    problems = [_set_limit("RLIMIT_CORE", 0)]
    if settings.get("max_file_mb", 0) > 0:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails (EFBIG), not the process
        problems.append(_set_limit("RLIMIT_FSIZE", settings["max_file_mb"] << 20))
        applied["file_mb"] = settings["max_file_mb"]
    if settings.get("max_processes", 0) > 0 and hasattr(os, "getuid"):
        if os.getuid() == 0:
            applied["processes"] = "the kernel does not apply RLIMIT_NPROC to root"
        else:
            base = 2 if settings.get("own_user_namespace") else _threads_of_user(os.getuid())
            problems.append(_set_limit("RLIMIT_NPROC", base + settings["max_processes"]))
            applied["processes"] = settings["max_processes"]
    if settings.get("memory_mb", 0) > 0:
        problems.append(_set_limit("RLIMIT_AS", settings["memory_mb"] << 20))
        applied["memory_mb"] = settings["memory_mb"]
    problems = [p for p in problems if p]
    if problems:
        applied["problems"] = "; ".join(problems)
    return applied


# Landlock (linux/landlock.h): the same syscall numbers on every architecture
_LANDLOCK_CREATE_RULESET, _LANDLOCK_ADD_RULE, _LANDLOCK_RESTRICT_SELF = 444, 445, 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_FS_WRITE_FILE = 1 << 1
_FS_CHANGES = (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12)
#            remove dir, remove file, make char, make dir, make reg, make sock, make fifo, make block, make sym
_FS_REFER, _FS_TRUNCATE = 1 << 13, 1 << 14  # ABI 2, ABI 3
_SCOPE_SIGNAL = 1 << 1  # ABI 6


def _landlock(workdir: str) -> dict:
    """Confine this process and its children with Landlock: files may be created, written,
    truncated, removed, linked or renamed only beneath ``workdir`` (and ``/dev/null`` written);
    reading and running stay allowed. From ABI 6, signals reach only processes in the same
    domain. Returns ``{"abi": n, "signals": bool}``, or ``{"abi": 0, "problem": why}``."""
    if not sys.platform.startswith("linux"):
        return {"abi": 0, "problem": "Landlock is a Linux feature"}
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                       ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION))
    if abi <= 0:
        return {"abi": 0, "problem": f"this kernel does not offer it ({os.strerror(ctypes.get_errno())})"}

    class RulesetAttr(ctypes.Structure):
        _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                    ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    handled = _FS_WRITE_FILE | _FS_CHANGES | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    scoped = _SCOPE_SIGNAL if abi >= 6 else 0
    attr = RulesetAttr(handled, 0, scoped)
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # the fields this ABI knows
    ruleset = libc.syscall(_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return {"abi": 0, "problem": f"creating a ruleset failed ({os.strerror(ctypes.get_errno())})"}
    try:
        file_rights = _FS_WRITE_FILE | (_FS_TRUNCATE if abi >= 3 else 0)
        for path, rights in ((workdir, handled), ("/dev/null", file_rights)):
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = PathBeneath(rights, fd)
                if libc.syscall(_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_LANDLOCK_RULE_PATH_BENEATH),
                                ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    return {"abi": 0, "problem": f"adding a rule for {path} failed "
                                                 f"({os.strerror(ctypes.get_errno())})"}
            finally:
                os.close(fd)
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS, required by landlock_restrict_self
        if libc.syscall(_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            return {"abi": 0, "problem": f"restricting the process failed ({os.strerror(ctypes.get_errno())})"}
    finally:
        os.close(ruleset)
    return {"abi": int(abi), "signals": bool(scoped)}


def _confine(settings: dict) -> dict:
    """What the tool process gives up before any user code runs; returns what is in force."""
    _drop_privileges()
    confinement: dict = {"rlimits": _set_rlimits(settings)}
    if settings.get("landlock", True):
        confinement["landlock"] = _landlock(os.getcwd())
    else:
        confinement["landlock"] = {"abi": 0, "problem": "turned off"}
    return confinement


def _cut(text: str, limit: int = ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


#: room a cut result may take beyond ``max_chars`` for its marker (``... [truncated N chars of JSON]``)
_MARK_ROOM = 64


def _encode(value: object, max_chars: int) -> tuple[object, bool]:
    """``(result, truncated)``: ``value`` as a JSON value (objects JSON cannot hold by their
    ``repr``). A string longer than ``max_chars`` keeps its first ``max_chars`` characters, as
    written (nothing escaped); another value whose JSON text is longer becomes the first
    ``max_chars`` characters of that text. Either way ``... [truncated N chars]`` follows (``of
    JSON`` for the text of a non-string), N the characters removed."""
    if isinstance(value, str):
        if len(value) <= max_chars:
            return value, False
        return value[:max_chars] + f"... [truncated {len(value) - max_chars} chars]", True
    text = json.dumps(value, ensure_ascii=False, default=repr)
    if len(text) <= max_chars:
        return json.loads(text), False
    return text[:max_chars] + f"... [truncated {len(text) - max_chars} chars of JSON]", True


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


def _load(path: str, environment: dict | None = None) -> tuple[dict, object]:
    """The module's public functions, and the object whose data is the environment's state (the
    module, or the instance of ``environment["class"]`` built from the JSON file
    ``environment["data"]``, whose public methods are then the tools)."""
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(path, f) for f in os.listdir(path) if f.endswith(".py") and not f.startswith("_"))
    functions: dict = {}
    holder: object = None
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
        holder = module if holder is None else holder
        cls = vars(module).get((environment or {}).get("class") or "")
        if inspect.isclass(cls):
            data_path = environment.get("data")
            if data_path:
                with open(data_path, encoding="utf-8") as fh:
                    holder = cls(json.load(fh))
            else:
                holder = cls()
            functions = {attr: getattr(holder, attr) for attr, member in inspect.getmembers(cls)
                         if not attr.startswith("_") and inspect.isfunction(member)}
    wanted = (environment or {}).get("class")
    if wanted and type(holder).__name__ != wanted:
        raise NameError(f"the module has no class {wanted!r}")
    return functions, holder


def _state(holder: object) -> dict:
    """The environment's data: the public attributes of the instance (or module globals) that
    are JSON values (dict, list, str, number, bool, None)."""
    data = {}
    for attr, value in vars(holder).items():
        if not attr.startswith("_") and isinstance(value, (dict, list, str, int, float, bool, type(None))):
            data[attr] = value
    return data


def _error(exc: BaseException) -> str:
    return _cut(f"{_cut(type(exc).__name__, 100)}: {_cut(str(exc))}")


def serve_tools(module_path: str, settings: dict) -> None:
    """The tool process: confine itself, import the functions, then answer requests from stdin
    on fd 1 (the pipe to the supervisor); what functions print goes to stderr."""
    max_chars = settings["max_result_chars"]
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message: dict) -> None:
        protocol.write(json.dumps(message, ensure_ascii=False) + "\n")
        protocol.flush()

    try:
        confinement = _confine(settings)
    except BaseException as exc:  # noqa: BLE001 - never run user code half confined
        send({"ready": False, "error": f"SandboxError: cannot confine the tool process: {_error(exc)}"})
        return
    try:
        functions, holder = _load(module_path, settings.get("environment"))
    except MemoryError:
        send({"ready": False, "error": f"MemoryError: importing the module took more than memory_mb="
                                       f"{settings.get('memory_mb')} MB of address space"})
        return
    except BaseException as exc:  # noqa: BLE001 - report any import failure to the parent
        send({"ready": False, "error": _error(exc)})
        return
    send({"ready": True, "functions": sorted(functions), "confinement": confinement})
    for line in sys.stdin:
        request_id = None
        try:
            request = json.loads(line)
            request_id = request.get("id")
            if request.get("op") == "specs":
                send({"id": request_id, "ok": True, "specs": _tool_specs(functions)})
                continue
            if request.get("op") == "state":
                state, _ = _encode(_state(holder), _SPECS_LIMIT)
                send({"id": request_id, "ok": True, "state": state})
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

    def __init__(self, module_path: str, settings: dict):
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-B", os.path.abspath(__file__), "--tool", module_path, json.dumps(settings)],
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
    elif request.get("op") == "state":
        if not isinstance(reply.get("state"), dict):
            raise ProtocolViolation("a state that is not a JSON object")
        out["state"] = reply["state"]
    else:
        if "result" not in reply:
            raise ProtocolViolation("a reply without a result")
        cut_already = reply.get("truncated") is True  # the tool process cut it: its marker may follow
        out["result"], truncated = _encode(reply["result"], max_chars + _MARK_ROOM if cut_already else max_chars)
        out["truncated"] = truncated or cut_already
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
    confinement = hello.get("confinement")
    return {"ready": True, "functions": functions, "confinement": confinement if isinstance(confinement, dict) else {}}


def supervise(module_path: str, settings: dict) -> None:
    workdir = os.path.realpath(os.getcwd())
    max_chars = settings["max_result_chars"]
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _make_undumpable()

    def send(message: dict) -> None:
        protocol.write(json.dumps(message, ensure_ascii=False) + "\n")
        protocol.flush()

    def start() -> tuple[_ToolProcess, dict]:
        tool = _ToolProcess(module_path, settings)
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
            if request.get("op") == "reset":  # a fresh tool process: no state of earlier calls survives
                tool.kill()
                _clear_workdir(workdir)
                tool, hello = start()
                send({"id": request["id"], "ok": hello["ready"], **({} if hello["ready"] else
                                                                     {"error": hello["error"], "restart": True})})
                if not hello["ready"]:
                    return
                continue
            if tool.pending():  # left over from an earlier call, or the process has exited
                tool.kill()
                tool, hello = start()
                if not hello["ready"]:
                    send({"id": request["id"], "ok": False, "error": f"WorkerDied: restarting: {hello['error']}"})
                    return
            sent = tool.send(line.encode("utf-8") if line.endswith("\n") else (line + "\n").encode("utf-8"))
            limit = _SPECS_LIMIT if request.get("op") in ("specs", "state") else _line_limit(max_chars)
            try:
                raw = tool.read_line(limit) if sent else None
                if raw is None:  # the tool process died: say how, and let the pipeline start afresh
                    send({"id": request["id"], "ok": False, "exit": tool.proc.wait(), "restart": True})
                    return
                reply = _checked_reply(raw, request, max_chars)
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
                return
    finally:
        tool.kill()
    _remove_workdir(workdir)  # stdin closed: the parent is gone


def _clear_workdir(workdir: str) -> None:
    """Remove the files earlier calls left in the worker's folder (a reset keeps only the
    pipeline's ``.stderr``)."""
    import shutil

    for entry in os.listdir(workdir):
        if entry == ".stderr":
            continue
        path = os.path.join(workdir, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


def _remove_workdir(workdir: str) -> None:
    """Delete the temporary folder this worker was started in. Called when stdin closes without
    the parent killing the worker first, i.e. the pipeline process died (a SIGKILL leaves it no
    chance to clean up)."""
    import shutil

    if os.path.basename(workdir).startswith("dataflow_sandbox_"):  # made by Sandbox (mkdtemp)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    if sys.argv[1] == "--tool":
        serve_tools(sys.argv[2], json.loads(sys.argv[3]))
    else:
        supervise(sys.argv[1], json.loads(sys.argv[2]))


if __name__ == "__main__":
    main()
