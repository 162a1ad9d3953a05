"""A loopback OpenAI-compatible HTTP server for tests and benchmarks (product code, like httpx's
``MockTransport``).

Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``, and for the test
harness ``GET /_stats`` (counts), ``GET /_requests`` (recorded request bodies; ``?full=1`` adds
headers and whether the response was delivered, ``?completed=1`` keeps only delivered ones),
``POST /_reset`` and ``POST /_config`` (change latency / fault rate / ... of a running server).

The harness (``/_...``) endpoints are control endpoints, guarded because any local process can
reach a loopback port: each needs the server's own random token in the ``X-Fake-Server-Token``
header (``FakeOpenAIServer.control_token``; printed at start on the command line), a loopback
``Host`` and ``Origin`` (if any), and for POST a JSON content type. ``/_config`` changes only inert
settings (``HTTP_CONFIG_KEYS``: latency, fault rates, ...): the responder, which is code, is chosen
only in the Python API or on the command line. Recorded requests never keep credentials: the
``Authorization`` header (and any header named like a key, token, secret or cookie) is replaced
by a keyed digest, ``FakeOpenAIServer.credential_tag(value)``.

It adds ``latency`` to every reply and injects faults at ``fault_rate``: ``429`` (with
``Retry-After``), ``500``, ``503``, ``reset`` (TCP RST), ``timeout`` (hang ``hang_seconds`` then
drop), ``malformed`` (200 with a body that is not JSON) and ``truncated`` (200 with half a JSON
body). Whether a request is faulted is a deterministic function of ``seed``, the request body and
how many times that body was seen, so a run is reproducible whatever the arrival order.
``max_faults_per_request`` caps injected faults per distinct body (so retries always recover).

The ``responder(messages, json_schema)`` returns the reply text, a dict/list (sent as JSON), an
``LLMResult`` (its text, sent with its ``finish_reason``, e.g. ``"length"`` for a cut reply), or a
``FakeFault`` (returned or raised) for a permanent failure of that request; any other exception is
a 500. Without a responder the reply is deterministic text, or for a ``json_schema``
``response_format`` a minimal instance of the schema.

Run it in a background thread (default), in a subprocess (``in_process=False``), or from the
command line: ``python -m dataflow.serving.fake_server --port 8000 --latency 0.2``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import importlib
import ipaddress
import json
import os
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..core.llm import LLMResult
from ._aio import new_event_loop, run_new_loop
from .schema_instance import instance_for

DEFAULT_FAULTS = ("429", "500", "503", "reset", "timeout", "malformed", "truncated")
FAULT_KINDS = frozenset(DEFAULT_FAULTS)

Responder = Callable[[list, "dict | None"], Any]


class FakeFault(Exception):
    """A fault the responder asks for, for one request: ``FakeFault("500")``, ``FakeFault("400",
    "bad request")``, ``FakeFault("429", retry_after=1)``, ``FakeFault("reset")`` ... Return it or
    raise it. Any 3-digit status is sent as an error with that status."""

    def __init__(self, kind: str = "500", message: str = "", retry_after: float | None = None):
        self.kind = str(kind)
        self.message = message or f"injected fault {self.kind}"
        self.retry_after = retry_after
        super().__init__(self.message)


def default_responder(messages: list, json_schema: dict | None) -> Any:
    """Deterministic reply: a schema instance for structured output, else an echo with a digest."""
    if json_schema is not None:
        return instance_for(json_schema)
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:12]
    last = ""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            last = content if isinstance(content, str) else json.dumps(content)
            break
    return f"fake reply {digest}: {last[:200]}"


def load_responder(spec: str) -> Responder:
    """Import ``module:function`` (the subprocess server's ``--responder``)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"responder must be 'module:function', got {spec!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass
class _State:
    """Configuration and counters of one server (shared by its handlers)."""

    responder: Responder | None = None
    latency: float = 0.0
    fault_rate: float = 0.0
    faults: tuple = DEFAULT_FAULTS
    retry_after: float = 0.1
    seed: int = 0
    hang_seconds: float = 30.0
    record: bool = True
    max_faults_per_request: int | None = None
    model: str = "fake-model"
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    # counters
    requests: int = 0
    completed: int = 0
    abandoned: int = 0
    fault_counts: dict = field(default_factory=dict)
    status_counts: dict = field(default_factory=dict)
    records: list = field(default_factory=list)
    seen: dict = field(default_factory=dict)
    faults_per_body: dict = field(default_factory=dict)

    def reset(self) -> None:
        self.requests = self.completed = self.abandoned = 0
        self.fault_counts = {}
        self.status_counts = {}
        self.records = []
        self.seen = {}
        self.faults_per_body = {}

    def stats(self) -> dict:
        return {
            "requests": self.requests,
            "completed": self.completed,
            "abandoned": self.abandoned,
            "faults": dict(self.fault_counts),
            "statuses": {str(k): v for k, v in self.status_counts.items()},
            "recorded": len(self.records),
        }

    def configure(self, **kw: Any) -> None:
        checked = {}
        for key, value in kw.items():
            if key not in _CONFIG_KEYS:
                raise ValueError(f"unknown fake server option {key!r}")
            checked[key] = value if key == "responder" else _check_option(key, value)
        for key, value in checked.items():
            setattr(self, key, value)


_CONFIG_KEYS = frozenset(
    {"responder", "latency", "fault_rate", "faults", "retry_after", "seed", "hang_seconds",
     "record", "max_faults_per_request", "model"}
)
#: what ``POST /_config`` may change: inert settings only (never the responder, which is code)
HTTP_CONFIG_KEYS = _CONFIG_KEYS - {"responder"}
_TOKEN_HEADER = "X-Fake-Server-Token"
_TOKEN_ENV = "DF_FAKE_SERVER_TOKEN"  # how a subprocess server gets its token (never argv: ps shows it)


def _check_option(key: str, value: Any) -> Any:
    """``value`` checked for option ``key`` (a ``ValueError`` names what is wrong)."""
    if key == "faults":
        return _check_faults(value)
    if key == "record":
        if not isinstance(value, bool):
            raise ValueError(f"record must be true or false, got {value!r}")
        return value
    if key == "model":
        if not isinstance(value, str) or not 0 < len(value) <= 200:
            raise ValueError(f"model must be a non-empty string, got {value!r}")
        return value
    if key in ("seed", "max_faults_per_request"):
        if value is None and key == "max_faults_per_request":
            return None
        if isinstance(value, bool) or not isinstance(value, int) or (key != "seed" and value < 0):
            raise ValueError(f"{key} must be a{' non-negative' if key != 'seed' else 'n'} integer, got {value!r}")
        return value
    limits = {"latency": 600.0, "fault_rate": 1.0, "retry_after": 3600.0, "hang_seconds": 3600.0}
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= limits[key]:
        raise ValueError(f"{key} must be a number from 0 to {limits[key]:g}, got {value!r}")
    return float(value)


def credential_tag(token: str, value: str) -> str:
    """What a recorded request keeps instead of a credential header's ``value``: a digest keyed
    with the server's token, so a test can check which key was sent without the log holding it."""
    digest = hmac.new(token.encode(), str(value).encode(), hashlib.sha256).hexdigest()[:16]
    return f"[redacted {digest}]"


_CREDENTIAL_WORDS = ("auth", "key", "token", "secret", "password", "cookie", "session", "credential")


def _recorded_headers(headers: Any, token: str) -> dict:
    """Request headers, lower-cased, with every credential-like value replaced by its tag."""
    return {
        k.lower(): credential_tag(token, v) if any(w in k.lower() for w in _CREDENTIAL_WORDS) else v
        for k, v in headers.items()
    }


def _is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip().lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _control_refusal(request: Any, token: str) -> tuple[int, str] | None:
    """Why a control request is refused (status, message), or None to let it through."""
    if not _is_loopback_host(request.remote):
        return 403, "control endpoints answer loopback clients only"
    try:
        host = urllib.parse.urlsplit("//" + (request.headers.get("Host") or "")).hostname
    except ValueError:
        host = None
    if not _is_loopback_host(host):
        return 403, "control endpoints need a loopback Host header"
    origin = request.headers.get("Origin")
    if origin is not None:
        try:
            origin_host = urllib.parse.urlsplit(origin).hostname
        except ValueError:
            origin_host = None
        if not _is_loopback_host(origin_host):
            return 403, "control endpoints refuse requests from a non-loopback Origin"
    given = request.headers.get(_TOKEN_HEADER, "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        return 401, f"control endpoints need the server's token in the {_TOKEN_HEADER} header"
    if request.method == "POST" and request.content_type != "application/json":
        return 415, "control endpoints take application/json bodies only"
    return None


def _check_faults(faults: Iterable[str] | str) -> tuple:
    if isinstance(faults, str):
        faults = [f for f in faults.split(",") if f.strip()]
    faults = tuple(str(f).strip() for f in faults)
    bad = [f for f in faults if f not in FAULT_KINDS]
    if bad:
        raise ValueError(f"unknown fault kinds {bad}; choose from {sorted(FAULT_KINDS)}")
    return faults


def _json_dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _tokens(text: str) -> int:
    return len(text) // 4 + 1


class _FakeApp:
    """The aiohttp application and its handlers over a ``_State``."""

    def __init__(self, state: _State):
        self.state = state

    def handler(self):
        """One request handler dispatching on (method, path): aiohttp's low-level server, which
        costs less per request than an ``Application`` with a router."""
        from aiohttp import web

        routes = {
            ("POST", "/v1/chat/completions"): self.chat,
            ("POST", "/chat/completions"): self.chat,
            ("GET", "/v1/models"): self.models,
            ("GET", "/health"): self.health,
            ("GET", "/_stats"): self.stats,
            ("GET", "/_requests"): self.requests,
            ("POST", "/_reset"): self.reset,
            ("POST", "/_config"): self.config,
        }

        async def handle(request):
            route = routes.get((request.method, request.path))
            if route is None:
                return web.json_response({"error": {"message": f"no route {request.method} {request.path}"}},
                                         status=404)
            if request.path.startswith("/_"):
                refusal = _control_refusal(request, self.state.token)
                if refusal is not None:
                    return web.json_response({"error": {"message": refusal[1]}}, status=refusal[0])
            return await route(request)

        return handle

    # -- harness endpoints --------------------------------------------------------------------
    async def health(self, request):
        from aiohttp import web

        return web.json_response({"status": "ok"})

    async def models(self, request):
        from aiohttp import web

        return web.json_response(
            {"object": "list", "data": [{"id": self.state.model, "object": "model", "owned_by": "dataflow"}]}
        )

    async def stats(self, request):
        from aiohttp import web

        return web.json_response(self.state.stats())

    async def requests(self, request):
        from aiohttp import web

        records = self.state.records
        if request.query.get("completed"):
            records = [r for r in records if r["completed"]]
        if request.query.get("full"):
            return web.json_response(records)
        return web.json_response([r["body"] for r in records])

    async def reset(self, request):
        from aiohttp import web

        self.state.reset()
        return web.json_response({"status": "reset"})

    async def config(self, request):
        from aiohttp import web

        try:
            options = await request.json()
            if not isinstance(options, dict):
                raise ValueError("the body must be a JSON object of options")
            refused = sorted(set(options) - HTTP_CONFIG_KEYS)
            if refused:
                raise ValueError(
                    f"cannot change {refused} over HTTP; settable: {sorted(HTTP_CONFIG_KEYS)} "
                    "(a responder is chosen in the Python API or on the command line)"
                )
            self.state.configure(**options)
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"status": "ok"})

    # -- chat completions ---------------------------------------------------------------------
    def _pick_fault(self, raw: bytes) -> FakeFault | None:
        st = self.state
        if st.fault_rate <= 0 or not st.faults:
            return None
        body_key = hashlib.blake2b(raw, digest_size=16).digest()
        nth = st.seen.get(body_key, 0)
        st.seen[body_key] = nth + 1
        if st.max_faults_per_request is not None and st.faults_per_body.get(body_key, 0) >= st.max_faults_per_request:
            return None
        h = hashlib.blake2b(raw, digest_size=16, key=f"{st.seed}:{nth}".encode()[:64]).digest()
        draw = int.from_bytes(h[:8], "big") / 2**64
        if draw >= st.fault_rate:
            return None
        st.faults_per_body[body_key] = st.faults_per_body.get(body_key, 0) + 1
        return FakeFault(st.faults[int.from_bytes(h[8:], "big") % len(st.faults)])

    async def chat(self, request):
        from aiohttp import web

        st = self.state
        raw = await request.read()
        st.requests += 1
        try:
            body = json.loads(raw)
            messages = body["messages"]
            if not isinstance(messages, list):
                raise TypeError("messages must be a list")
        except Exception as exc:  # noqa: BLE001
            return self._count(web.json_response(
                {"error": {"message": f"invalid request body: {exc}", "type": "invalid_request_error"}},
                status=400,
            ))
        record = None
        if st.record:
            record = {"body": body, "headers": _recorded_headers(request.headers, st.token),
                      "completed": False}
            st.records.append(record)
        fault = self._pick_fault(raw)
        try:
            if st.latency > 0:
                await asyncio.sleep(st.latency)
            if fault is None:
                fault, payload = await self._reply(body, messages)
        except asyncio.CancelledError:  # the client went away (handler cancellation)
            st.abandoned += 1
            raise
        if fault is not None:
            return await self._fault(request, fault, body, messages)
        resp = web.Response(body=_json_dumps(payload), content_type="application/json")
        transport = request.transport
        if transport is None or transport.is_closing():
            st.abandoned += 1
            return resp
        # counted before the write so a client that reads the counter right after its reply sees it
        st.completed += 1
        st.status_counts[200] = st.status_counts.get(200, 0) + 1
        if record is not None:
            record["completed"] = True
        try:
            await resp.prepare(request)
            await resp.write_eof()
        except (asyncio.CancelledError, ConnectionError):
            st.completed -= 1
            st.status_counts[200] -= 1
            st.abandoned += 1
            if record is not None:
                record["completed"] = False
            raise
        return resp

    async def _reply(self, body: dict, messages: list) -> tuple[FakeFault | None, dict | None]:
        st = self.state
        schema = None
        rf = body.get("response_format")
        if isinstance(rf, dict) and rf.get("type") == "json_schema":
            schema = (rf.get("json_schema") or {}).get("schema")
        responder = st.responder or default_responder
        try:
            reply = responder(messages, schema)
            if asyncio.iscoroutine(reply):
                reply = await reply
        except FakeFault as fault:
            return fault, None
        except Exception as exc:  # noqa: BLE001 - a responder error is a server error
            return FakeFault("500", f"responder raised {type(exc).__name__}: {exc}"), None
        if isinstance(reply, FakeFault):
            return reply, None
        finish_reason = "stop"
        if isinstance(reply, LLMResult):
            if not reply.ok:
                return FakeFault("500", reply.reason or "failed"), None
            reply, finish_reason = reply.text, reply.finish_reason or "stop"
        content = reply if isinstance(reply, str) else json.dumps(reply, ensure_ascii=False)
        prompt_text = "".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))
        prompt_tokens, completion_tokens = _tokens(prompt_text), _tokens(content)
        return None, {
            "id": f"chatcmpl-fake-{st.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or st.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def _count(self, resp):
        st = self.state
        st.status_counts[resp.status] = st.status_counts.get(resp.status, 0) + 1
        return resp

    async def _fault(self, request, fault: FakeFault, body: dict, messages: list):
        from aiohttp import web

        st = self.state
        kind = fault.kind
        st.fault_counts[kind] = st.fault_counts.get(kind, 0) + 1
        if kind == "reset":
            _reset_connection(request)
            return web.Response(status=500)
        if kind == "timeout":
            await asyncio.sleep(st.hang_seconds)
            _reset_connection(request)
            return web.Response(status=500)
        if kind in ("malformed", "truncated"):
            if kind == "malformed":
                data = b'{"id": "chatcmpl-fake", "choices": [{"message": {"content": oops'
                data += b"<html>502 Bad Gateway</html>"
            else:
                _, payload = await self._reply(body, messages)
                full = _json_dumps(payload or {"choices": []})
                data = full[: max(1, len(full) // 2)]
            return self._count(web.Response(body=data, content_type="application/json"))
        status = int(kind) if kind.isdigit() else 500
        headers = {}
        if status == 429:
            retry_after = fault.retry_after if fault.retry_after is not None else st.retry_after
            headers["Retry-After"] = _fmt_seconds(retry_after)
        error = {"error": {"message": fault.message, "type": "fake_fault", "code": kind}}
        return self._count(web.Response(body=_json_dumps(error), status=status,
                                        content_type="application/json", headers=headers))


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _reset_connection(request) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), as a crashed proxy would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


async def _start_site(state: _State, host: str, port: int):
    from aiohttp import web

    def make_request(message, payload, protocol, writer, task, _cls=web.BaseRequest):
        return _cls(message, payload, protocol, writer, task, asyncio.get_running_loop(),
                    client_max_size=_MAX_BODY)

    server = web.Server(_FakeApp(state).handler(), request_factory=make_request,
                        handler_cancellation=True, access_log=None)
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, bound


_MAX_BODY = 64 * 1024 * 1024


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
            responder=responder, latency=latency, fault_rate=fault_rate, faults=_check_faults(faults),
            retry_after=retry_after, seed=seed, hang_seconds=hang_seconds, record=record,
            max_faults_per_request=max_faults_per_request, model=model,
        )
        self._options.update({k: _check_option(k, v) for k, v in self._options.items() if k != "responder"})
        self._state: _State | None = None
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
        if name in _CONFIG_KEYS and "_options" in self.__dict__:
            self.configure(**{name: value})
        else:
            super().__setattr__(name, value)

    def configure(self, **options: Any) -> None:
        """Change options (latency, fault_rate, faults, responder, ...) now."""
        unknown = set(options) - _CONFIG_KEYS
        if unknown:
            raise ValueError(f"unknown fake server options {sorted(unknown)}")
        options = {k: v if k == "responder" else _check_option(k, v) for k, v in options.items()}
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
        state = _State(**self._options, token=self.control_token)
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._runner, self.port = loop.run_until_complete(_start_site(state, self.host, self.port))
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
        cmd = [sys.executable, "-m", "dataflow.serving.fake_server", "--host", self.host,
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
        env[_TOKEN_ENV] = self.control_token
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
                                              _TOKEN_HEADER: self.control_token})
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


