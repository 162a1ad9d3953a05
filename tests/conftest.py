"""Shared pytest fixtures. ``fake_server``: a loopback OpenAI-compatible server (in a thread)
for one test; change its behaviour by assigning attributes (``fake_server.latency = 0.1``,
``fake_server.responder = fn``, ``fake_server.fault_rate = 0.2``)."""

from __future__ import annotations

import pytest


@pytest.fixture
def fake_server():
    from dataflow.serving import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def no_api_key(monkeypatch):
    """Make sure no API key from the developer's environment leaks into a test."""
    monkeypatch.delenv("DF_API_KEY", raising=False)


@pytest.fixture(autouse=True)
def fresh_tool_caches():
    """Every test compiles the tool lists it validates: ``validate_calls`` caches compiled tool
    sets by content and by identity, so without this a verdict could come from a tool set another
    test compiled, and a mutation tester's forked worker would skip the code it changed."""
    from dataflow.tools.validation import clear_cache

    clear_cache()
