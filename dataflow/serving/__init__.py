"""LLM serving backends. Every backend implements ``LLMServingABC``.

Names are imported lazily so ``import dataflow.serving`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ..core.llm import LLMResult, LLMServingABC

__all__ = [
    "LLMServingABC",
    "LLMResult",
    "APILLMServing_request",
    "FakeLLMServing",
    "FakeOpenAIServer",
    "FakeFault",
    "LocalModelLLMServing",
    "serving_from_env",
]

_LAZY = {
    "APILLMServing_request": ".api_request",
    "FakeLLMServing": "._fake",
    "FakeOpenAIServer": "._fake_openai",
    "FakeFault": "._fake_openai",
    "LocalModelLLMServing": ".local_model",
    "serving_from_env": ".from_env",
}

if TYPE_CHECKING:  # pragma: no cover
    from .api_request import APILLMServing_request
    from ._fake import FakeLLMServing
    from ._fake_openai import FakeFault, FakeOpenAIServer
    from .local_model import LocalModelLLMServing
    from .from_env import serving_from_env


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dataflow.serving' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value
