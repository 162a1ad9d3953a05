"""The shop of ``shop.py`` served over MCP (stdio), with the official ``mcp`` SDK.

    python shop_mcp_server.py [data.json]

Every public method of ``Shop`` is an MCP tool (its schema from the type hints, its description
from the docstring), and the resource ``state://current`` holds the shop's data as JSON, so a
pipeline can compare the state a conversation left with the one its task should leave. Each
server process loads the data file afresh: one process per conversation gives each its own copy.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shop import Shop  # noqa: E402

DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().with_name("shop_data.json")


def build_server(shop: Shop) -> MCPServer:
    """An MCP server whose tools are ``shop``'s public methods and whose ``state://current``
    resource is its data."""
    server = MCPServer("shop")
    for name, method in inspect.getmembers(shop, inspect.ismethod):
        if not name.startswith("_"):
            server.add_tool(_refusals_shown(method), name=name, description=inspect.getdoc(method))

    @server.resource("state://current", mime_type="application/json")
    def current_state() -> str:
        return json.dumps({"customers": shop.customers, "products": shop.products, "orders": shop.orders})

    return server


def _refusals_shown(method):
    """``method`` with its refusals (``ValueError``) passed to the client as the tool's error
    text; the SDK hides the text of other exceptions."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except ValueError as exc:
            raise ToolError(f"ValueError: {exc}") from None

    return wrapper


if __name__ == "__main__":
    build_server(Shop(json.loads(DATA.read_text(encoding="utf-8")))).run("stdio")
