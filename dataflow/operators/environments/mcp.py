"""Real tools from an MCP server, through the official ``mcp`` Python SDK (``pip install
".[mcp]"``): the tool specs come from ``list_tools``, calls go through ``call_tool``, against a
server the pipeline starts over stdio.

``McpEnvironment(command, args)`` is used like ``PythonEnvironment``: ``tool_specs()``, and
``open()`` -> a session with fresh state, which is a server process of its own (the server is
expected to load its data when it starts, as ``example_data/ShopEnvironment/shop_mcp_server.py``
does). The state the conversation leaves is read from the resource ``state_uri`` (JSON text)
when the server offers it; a server without it has no state to compare, and its conversations
are checked on their answers only.

The SDK is asynchronous; one event loop in a background thread runs every session's
connection, and the methods here wait for it (``timeout`` seconds per call).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import threading
from typing import Any, Sequence

from ...core.errors import ConfigError
from .environment import StateUnavailable, ToolOutcome

DEFAULT_STATE_URI = "state://current"

_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _event_loop() -> asyncio.AbstractEventLoop:
    """The background event loop that runs every MCP connection of this process."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="dataflow-mcp", daemon=True).start()
        return _loop


def _run(coroutine: Any, timeout: float) -> Any:
    future = asyncio.run_coroutine_threadsafe(coroutine, _event_loop())
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise


def mcp_tool_spec(tool: Any) -> dict:
    """The OpenAI tool spec of one MCP ``Tool`` (its ``inputSchema`` read by
    ``dataflow.tools.normalize_tools``, the one reader of tools)."""
    from ...tools import normalize_tools

    raw = tool.model_dump(by_alias=True, exclude_none=True) if hasattr(tool, "model_dump") else dict(tool)
    entry = {"name": raw["name"], "description": raw.get("description") or "",
             "inputSchema": raw.get("inputSchema") or {"type": "object", "properties": {}}}
    return normalize_tools([entry])[0]


class McpEnvironment:
    """An environment whose tools live in an MCP server started over stdio.

    ``command`` and ``args`` start the server (default ``command``: this Python); ``env`` adds
    environment variables; ``cwd`` is its folder. ``name`` is shown in outputs and the run
    report. ``state_uri``: the resource holding the server's data as JSON (``None``: the server
    has none). ``timeout``: seconds for starting a server and for each call. Raises
    ``ConfigError`` when the ``mcp`` package is not installed.
    """

    def __init__(self, args: Sequence[str], command: str | None = None, name: str = "mcp",
                 env: dict[str, str] | None = None, cwd: str | None = None,
                 state_uri: str | None = DEFAULT_STATE_URI, timeout: float = 30.0):
        try:
            import mcp  # noqa: F401
        except ImportError:
            raise ConfigError('McpEnvironment needs the mcp package: pip install "dataflow-fc[mcp]"') from None
        self.command = command or sys.executable
        self.args = [str(a) for a in args]
        self.name = name
        self.env = {"PYTHONDONTWRITEBYTECODE": "1", **(env or {})}  # no __pycache__ beside the server
        self.cwd = cwd
        self.state_uri = state_uri
        self.timeout = timeout
        self._specs: list[dict] | None = None

    def fingerprint(self) -> dict:
        """What identifies this environment in a step's manifest: its command line and the
        hashes of the files it names (an edited server invalidates reused steps)."""
        digest = hashlib.sha256()
        for arg in self.args:
            digest.update(arg.encode())
            if os.path.isfile(arg):
                with open(arg, "rb") as fh:
                    digest.update(fh.read())
        return {"name": self.name, "command": os.path.basename(self.command), "args": digest.hexdigest()[:16],
                "state_uri": self.state_uri}

    def tool_specs(self) -> list[dict]:
        """OpenAI tool specs from the server's ``list_tools``."""
        if self._specs is None:
            session = self.open()
            try:
                self._specs = session.tool_specs()
            finally:
                session.close()
        return [json.loads(json.dumps(s)) for s in self._specs]

    def open(self) -> "McpSession":
        """A session with a server process of its own (fresh state)."""
        return McpSession(self)

    def close(self) -> None:
        """Nothing is kept between sessions."""


