"""Child process that hosts llama.cpp's OpenAI-compatible server (``xllamacpp.Server``).

Run by ``llama_server.LlamaServerProcess`` as ``python _llama_child.py '<json config>'``; uses
only the standard library and xllamacpp. Protocol:

- on success it prints one JSON line ``{"url": "http://127.0.0.1:PORT"}`` to stdout; on failure
  ``{"error": "..."}`` and exits with status 1;
- it exits as soon as its stdin reaches end of file, which happens when the parent closes the
  pipe (clean stop) or dies in any way, even by SIGKILL (the kernel closes the parent's end);
- on Linux it also asks the kernel to SIGKILL it when the parent dies (``PR_SET_PDEATHSIG``;
  the signal is tied to the thread that forked, so the parent forks from a thread that lives
  as long as the parent process).
"""

import json
import os
import signal
import sys
import threading

# Running this file puts its folder first on sys.path; nothing from there is wanted.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except Exception:  # pragma: no cover - the stdin watch below still applies
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)


def _exit_on_stdin_eof() -> None:
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main() -> None:
    config = json.loads(sys.argv[1])
    # Keep the real stdout for the protocol; anything native code prints goes to stderr.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    if config.get("pdeathsig"):
        _die_with_parent(int(config["parent_pid"]))
    threading.Thread(target=_exit_on_stdin_eof, name="stdin-eof", daemon=True).start()
    try:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = config["model"]
        params.model_alias = {config["alias"]} if isinstance(params.model_alias, (set, list)) else config["alias"]
        params.n_ctx = int(config["n_ctx"])
        params.n_parallel = int(config["n_parallel"])
        params.cpuparams.n_threads = int(config["n_threads"])
        params.cpuparams_batch.n_threads = int(config["n_threads"])
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # the server binds a free port itself: no race with another process
        params.verbosity = 0
        params.ui = False
        for name, value in (config.get("params") or {}).items():
            setattr(params, name, value)
        server = xllamacpp.Server(params)
        url = server.listening_address
    except BaseException as exc:  # report, then exit: the parent shows this message
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), file=protocol, flush=True)
        os._exit(1)
    print(json.dumps({"url": url, "pid": os.getpid()}), file=protocol, flush=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    threading.Event().wait()  # serve until stdin closes or a signal ends the process
    del server


if __name__ == "__main__":
    main()
