"""The fake server's aiohttp handlers: chat completions with latency and injected faults, the
harness endpoints, and ``serve`` (run one in the foreground until interrupted)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from typing import Any, Callable

from ...core.llm import LLMResult
from .._aio import run_new_loop
from .control import control_refusal, recorded_headers
from .faults import FakeFault, pick_fault
from .state import HTTP_CONFIG_KEYS, ServerState, default_responder

_MAX_BODY = 64 * 1024 * 1024



def _json_dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _tokens(text: str) -> int:
    return len(text) // 4 + 1



class _FakeApp:
    """The aiohttp application and its handlers over a ``ServerState``."""

    def __init__(self, state: ServerState):
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
                refusal = control_refusal(request, self.state.token)
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
            record = {"body": body, "headers": recorded_headers(request.headers, st.token),
                      "completed": False}
            st.records.append(record)
        fault = pick_fault(st, raw)
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


async def start_site(state: ServerState, host: str, port: int):
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


def serve(announce: Callable[[str, str], None], host: str = "127.0.0.1", port: int = 8000,
          token: str | None = None, **options: Any) -> None:
    """Run a fake server in the foreground until interrupted (SIGINT/SIGTERM). ``announce(url,
    token)`` is called once it listens (``dataflow fake-server`` prints them); ``token`` (default: a new random one) guards the
    control endpoints."""
    import signal

    state = ServerState(token=token) if token else ServerState()
    state.configure(**options)

    async def main() -> None:
        runner, bound = await start_site(state, host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread / Windows
                pass
        announce(f"http://{host}:{bound}/v1/chat/completions", state.token)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    run_new_loop(main)