class McpSession:
    """One conversation's MCP server process and client session."""

    def __init__(self, environment: McpEnvironment):
        self.environment = environment
        self.lost = ""
        self._closing: asyncio.Event | None = None
        self._session: Any = None
        self._task = asyncio.run_coroutine_threadsafe(self._hold(), _event_loop())
        try:
            _run(self._wait_ready(), environment.timeout)
        except Exception as exc:  # noqa: BLE001 - a server that does not start is a config error
            self._task.cancel()
            self.close()
            raise ConfigError(f"the MCP server {environment.name!r} did not start within {environment.timeout:g}s: "
                              f"{type(exc).__name__}: {exc}") from None

    async def _wait_ready(self) -> None:
        while self._session is None:
            if self._task.done():
                exc = self._task.exception()
                raise exc if exc else RuntimeError("the server exited")
            await asyncio.sleep(0.01)

    async def _hold(self) -> None:
        """Open the server and the client session, and keep them open until ``close``."""
        from mcp import ClientSession, StdioServerParameters, stdio_client

        env = self.environment
        self._closing = asyncio.Event()
        params = StdioServerParameters(command=env.command, args=env.args, env=env.env or None, cwd=env.cwd)
        with open(os.devnull, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    self._session = session
                    await self._closing.wait()

    def tool_specs(self) -> list[dict]:
        """The server's tools as OpenAI specs."""
        listed = _run(self._session.list_tools(), self.environment.timeout)
        return [mcp_tool_spec(tool) for tool in listed.tools]

    def call(self, name: str, arguments: dict) -> ToolOutcome:
        """``call_tool``: its structured content, or its text content read as JSON when it is
        JSON; an ``isError`` result is an error outcome. A call that times out loses the session."""
        if self.lost:
            return ToolOutcome(False, error=f"StateLost: {self.lost}", lost=True)
        try:
            result = _run(self._session.call_tool(name, arguments), self.environment.timeout)
        except TimeoutError:
            self.lost = f"call {name} did not finish within {self.environment.timeout:g}s"
            return ToolOutcome(False, error=f"TimeoutError: {self.lost}", lost=True)
        except Exception as exc:  # noqa: BLE001 - a dead server or a protocol error
            self.lost = f"call {name} failed: {type(exc).__name__}: {exc}"
            return ToolOutcome(False, error=self.lost, lost=True)
        texts = [getattr(c, "text", "") for c in result.content if getattr(c, "type", "") == "text"]
        text = "\n".join(texts)
        if result.is_error:
            prefix = f"Error executing tool {name}: "
            return ToolOutcome(False, error=(text[len(prefix):] if text.startswith(prefix) else text) or "Error")
        value: Any = result.structured_content
        if value is None:  # text content: JSON when it is JSON (a list comes as one text per item)
            try:
                value = [json.loads(t) for t in texts] if len(texts) > 1 else json.loads(text)
            except (TypeError, ValueError):
                value = text
        elif isinstance(value, dict) and set(value) == {"result"}:  # the SDK's wrapper of a bare value
            value = value["result"]
        return ToolOutcome(True, result=value)

    def state(self) -> dict:
        """The server's data from the ``state_uri`` resource. Raises ``StateUnavailable``."""
        uri = self.environment.state_uri
        if self.lost:
            raise StateUnavailable(self.lost)
        if not uri:
            raise StateUnavailable(f"the MCP server {self.environment.name!r} offers no state resource")
        try:
            read = _run(self._session.read_resource(uri), self.environment.timeout)
            value = json.loads(read.contents[0].text)
        except Exception as exc:  # noqa: BLE001
            raise StateUnavailable(f"reading {uri}: {type(exc).__name__}: {exc}") from None
        if not isinstance(value, dict):
            raise StateUnavailable(f"{uri} is not a JSON object")
        return value

    def close(self) -> None:
        """Stop the server process."""
        loop = _event_loop()
        if self._closing is not None:
            loop.call_soon_threadsafe(self._closing.set)
        if self._task is not None:
            try:
                self._task.result(self.environment.timeout)
            except Exception:  # noqa: BLE001 - the server is gone either way
                pass
            self._task = None