# -- command line -------------------------------------------------------------------------------
def serve(host: str = "127.0.0.1", port: int = 8000, announce: Callable[[str, str], None] | None = None,
          token: str | None = None, **options: Any) -> None:
    """Run a fake server in the foreground until interrupted (SIGINT/SIGTERM). ``announce(url,
    token)`` is called once it listens; ``token`` (default: a new random one) guards the
    control endpoints."""
    import signal

    state = _State(token=token) if token else _State()
    state.configure(**options)

    async def main() -> None:
        runner, bound = await _start_site(state, host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread / Windows
                pass
        (announce or _announce)(f"http://{host}:{bound}/v1/chat/completions", state.token)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    run_new_loop(main)


def _announce(url: str, token: str) -> None:
    print(f"FAKE_SERVER_URL {url}", flush=True)
    print(f"FAKE_SERVER_TOKEN {token}  (header {_TOKEN_HEADER} for the /_... control endpoints)", flush=True)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dataflow.serving.fake_server",
                                     description="Loopback OpenAI-compatible fake server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every reply")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--faults", default=",".join(DEFAULT_FAULTS))
    parser.add_argument("--retry-after", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--max-faults-per-request", type=int, default=None)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--responder", default=None, help="module:function")
    parser.add_argument("--no-record", action="store_true", help="do not keep request bodies")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_arg_parser().parse_args(argv)
    token = os.environ.pop(_TOKEN_ENV, None)  # given by a parent FakeOpenAIServer, which knows it
    announce = (lambda url, _token: print(f"FAKE_SERVER_URL {url}", flush=True)) if token else None
    serve(
        host=args.host, port=args.port, announce=announce, token=token, latency=args.latency, fault_rate=args.fault_rate,
        faults=args.faults, retry_after=args.retry_after, seed=args.seed,
        hang_seconds=args.hang_seconds, max_faults_per_request=args.max_faults_per_request,
        model=args.model, record=not args.no_record,
        responder=load_responder(args.responder) if args.responder else None,
    )


if __name__ == "__main__":
    # run the importable module's main, not this ``__main__`` copy: a responder that returns or
    # raises ``dataflow.serving.fake_server.FakeFault`` must meet the class the handlers check
    from dataflow.serving.fake_server import main as _main

    _main()
