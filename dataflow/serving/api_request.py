"""``APILLMServing_request``: a client for OpenAI-compatible chat-completions servers.

Transport: ``aiohttp`` (imported only when a batch runs). Measured here against a loopback server
with 200 ms latency and 256 connections, ``httpx.AsyncClient`` reaches 0.04 of ideal throughput
while aiohttp reaches ~0.9, so the hot path uses aiohttp directly.

A batch runs as ``max_workers`` coroutines pulling jobs from a queue over one connection pool of
``max_workers`` connections. A failed attempt (429, 5xx, timeout, connection error, malformed or
truncated body) is put back on the queue after an exponential backoff with jitter (or the server's
``Retry-After``), so a sleeping retry never holds a connection; with several endpoints it goes to
another endpoint at once. Other 4xx are final. A request that finally fails is an
``LLMResult.failure`` with the reason; a server that cannot be reached at all raises
``ServingError`` within seconds. Replies are cached as they arrive (see ``response_cache``).

This module holds the client (settings, cache, request bodies, endpoints and their keys); the
batch itself runs in ``_batch`` (queue, workers, failover, retries, progress), the bytes on the
wire are encoded and replies read in ``_wire``, and keys and URL credentials are checked and
redacted in ``_credentials``.
"""

from __future__ import annotations

import os
import random
import urllib.parse
from typing import Any, Sequence

from ..core.errors import ConfigError
from ..core.llm import Conversation, LLMResult, LLMServingABC
from ..core.strict import strict_schema
from ._aio import run_sync
from ._batch import BatchRun, Endpoint, Job, progress_bar, refresh_bar
from ._credentials import check_key, redact_url, split_userinfo
from ._wire import schema_name
from .response_cache import ResponseCache, request_key



