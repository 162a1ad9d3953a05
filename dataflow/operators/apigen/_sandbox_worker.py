"""The execution sandbox's worker process (run as a script: it imports nothing of dataflow).

``python _sandbox_worker.py <module file or folder> <memory_mb> <max_result_chars>``

It gives up what it does not need before any user code runs (no new privileges; when started as
root, every capability, so the non-dumpable parent's ``/proc/<pid>/environ`` and ``mem`` stay
closed to it), limits its address space (``RLIMIT_AS``), works in the temporary folder it was
started in, imports the user's functions, then answers one JSON request per stdin line,
``{"name": str, "arguments": {...}}``, with one JSON line on the protocol pipe:
``{"ok": true, "result": <JSON>, "truncated": bool}`` or ``{"ok": false, "error": "Type: message"}``.
``{"op": "specs"}`` asks for the OpenAI tool specs of the functions (derived here, so the tools
module is imported only inside the sandbox): ``{"ok": true, "specs": [...]}``.
Functions are called with keyword arguments only; arguments are data, never evaluated. Anything a
function prints goes to stderr, not to the protocol. The first line sent is
``{"ready": true, "functions": [...]}`` or ``{"ready": false, "error": ...}``.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sys


def _limit_memory(memory_mb: int) -> None:
    if memory_mb <= 0:
        return
    try:
        import resource

        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # pragma: no cover - non-Unix or not permitted
        pass


def _drop_privileges() -> None:
    """No new privileges, and for a root worker no capabilities at all (bounding, ambient,
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


def _encode(value: object, max_chars: int) -> tuple[object, bool]:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    if len(text) <= max_chars:
        return json.loads(text), False
    return text[:max_chars] + f"... [truncated {len(text) - max_chars} chars]", True


def _remove_workdir(workdir: str) -> None:
    """Delete the temporary folder this worker was started in. Called when stdin closes without
    the parent killing the worker first, i.e. the pipeline process died (a SIGKILL leaves it no
    chance to clean up)."""
    import shutil

    if os.path.basename(workdir).startswith("dataflow_sandbox_"):  # made by Sandbox (mkdtemp)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    module_path, memory_mb, max_chars = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    workdir = os.path.realpath(os.getcwd())
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # what functions print goes to stderr
    sys.stdout = sys.stderr

    def send(message: dict) -> None:
        protocol.write(json.dumps(message, ensure_ascii=False) + "\n")
        protocol.flush()

    try:
        _drop_privileges()
        functions = _load(module_path)
    except BaseException as exc:  # noqa: BLE001 - report any import failure to the parent
        send({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    _limit_memory(memory_mb)
    send({"ready": True, "functions": sorted(functions)})
    for line in sys.stdin:
        try:
            request = json.loads(line)
            if request.get("op") == "specs":
                send({"ok": True, "specs": _tool_specs(functions)})
                continue
            fn = functions.get(request["name"])
            if fn is None:
                send({"ok": False, "error": f"NameError: the module has no function {request['name']!r}"})
                continue
            arguments = request.get("arguments") or {}
            result = fn(**arguments)
            encoded, truncated = _encode(result, max_chars)
            send({"ok": True, "result": encoded, "truncated": truncated})
        except MemoryError:
            send({"ok": False, "error": "MemoryError: the function exceeded the memory limit", "restart": True})
            return
        except BaseException as exc:  # noqa: BLE001 - SystemExit etc. fail the call, not the worker
            message = str(exc)
            if len(message) > 500:
                message = message[:500] + "..."
            send({"ok": False, "error": f"{type(exc).__name__}: {message}"})
    _remove_workdir(workdir)  # stdin closed: the parent is gone


if __name__ == "__main__":
    main()
