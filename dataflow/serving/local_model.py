"""``LocalModelLLMServing``: an embedded llama.cpp model behind the same HTTP client as
``APILLMServing_request``, so the response cache, retries, structured output (``json_schema``
becomes llama.cpp's grammar-constrained ``response_format``) and progress bars behave the same.

The server (``xllamacpp``, installed by ``pip install "dataflow-fc[local]"``) runs in a child
process on 127.0.0.1 on a free port (see ``llama_server``). It starts lazily, when a batch has a
request the response cache cannot answer (a fully cached rerun never loads the model), and stops
on ``close()``, at interpreter exit, on Ctrl-C and on SIGTERM; if this process is killed outright
the child notices and exits. If the server dies during a run it is restarted once per batch.

Model choice: ``model_path`` (a GGUF path or a known model name), else env ``DF_LOCAL_MODEL``,
else the verified default, Qwen2.5-Coder-0.5B-Instruct (see ``model_files``).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

from ..core.errors import ServingError
from ..core.llm import Conversation, LLMResult
from .api_request import APILLMServing_request
from .llama_server import install_hooks
from .model_files import DEFAULT_MODEL, KNOWN_MODELS, ResolvedModel, resolve_model

_PLACEHOLDER_URL = "http://127.0.0.1:9/v1/chat/completions"  # replaced when the server starts


class LocalModelLLMServing(APILLMServing_request):
    """An embedded GGUF model served by llama.cpp in a child process.

    Args:
        model_path: a ``.gguf`` file, or a known model name (``qwen2.5-coder-0.5b-instruct``,
            ``qwen2.5-coder-1.5b-instruct``, ``smollm2-135m-instruct``); default: env
            ``DF_LOCAL_MODEL``, else the default model.
        model_name: the name sent in requests and recorded in caches/manifests (default: the
            known model's name, or the GGUF file name without ``.gguf``).
        model_sha256: for a user GGUF file, refuse it unless its sha256 matches.
        n_ctx: context length (prompt + reply tokens) of each request.
        n_threads: CPU threads for llama.cpp (default: all cores).
        n_parallel: server slots, i.e. requests decoded at once (more did not raise throughput
            on 2 cores).
        max_workers: concurrent HTTP requests (default: ``n_parallel``).
        temperature: sampling temperature (0: greedy, repeatable).
        max_tokens: cap on reply tokens, so a looping small model cannot run forever.
        max_retries, timeout: as for ``APILLMServing_request`` (timeout counts time queued in
            the server).
        cache_prompt: llama.cpp's prompt-prefix cache; off by default because with it repeated
            greedy requests can get different answers.
        startup_timeout: seconds to wait for the model to load.
        server_params: extra ``xllamacpp.CommonParams`` attributes, e.g. ``{"n_batch": 512}``.
        **kwargs: other ``APILLMServing_request`` options (``cache``, ``cache_dir``,
            ``progress``, ...) and extra request-body fields (``top_p=...``, ``seed=...``).
    """

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        model_name: str | None = None,
        *,
        model_sha256: str | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_parallel: int = 1,
        max_workers: int | None = None,
        temperature: float | None = 0.0,
        max_tokens: int = 1024,
        max_retries: int = 2,
        timeout: float = 600.0,
        cache_prompt: bool = False,
        startup_timeout: float = 180.0,
        server_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("down_timeout", 5.0)  # a local server that stops answering is dead
        kwargs.setdefault("connect_timeout", 5.0)
        super().__init__(
            api_url=_PLACEHOLDER_URL,
            key_name_of_api_key=None,  # type: ignore[arg-type]  (no Authorization header)
            model_name=model_name or _default_name(model_path),
            max_workers=max_workers or n_parallel,
            temperature=temperature,
            max_retries=max_retries,
            timeout=timeout,
            max_tokens=int(max_tokens),
            cache_prompt=bool(cache_prompt),
            **kwargs,
        )
        self.model_path = model_path
        self.model_sha256 = model_sha256
        self.n_ctx = int(n_ctx)
        self.n_threads = n_threads
        self.n_parallel = int(n_parallel)
        self.startup_timeout = float(startup_timeout)
        self.server_params = dict(server_params or {})
        self.model: ResolvedModel | None = None
        self._server: Any = None  # llama_server.LlamaServerProcess once started
        self._start_lock = threading.Lock()
        install_hooks()  # SIGTERM handler from the constructing (normally main) thread

    # -- server --------------------------------------------------------------------------------
    @property
    def server_pid(self) -> int | None:
        """Process id of the running server child (None before the first request)."""
        return self._server.pid if self._server is not None and self._server.running else None

    @property
    def base_url(self) -> str | None:
        return self._server.base_url if self._server is not None and self._server.running else None

    def start(self) -> str:
        """Resolve and verify the model, start the server if needed; return its base URL.
        Called automatically before the first request that is not answered from the cache."""
        from .llama_server import LlamaServerProcess

        with self._start_lock:
            if self._server is None:
                self.model = resolve_model(self.model_path, self.model_sha256)
                self._server = LlamaServerProcess(
                    self.model.path,
                    alias=self.model_name,
                    n_ctx=self.n_ctx * self.n_parallel,
                    n_threads=self.n_threads,
                    n_parallel=self.n_parallel,
                    startup_timeout=self.startup_timeout,
                    params=self.server_params,
                )
            crashed = self._server.crashed
            if crashed is not None:
                print(f"dataflow: the local model server exited (status {crashed}); restarting it",
                      file=sys.stderr, flush=True)
            base = self._server.start()
            self.api_urls = [f"{base}/v1/chat/completions"]
            self.api_url = self.api_urls[0]
            return base

    def close(self) -> None:
        """Stop the server (if started) and close the response cache."""
        if self._server is not None:
            self._server.stop()
        super().close()

    def describe(self) -> str:
        """One line naming the backend and model (for logs)."""
        source = self.model_path or os.environ.get("DF_LOCAL_MODEL") or None
        where = f" from {source}" if source and str(source) not in KNOWN_MODELS else ""
        return (
            f"embedded local model {self.model_name}{where} (llama.cpp on 127.0.0.1, "
            f"{self.n_parallel} slot(s); starts on the first uncached request)"
        )

    # -- hooks into the HTTP client ------------------------------------------------------------
    def _generate_with_options(self, conversations: list[Conversation], schemas: list[dict | None],
                               options: list[dict | None]) -> list[LLMResult]:
        try:
            return super()._generate_with_options(conversations, schemas, options)
        except ServingError:
            # the server died mid-batch: finished replies are cached; restart once and resume
            if self._server is None or self._server.crashed is None:
                raise
            return super()._generate_with_options(conversations, schemas, options)

    def _before_send(self) -> None:
        # Called only when some request missed the cache: a fully cached rerun starts no server.
        self.start()

    def __repr__(self) -> str:
        return f"LocalModelLLMServing(model_name={self.model_name!r}, n_parallel={self.n_parallel}, max_workers={self.max_workers})"


def _default_name(model_path: str | os.PathLike | None) -> str:
    choice = model_path if model_path not in (None, "") else os.environ.get("DF_LOCAL_MODEL") or None
    if choice is None:
        return DEFAULT_MODEL.name
    if str(choice) in KNOWN_MODELS:
        return str(choice)
    name = Path(choice).name
    return name[:-5] if name.lower().endswith(".gguf") else name
