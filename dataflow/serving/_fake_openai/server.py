"""``FakeOpenAIServer``: a loopback fake server in a background thread or a subprocess, its
options changeable while it runs, its counters and recorded requests readable."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import threading
import urllib.request
from typing import Any, Iterable

from .._aio import new_event_loop
from .app import start_site
from .control import TOKEN_ENV, TOKEN_HEADER, credential_tag
from .faults import DEFAULT_FAULTS, check_faults
from .state import CONFIG_KEYS, Responder, ServerState, check_option, load_responder


class FakeOpenAIServer:
    """Loopback OpenAI-compatible server; see the module docstring.

    ``with FakeOpenAIServer(latency=0.05) as server: ... server.url ... server.request_count``.
    Options (``latency``, ``fault_rate``, ``responder``, ...) can be changed while it runs by
    assigning the attribute; in subprocess mode ``responder`` must be a ``"module:function"``
    and is fixed at start (the control endpoint never loads code). ``control_token`` is the
    random token its ``/_...`` endpoints require (sent by this object's own calls).
    """

    def __init__(
        self,
        responder: Responder | str | None = None,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        faults: Iterable[str] = DEFAULT_FAULTS,
        retry_after: float = 0.1,
        seed: int = 0,
        port: int = 0,
        in_process: bool = True,
        *,
        hang_seconds: float = 30.0,
        record: bool = True,
        max_faults_per_request: int | None = None,
        host: str = "127.0.0.1",
        model: str = "fake-model",
        startup_timeout: float = 20.0,
    ):
        self.host = host
        self.port = port
        self.in_process = in_process
        self.control_token = secrets.token_urlsafe(32)
        self.startup_timeout = startup_timeout
        if not in_process and responder is not None and not isinstance(responder, str):
            responder = _dotted_path(responder)
        if in_process and isinstance(responder, str):
            responder = load_responder(responder)
        self._options: dict[str, Any] = dict(
            responder=responder, latency=latency, fault_rate=fault_rate, faults=check_faults(faults),
            retry_after=retry_after, seed=seed, hang_seconds=hang_seconds, record=record,
            max_faults_per_request=max_faults_per_request, model=model,
        )
        self._options.update({k: check_option(k, v) for k, v in self._options.items() if k != "responder"})
        self._state: ServerState | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proc: subprocess.Popen | None = None
        self._runner = None

    # -- options, readable and writable while running ------------------------------------------
    def __getattr__(self, name: str) -> Any:
        options = self.__dict__.get("_options")
        if options is not None and name in options:
            return options[name]
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in CONFIG_KEYS and "_options" in self.__dict__:
            self.configure(**{name: value})
        else:
            super().__setattr__(name, value)

    def configure(self, **options: Any) -> None:
        """Change options (latency, fault_rate, faults, responder, ...) now."""
        unknown = set(options) - CONFIG_KEYS
        if unknown:
            raise ValueError(f"unknown fake server options {sorted(unknown)}")
        options = {k: v if k == "responder" else check_option(k, v) for k, v in options.items()}
        if not self.in_process and "responder" in options and self._proc is not None:
            raise ValueError(
                "the responder of a subprocess fake server is chosen when it starts "
                "(FakeOpenAIServer(responder=..., in_process=False)); stop it and start another"
            )
        if not self.in_process and options.get("responder") is not None and not isinstance(options["responder"], str):
            options["responder"] = _dotted_path(options["responder"])
        if self.in_process and isinstance(options.get("responder"), str):
            options["responder"] = load_responder(options["responder"])
        self._options.update(options)
        if self._state is not None:
            self._state.configure(**options)
        elif self._proc is not None:
            self._http("POST", "/_config", options)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "FakeOpenAIServer":
        if self._thread is not None or self._proc is not None:
            return self
        if self.in_process:
            self._start_thread()
        else:
            self._start_process()
        return self

    def _start_thread(self) -> None:
        state = ServerState(**self._options, token=self.control_token)
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._runner, self.port = loop.run_until_complete(start_site(state, self.host, self.port))
            except BaseException as exc:  # noqa: BLE001 - handed to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._runner.cleanup())
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()

        self._thread = threading.Thread(target=main, name="fake-openai-server", daemon=True)
        self._thread.start()
        if not ready.wait(self.startup_timeout) or failure:
            self._thread = None
            raise RuntimeError(f"fake server did not start: {failure[0] if failure else 'timeout'}")
        self._state = state

    def _start_process(self) -> None:
        opts = self._options
        cmd = [sys.executable, "-m", "dataflow.cli", "fake-server", "--host", self.host,
               "--port", str(self.port), "--latency", str(opts["latency"]),
               "--fault-rate", str(opts["fault_rate"]), "--faults", ",".join(opts["faults"]),
               "--retry-after", str(opts["retry_after"]), "--seed", str(opts["seed"]),
               "--hang-seconds", str(opts["hang_seconds"]), "--model", opts["model"]]
        if opts["max_faults_per_request"] is not None:
            cmd += ["--max-faults-per-request", str(opts["max_faults_per_request"])]
        if not opts["record"]:
            cmd.append("--no-record")
        if opts["responder"]:
            cmd += ["--responder", opts["responder"]]
        env = dict(os.environ)
        env[TOKEN_ENV] = self.control_token
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
        line = _readline_with_timeout(self._proc, self.startup_timeout)
        if not line.startswith("FAKE_SERVER_URL "):
            self._proc.kill()
            self._proc.wait()
            self._proc = None
            raise RuntimeError(f"fake server subprocess did not start (said {line!r})")
        url = line.split(" ", 1)[1].strip()
        self.port = int(url.split(":")[2].split("/")[0])

    def stop(self) -> None:
        if self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None
            self._loop = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout:
                self._proc.stdout.close()
            self._proc = None

    close = stop

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- addresses and counters -----------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1`` (what OpenAI clients call ``base_url``)."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def url(self) -> str:
        """The full chat-completions URL (what ``APILLMServing_request(api_url=...)`` takes)."""
        return f"{self.base_url}/chat/completions"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stats(self) -> dict:
        """``{"requests", "completed", "abandoned", "faults": {kind: n}, "statuses", "recorded"}``:
        ``requests`` counts chat requests received, ``completed`` 200 replies fully delivered."""
        if self._state is not None:
            return self._state.stats()
        return self._http("GET", "/_stats")

    @property
    def request_count(self) -> int:
        return int(self.stats()["requests"])

    @property
    def completed_count(self) -> int:
        return int(self.stats()["completed"])

    @property
    def received(self) -> list[dict]:
        """Bodies of the chat requests received (when ``record`` is on), in arrival order."""
        if self._state is not None:
            return [r["body"] for r in self._state.records]
        return self._http("GET", "/_requests")

    def requests(self, completed_only: bool = False) -> list[dict]:
        """Full records ``{"body", "headers", "completed"}`` of the chat requests received."""
        if self._state is not None:
            records = list(self._state.records)
            return [r for r in records if r["completed"]] if completed_only else records
        query = "?full=1" + ("&completed=1" if completed_only else "")
        return self._http("GET", "/_requests" + query)

    def reset(self) -> None:
        """Zero the counters and forget the recorded requests."""
        if self._state is not None:
            self._state.reset()
        else:
            self._http("POST", "/_reset", {})

    def credential_tag(self, value: str) -> str:
        """What this server's request records hold instead of the credential header ``value``
        (e.g. ``server.credential_tag(f"Bearer {key}")``)."""
        return credential_tag(self.control_token, value)

    def _http(self, method: str, path: str, payload: Any = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        req = urllib.request.Request(f"http://{host}:{self.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              TOKEN_HEADER: self.control_token})
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback only
            return json.loads(resp.read())

    def __repr__(self) -> str:
        mode = "thread" if self.in_process else "subprocess"
        return f"FakeOpenAIServer({self.url if self.port else 'not started'}, {mode})"


def _dotted_path(func: Any) -> str:
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        raise ValueError(
            "a subprocess fake server needs a responder it can import: pass 'module:function' "
            f"(got {func!r})"
        )
    return f"{module}:{qualname}"


def _readline_with_timeout(proc: subprocess.Popen, timeout: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else ""

