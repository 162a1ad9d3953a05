"""Choose the LLM backend from the environment, as the example pipelines do.

- ``DF_API_URL`` set: ``APILLMServing_request`` against that OpenAI-compatible endpoint (a full
  ``.../chat/completions`` URL, or a base URL such as ``http://host:8000/v1``), model
  ``DF_MODEL``, API key read from the environment variable ``DF_API_KEY``.
- otherwise: ``LocalModelLLMServing``, the embedded llama.cpp model (``DF_LOCAL_THREADS`` sets its
  CPU threads, default all cores; ``DF_LOCAL_MODEL`` picks
  another GGUF file; see ``dataflow.serving.model_files``).

One line on stderr says which backend and model are used (never the key, nor credentials in
``DF_API_URL``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ..core.errors import ConfigError
from ..core.llm import LLMServingABC

#: parameters that only the embedded model takes; ignored when an API endpoint is used
LOCAL_ONLY = frozenset(
    {"model_path", "model_sha256", "n_ctx", "n_threads", "n_parallel", "startup_timeout", "server_params", "cache_prompt"}
)


def chat_completions_url(url: str) -> str:
    """``url`` as a full chat-completions URL (a base ending in ``/v1`` gets the path added)."""
    url = url.strip().rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return f"{url}/chat/completions" if url.endswith("/v1") else f"{url}/v1/chat/completions"


def serving_from_env(*, quiet: bool = False, **overrides: Any) -> LLMServingABC:
    """The backend the environment asks for, built with ``overrides`` (e.g. ``max_workers``,
    ``temperature``, ``max_tokens``; embedded-model-only ones such as ``n_ctx`` are ignored for
    an API endpoint)."""
    api_url = os.environ.get("DF_API_URL", "").strip()
    if api_url:
        from ._credentials import redact_url
        from .api_request import APILLMServing_request

        model = overrides.pop("model_name", None) or os.environ.get("DF_MODEL", "").strip()
        if not model:
            raise ConfigError(
                "DF_API_URL is set but DF_MODEL is not: set DF_MODEL to the model name the endpoint "
                "serves (or unset DF_API_URL to use the embedded local model)"
            )
        kwargs = {k: v for k, v in overrides.items() if k not in LOCAL_ONLY}
        kwargs.setdefault("key_name_of_api_key", "DF_API_KEY")
        url = chat_completions_url(api_url)
        serving: LLMServingABC = APILLMServing_request(api_url=url, model_name=model, **kwargs)
        line = f"dataflow: LLM backend = OpenAI-compatible API {redact_url(url)}, model {model}"
    else:
        from .local_model import LocalModelLLMServing

        threads = os.environ.get("DF_LOCAL_THREADS", "").strip()
        if threads and "n_threads" not in overrides:
            if not threads.isdigit() or int(threads) < 1:
                raise ConfigError(f"DF_LOCAL_THREADS must be a whole number >= 1, got {threads!r}")
            overrides["n_threads"] = int(threads)  # e.g. 1 when other jobs share the cores
        serving = LocalModelLLMServing(**overrides)
        line = f"dataflow: LLM backend = {serving.describe()}"
    if not quiet:
        print(line, file=sys.stderr, flush=True)
    return serving