class APILLMServing_request(LLMServingABC):
    """LLM serving over an OpenAI-compatible ``/v1/chat/completions`` HTTP API.

    Args:
        api_url: the chat-completions URL, or a list of them (load-balanced, with failover).
        key_name_of_api_key: name of the environment variable holding the API key (or a list, one
            per URL). An unset/empty variable sends no ``Authorization`` header (local servers).
        model_name: the ``model`` field sent.
        max_workers: concurrent requests (connections).
        temperature: sent as ``temperature`` (``None`` omits it).
        max_retries: retries after the first attempt for 429/5xx/timeouts/connection errors.
        timeout: seconds for one attempt.
        cache: keep a response cache (in ``cache_dir``, or the folder operators give via
            ``use_cache_dir``); ``False`` turns it off.
        cache_dir: where the cache lives, overriding the operator's folder.
        connect_timeout: seconds to open a connection.
        backoff_base, backoff_max: exponential backoff (seconds) between retries.
        max_retry_after: upper bound on a server's ``Retry-After``.
        down_timeout: after a server that answered earlier in the batch refuses connections for
            this long on every endpoint, the batch stops with ``ServingError``.
        progress: show a tqdm bar on stderr (only when stderr is a terminal).
        **extra_body: merged into every request's JSON (``top_p=...``, ``max_tokens=...``).
    """

    def __init__(
        self,
        api_url: str | Sequence[str] = "https://api.openai.com/v1/chat/completions",
        key_name_of_api_key: str | Sequence[str] = "DF_API_KEY",
        model_name: str = "gpt-4o",
        max_workers: int = 10,
        temperature: float | None = 0.0,
        max_retries: int = 5,
        timeout: float = 120.0,
        *,
        cache: bool = True,
        cache_dir: str | os.PathLike | None = None,
        connect_timeout: float = 10.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 60.0,
        down_timeout: float = 30.0,
        progress: bool = True,
        **extra_body: Any,
    ):
        super().__init__()
        urls = [api_url] if isinstance(api_url, str) else list(api_url)
        if not urls or not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
            raise ConfigError(f"api_url must be an http(s) URL or a list of them, got {api_url!r}")
        if isinstance(key_name_of_api_key, str) or key_name_of_api_key is None:
            key_names = [key_name_of_api_key] * len(urls)
        else:
            key_names = list(key_name_of_api_key)
            if len(key_names) != len(urls):
                raise ConfigError(
                    f"key_name_of_api_key has {len(key_names)} names for {len(urls)} api_url entries; "
                    "give one name, or one per URL"
                )
        if int(max_workers) < 1:
            raise ConfigError(f"max_workers must be >= 1, got {max_workers}")
        self.api_urls = urls
        self.api_url = urls[0]
        self.key_names = key_names
        self.model_name = model_name
        self.max_workers = int(max_workers)
        self.temperature = temperature
        self.max_retries = max(0, int(max_retries))
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.max_retry_after = float(max_retry_after)
        self.down_timeout = float(down_timeout)
        self.progress = progress
        self.extra_body = dict(extra_body)
        self.cache_enabled = bool(cache)
        # absolute, so a copy of this client in another process (a Ray actor) finds the same cache
        self._user_cache_dir = os.path.abspath(os.fspath(cache_dir)) if cache_dir is not None else None
        self._cache_dir = self._user_cache_dir
        self._cache: ResponseCache | None = None
        self._rng = random.Random()
        self._accepted_urls: set[str] = set()  # endpoints that answered 200: their key is good
        # workers start spread over this long (at most ~1 ms apart) so their requests do not
        # travel in one synchronized wave, which costs ~10% throughput at high concurrency
        self.ramp_seconds = min(0.2, 0.0008 * self.max_workers)

    # -- cache ----------------------------------------------------------------------------------
    def use_cache_dir(self, cache_dir: str) -> None:
        """Put the response cache in ``cache_dir`` unless the user chose ``cache_dir=``."""
        if self._user_cache_dir is not None or not self.cache_enabled:
            return
        path = os.path.abspath(os.fspath(cache_dir))
        if path != self._cache_dir:
            if self._cache is not None:
                self._cache.close()
                self._cache = None
            self._cache_dir = path

    @property
    def cache(self) -> ResponseCache | None:
        """The response cache in use, or ``None`` (off, or no folder known yet)."""
        if not self.cache_enabled or self._cache_dir is None:
            return None
        if self._cache is None:
            self._cache = ResponseCache(self._cache_dir)
        return self._cache

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    # -- the batch ------------------------------------------------------------------------------
    def _fields(self, options: dict | None) -> tuple[float | None, dict]:
        """``(temperature, extra body)`` of one request: the client's, overridden by ``options``."""
        if not options:
            return self.temperature, self.extra_body
        extra = {**self.extra_body, **{k: v for k, v in options.items() if k != "temperature"}}
        return options.get("temperature", self.temperature), extra

    def _payload(self, messages: Conversation, json_schema: dict | None, options: dict | None = None) -> dict:
        temperature, extra = self._fields(options)
        payload: dict[str, Any] = dict(extra)
        payload["model"] = self.model_name
        payload["messages"] = messages
        if temperature is not None:
            payload["temperature"] = temperature
        if json_schema is not None:  # strict only in a form OpenAI's strict mode takes (dataflow.core.strict)
            strict = strict_schema(json_schema)
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name(json_schema), "schema": json_schema if strict is None else strict,
                                "strict": strict is not None},
            }
        return payload

    def _generate(self, conversations: list[Conversation], schemas: list[dict | None]) -> list[LLMResult]:
        return self._generate_with_options(conversations, schemas, [None] * len(conversations))

    def _generate_with_options(self, conversations: list[Conversation], schemas: list[dict | None],
                               options: list[dict | None]) -> list[LLMResult]:
        n = len(conversations)
        results: list[LLMResult | None] = [None] * n
        cache = self.cache
        jobs: list[Job] = []
        if cache is not None:
            keys = [request_key(self.model_name, c, *self._fields(opts), schema)
                    for c, schema, opts in zip(conversations, schemas, options)]
            hits = cache.get_many(keys)
            by_key: dict[str, Job] = {}
            for i, key in enumerate(keys):
                hit = hits.get(key)
                if hit is not None:
                    results[i] = LLMResult(text=hit.text, cached=True, finish_reason=hit.finish_reason)
                elif key in by_key:  # identical request in this batch: ask once
                    by_key[key].positions.append(i)
                else:
                    by_key[key] = job = Job([i], conversations[i], key, schemas[i], options[i])
                    jobs.append(job)
        else:
            jobs = [Job([i], c, None, schemas[i], options[i]) for i, c in enumerate(conversations)]
        if jobs:
            n_cached = n - sum(len(j.positions) for j in jobs)
            self._before_send()
            run_sync(lambda: self._run_jobs(jobs, results, n_cached))
        return results  # type: ignore[return-value]

    def _before_send(self) -> None:
        """Called once per batch, only when some request missed the cache, just before the first
        HTTP request. Subclasses that own a server (the embedded model) start it here."""

    def _endpoints(self) -> tuple[list[Endpoint], list[str]]:
        endpoints, secrets = [], []
        for url, key_env in zip(self.api_urls, self.key_names):
            key = os.environ.get(key_env) if key_env else None
            headers = {"Content-Type": "application/json"}
            if key:
                check_key(key, key_env)
                headers["Authorization"] = f"Bearer {key}"
                secrets.append(key)
            url, userinfo = split_userinfo(url)
            if userinfo:  # user:password@host: sent as Basic auth; the URL used and shown has none
                if key:
                    raise ConfigError(f"{redact_url(url, userinfo)} carries credentials and ${key_env} is set "
                                      "too: give the key in one of them")
                import base64

                basic = base64.b64encode(urllib.parse.unquote(userinfo).encode()).decode()
                headers["Authorization"] = f"Basic {basic}"
                secrets += [userinfo, urllib.parse.unquote(userinfo), basic]
            endpoints.append(Endpoint(url=url, key_env=key_env, headers=headers,
                                       key_accepted=url in self._accepted_urls))
        return endpoints, secrets

    async def _run_jobs(self, jobs: list[Job], results: list, n_cached: int) -> None:
        import aiohttp

        endpoints, secrets = self._endpoints()
        run = BatchRun(self, endpoints, secrets, results, len(jobs))
        connector = aiohttp.TCPConnector(limit=self.max_workers, limit_per_host=0, ttl_dns_cache=300,
                                         keepalive_timeout=30)
        timeout = aiohttp.ClientTimeout(total=self.timeout,
                                        sock_connect=min(self.connect_timeout, self.timeout))
        bar = progress_bar(self, len(results), n_cached)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                             raise_for_status=False) as session:
                await run.execute(session, jobs, bar, n_cached)
        finally:
            run.flush_cache()
            if bar is not None:
                refresh_bar(bar, run, n_cached, final=True)
                bar.close()
        if run.fatal is None and run.done == 0 and not any(ep.reached for ep in endpoints):
            run.check_unreachable("every connection attempt failed", final=True)
        if run.fatal is not None:
            raise run.fatal

    # -- one attempt ----------------------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max, self.backoff_base * (2 ** attempt))
        return delay * (0.5 + self._rng.random() * 0.5)

    def __repr__(self) -> str:
        urls = [redact_url(u) for u in self.api_urls] if len(self.api_urls) > 1 else redact_url(self.api_url)
        return f"APILLMServing_request(api_url={urls!r}, model_name={self.model_name!r}, max_workers={self.max_workers})"
