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
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..core.errors import ConfigError, ServingError
from ..core.llm import CURRENT_STEP, Conversation, LLMResult, LLMServingABC
from ..core.strict import strict_schema
from ._aio import run_sync
from .response_cache import CachedResponse, ResponseCache, request_key

_RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))
_AUTH_STATUSES = frozenset({401, 403})
#: a batch stops with ``ServingError`` once this many requests (or all of a smaller batch) got
#: 401/403 from every endpoint and no endpoint ever accepted the key
AUTH_FAIL_FAST = 3


@dataclass
class _Endpoint:
    url: str
    key_env: str | None
    headers: dict = field(default_factory=dict, repr=False)  # holds the Authorization header
    inflight: int = 0
    reached: bool = False  # answered at least once in this batch
    conn_failures: int = 0  # consecutive connect-level failures
    down_since: float | None = None
    limited_until: float = 0.0
    auth_rejections: int = 0  # 401/403 answers in this batch
    key_accepted: bool = False  # answered 200 with this key (in this batch or an earlier one)


@dataclass
class _Job:
    positions: list[int]
    messages: Conversation
    key: str | None
    schema: dict | None = None  # the JSON schema the reply must follow (None: free text)
    options: dict | None = None  # request fields for this request only (temperature, seed, ...)
    body: bytes | None = None  # the request JSON, encoded at the first attempt
    attempt: int = 0
    down_retries: int = 0  # connect failures while every endpoint was down (not counted in attempt)
    avoid: _Endpoint | None = None


@dataclass
class _Attempt:
    """What one HTTP attempt came to: a final result, or a retryable failure."""

    result: LLMResult | None = None
    reason: str = ""
    status: int | None = None
    retry_after: float | None = None
    connect_failure: bool = False


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
                "json_schema": {"name": _schema_name(json_schema), "schema": json_schema if strict is None else strict,
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
        jobs: list[_Job] = []
        if cache is not None:
            keys = [request_key(self.model_name, c, *self._fields(opts), schema)
                    for c, schema, opts in zip(conversations, schemas, options)]
            hits = cache.get_many(keys)
            by_key: dict[str, _Job] = {}
            for i, key in enumerate(keys):
                hit = hits.get(key)
                if hit is not None:
                    results[i] = LLMResult(text=hit.text, cached=True, finish_reason=hit.finish_reason)
                elif key in by_key:  # identical request in this batch: ask once
                    by_key[key].positions.append(i)
                else:
                    by_key[key] = job = _Job([i], conversations[i], key, schemas[i], options[i])
                    jobs.append(job)
        else:
            jobs = [_Job([i], c, None, schemas[i], options[i]) for i, c in enumerate(conversations)]
        if jobs:
            n_cached = n - sum(len(j.positions) for j in jobs)
            self._before_send()
            run_sync(lambda: self._run_jobs(jobs, results, n_cached))
        return results  # type: ignore[return-value]

    def _before_send(self) -> None:
        """Called once per batch, only when some request missed the cache, just before the first
        HTTP request. Subclasses that own a server (the embedded model) start it here."""

    def _endpoints(self) -> tuple[list[_Endpoint], list[str]]:
        endpoints, secrets = [], []
        for url, key_env in zip(self.api_urls, self.key_names):
            key = os.environ.get(key_env) if key_env else None
            headers = {"Content-Type": "application/json"}
            if key:
                _check_key(key, key_env)
                headers["Authorization"] = f"Bearer {key}"
                secrets.append(key)
            url, userinfo = _split_userinfo(url)
            if userinfo:  # user:password@host: sent as Basic auth; the URL used and shown has none
                if key:
                    raise ConfigError(f"{redact_url(url, userinfo)} carries credentials and ${key_env} is set "
                                      "too: give the key in one of them")
                import base64

                basic = base64.b64encode(urllib.parse.unquote(userinfo).encode()).decode()
                headers["Authorization"] = f"Basic {basic}"
                secrets += [userinfo, urllib.parse.unquote(userinfo), basic]
            endpoints.append(_Endpoint(url=url, key_env=key_env, headers=headers,
                                       key_accepted=url in self._accepted_urls))
        return endpoints, secrets

    async def _run_jobs(self, jobs: list[_Job], results: list, n_cached: int) -> None:
        import aiohttp

        endpoints, secrets = self._endpoints()
        run = _BatchRun(self, endpoints, secrets, results, len(jobs))
        connector = aiohttp.TCPConnector(limit=self.max_workers, limit_per_host=0, ttl_dns_cache=300,
                                         keepalive_timeout=30)
        timeout = aiohttp.ClientTimeout(total=self.timeout,
                                        sock_connect=min(self.connect_timeout, self.timeout))
        bar = _progress_bar(self, len(results), n_cached)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                             raise_for_status=False) as session:
                await run.execute(session, jobs, bar, n_cached)
        finally:
            run.flush_cache()
            if bar is not None:
                _refresh_bar(bar, run, n_cached, final=True)
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


class _BatchRun:
    """State of one batch on the event loop: queue, workers, endpoints, cache writes."""

    def __init__(self, owner: APILLMServing_request, endpoints: list[_Endpoint], secrets: list[str],
                 results: list, n_jobs: int):
        self.owner = owner
        self.endpoints = endpoints
        self.secrets = secrets
        self.results = results
        self.remaining = n_jobs
        self.n_jobs = n_jobs
        self.done = 0
        self.failed = 0
        self.fatal: ServingError | None = None
        self.finished = asyncio.Event()
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.pending_cache: list[tuple[str, CachedResponse, str]] = []
        self.flush_scheduled = False
        self.next_endpoint = 0
        self.loop = asyncio.get_running_loop()

    async def execute(self, session, jobs: list[_Job], bar, n_cached: int) -> None:
        for job in jobs:
            self.queue.put_nowait(job)
        n_workers = min(self.owner.max_workers, len(jobs))
        stagger = self.owner.ramp_seconds / n_workers if n_workers > 1 else 0.0
        workers = [asyncio.create_task(self.worker(session, i * stagger)) for i in range(n_workers)]
        ticker = asyncio.create_task(self.tick(bar, n_cached)) if bar is not None else None
        try:
            await self.finished.wait()
        finally:
            for task in workers + ([ticker] if ticker else []):
                task.cancel()
            await asyncio.gather(*workers, *([ticker] if ticker else []), return_exceptions=True)

    async def tick(self, bar, n_cached: int) -> None:
        while True:
            await asyncio.sleep(0.25)
            _refresh_bar(bar, self, n_cached)

    async def worker(self, session, start_delay: float = 0.0) -> None:
        owner = self.owner
        if start_delay > 0:
            await asyncio.sleep(start_delay)
        while True:
            job = await self.queue.get()
            if self.fatal is not None:  # the batch is stopping: send nothing more
                return
            try:
                attempt = await self.attempt(session, job)
            except Exception as exc:  # noqa: BLE001 - a bug or a refused request must end the batch, not hang it
                self.fatal = ServingError(self.redact(
                    f"the request could not be sent: {type(exc).__name__}: {_clip(self.redact(str(exc)), 300)}"))
                self.finished.set()
                return
            if attempt.result is not None:
                self.finish(job, attempt.result)
                continue
            if self.fatal is not None:
                return
            if attempt.connect_failure and all(ep.conn_failures for ep in self.endpoints):
                # nothing accepts connections: wait for the server without spending this request's
                # retries; check_unreachable bounds the wait (fast when it never answered)
                owner.stats.retries += 1
                job.down_retries += 1
                self.loop.call_later(min(2.0, owner._backoff(job.down_retries - 1)), self.queue.put_nowait, job)
                continue
            if job.attempt >= owner.max_retries:
                self.finish(job, LLMResult.failure(self.redact(attempt.reason), status=attempt.status))
                continue
            owner.stats.retries += 1
            job.attempt += 1
            if self.alternative(job.avoid) is not None:
                delay = 0.0  # fail over to another endpoint now
            elif attempt.retry_after is not None:
                delay = attempt.retry_after
            else:
                delay = owner._backoff(job.attempt - 1)
            if delay <= 0:
                self.queue.put_nowait(job)
            else:
                self.loop.call_later(delay, self.queue.put_nowait, job)

    def finish(self, job: _Job, result: LLMResult) -> None:
        for pos in job.positions:
            self.results[pos] = result
        if result.ok:
            self.done += len(job.positions)
            if job.key is not None:
                self.pending_cache.append((job.key, CachedResponse(
                    result.text or "", result.prompt_tokens, result.completion_tokens, result.finish_reason,
                ), self.owner.model_name))
                if not self.flush_scheduled:
                    self.flush_scheduled = True
                    self.loop.call_soon(self.flush_cache)
        else:
            self.failed += len(job.positions)
        self.remaining -= 1
        if self.remaining <= 0:
            self.finished.set()

    def flush_cache(self) -> None:
        """Commit the replies that arrived in this event-loop turn (one transaction)."""
        self.flush_scheduled = False
        items, self.pending_cache = self.pending_cache, []
        cache = self.owner.cache
        if items and cache is not None:
            cache.put_many(items)

    # -- endpoints ------------------------------------------------------------------------------
    def healthy(self, ep: _Endpoint, now: float) -> bool:
        return (ep.conn_failures == 0 and ep.limited_until <= now
                and (ep.key_accepted or not ep.auth_rejections))

    def alternative(self, avoid: _Endpoint | None) -> _Endpoint | None:
        if avoid is None or len(self.endpoints) == 1:
            return None
        now = time.monotonic()
        return next((ep for ep in self.endpoints if ep is not avoid and self.healthy(ep, now)), None)

    def pick(self, avoid: _Endpoint | None) -> _Endpoint:
        eps = self.endpoints
        if len(eps) == 1:
            return eps[0]
        now = time.monotonic()
        pool = [ep for ep in eps if ep is not avoid and self.healthy(ep, now)]
        if not pool:
            pool = [ep for ep in eps if ep.conn_failures == 0] or eps
        self.next_endpoint += 1
        start = self.next_endpoint % len(pool)
        rotated = pool[start:] + pool[:start]
        return min(rotated, key=lambda ep: ep.inflight)

    # -- HTTP -----------------------------------------------------------------------------------
    async def attempt(self, session, job: _Job) -> _Attempt:
        import aiohttp

        owner = self.owner
        if job.body is None:
            job.body = _dumps(owner._payload(job.messages, job.schema, job.options))
        ep = self.pick(job.avoid)
        job.avoid = ep
        owner.stats.requests_sent += 1
        started = time.monotonic()
        ep.inflight += 1
        try:
            async with session.post(ep.url, data=job.body, headers=ep.headers) as resp:
                status = resp.status
                raw = await resp.read()
                if self.secrets:  # redact before anything clips it: a cut key would show its prefix
                    raw = self.redact_bytes(raw)
                retry_after = _retry_after(resp.headers) if status in _RETRY_STATUSES else None
        except aiohttp.ConnectionTimeoutError:
            return self.connect_failed(ep, started, f"connection error: no connection to {ep.url} "
                                                    f"within {owner.connect_timeout:g}s")
        except (asyncio.TimeoutError, TimeoutError):
            return self.reached(ep, _Attempt(reason=f"timeout after {owner.timeout:g}s"))
        except aiohttp.ClientConnectorError as exc:
            return self.connect_failed(ep, started, f"connection error: cannot connect to {ep.url} "
                                                    f"({_os_reason(exc)})")
        except (aiohttp.ClientError, OSError) as exc:
            return self.reached(ep, _Attempt(reason=f"connection error: {type(exc).__name__}: {exc}"))
        finally:
            ep.inflight -= 1
        attempt = self.reached(ep, _Attempt(status=status))
        if status == 200:
            if not ep.key_accepted:
                ep.key_accepted = True
                owner._accepted_urls.add(ep.url)
            return _parse_reply(raw)
        attempt.reason = f"HTTP {status}: {_short_body(raw)}"
        if status in _AUTH_STATUSES and not ep.key_accepted:
            ep.auth_rejections += 1
            self.check_auth(status, attempt.reason)
            if self.alternative(ep) is not None:  # another endpoint may take this key: fail over
                return attempt
        if status not in _RETRY_STATUSES:
            attempt.result = LLMResult.failure(self.redact(attempt.reason), status=status)
            return attempt
        if retry_after is not None:
            attempt.retry_after = min(retry_after, owner.max_retry_after)
        if status == 429:
            ep.limited_until = time.monotonic() + (attempt.retry_after or owner.backoff_base)
        return attempt

    def reached(self, ep: _Endpoint, attempt: _Attempt) -> _Attempt:
        ep.reached = True
        ep.conn_failures = 0
        ep.down_since = None
        return attempt

    def connect_failed(self, ep: _Endpoint, started: float, reason: str) -> _Attempt:
        ep.conn_failures += 1
        if ep.down_since is None or started < ep.down_since:
            ep.down_since = started
        self.check_unreachable(reason)
        return _Attempt(reason=reason, connect_failure=True)

    def check_unreachable(self, last_reason: str, final: bool = False) -> None:
        """Stop the batch with ``ServingError`` when no endpoint accepts connections: at once
        (after >= 2 refusals each over >= 1 s) when none answered in this batch, or after
        ``down_timeout`` seconds when they answered earlier."""
        if self.fatal is not None:
            return
        now = time.monotonic()
        eps = self.endpoints
        needed = 1 if final else 2
        if not all(ep.conn_failures >= needed and ep.down_since is not None for ep in eps):
            return
        if final:
            now = max(now, max(ep.down_since for ep in eps) + 1.0)  # type: ignore[type-var]
        down_for = min(now - ep.down_since for ep in eps)  # type: ignore[operator]
        urls = ", ".join(ep.url for ep in eps)
        finished = self.done + self.failed
        if not any(ep.reached for ep in eps) and down_for >= min(1.0, self.owner.connect_timeout):
            message = (f"cannot reach the LLM server at {urls}: {last_reason}. Is the server running "
                       "and is api_url right? Start the server or fix api_url, then rerun.")
        elif down_for >= self.owner.down_timeout:
            message = (f"the LLM server at {urls} stopped accepting connections for {down_for:.0f}s: "
                       f"{last_reason}. {finished} requests of this batch had finished (replies are "
                       "cached); restart the server and rerun to resume.")
        else:
            return
        self.fatal = ServingError(self.redact(message))
        self.finished.set()

    def check_auth(self, status: int, last_reason: str) -> None:
        """Stop the batch with ``ServingError`` when every endpoint rejected the API key (401/403)
        and none ever accepted it: after ``AUTH_FAIL_FAST`` rejections, or every request of a
        smaller batch. A 401/403 once an endpoint has answered 200 stays that row's failure."""
        eps = self.endpoints
        if self.fatal is not None or any(ep.key_accepted for ep in eps):
            return
        if not all(ep.auth_rejections for ep in eps):
            return
        if sum(ep.auth_rejections for ep in eps) < min(AUTH_FAIL_FAST, self.n_jobs):
            return
        urls = ", ".join(ep.url for ep in eps)
        names = ", ".join(dict.fromkeys(f"${ep.key_env}" for ep in eps if ep.key_env)) or "(no key variable)"
        if any("Authorization" in ep.headers for ep in eps):
            what = f"the LLM endpoint rejected the API key from {names}"
            todo = f"set {names} to a valid key for this endpoint (and check api_url / DF_API_URL), then rerun"
        else:
            what = f"the LLM endpoint requires an API key and none was sent: {names} is not set"
            todo = f"export {names.split(', ')[0].lstrip('$') or 'DF_API_KEY'}=<your key>, then rerun"
        body = last_reason.partition(": ")[2] or last_reason
        self.fatal = ServingError(self.redact(
            f"{what} (HTTP {status} from {urls}: {body}) — {todo}; nothing was written for this step"))
        self.finished.set()

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def redact_bytes(self, raw: bytes) -> bytes:
        for secret in self.secrets:
            if secret:
                raw = raw.replace(secret.encode("utf-8", "surrogateescape"), b"***")
        return raw


# -- helpers ----------------------------------------------------------------------------------------
try:  # pragma: no cover - optional speed-up
    import orjson as _orjson  # type: ignore[import-not-found]

    def _dumps(obj: Any) -> bytes:
        return _orjson.dumps(obj)

    _loads = _orjson.loads
except ImportError:
    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    _loads = json.loads


def _schema_name(schema: dict) -> str:
    title = schema.get("title") if isinstance(schema, dict) else None
    name = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in str(title or "response"))
    return name[:64] or "response"


def _parse_reply(raw: bytes) -> _Attempt:
    try:
        data = _loads(raw)
        if "error" in data and "choices" not in data:
            return _Attempt(reason=f"malformed response: error in body: {_short_body(raw)}", status=200)
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content")
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return _Attempt(reason=f"malformed response: {type(exc).__name__}: {_clip(str(exc), 120)}; "
                               f"body: {_short_body(raw, 80)}", status=200)
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    if not content:  # an empty reply is a failure, never "" as data
        native = " with native tool_calls, which no operator reads: ask for structured output" \
            if isinstance(message, dict) and message.get("tool_calls") else ""
        return _Attempt(result=LLMResult.failure(f"empty reply{native} (finish_reason={finish})", status=200,
                                                 finish_reason=finish))
    return _Attempt(result=LLMResult.success(content, prompt_tokens=prompt_tokens,
                                             completion_tokens=completion_tokens, status=200,
                                             finish_reason=finish))


def _retry_after(headers) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    return parse_retry_after(headers.get("Retry-After"))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header value in seconds (``None`` when absent or unreadable)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _short_body(raw: bytes, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("error"), dict) and data["error"].get("message"):
            text = str(data["error"]["message"])
        elif isinstance(data, dict) and isinstance(data.get("error"), str):
            text = data["error"]
    except ValueError:
        pass
    return _clip(" ".join(text.split()) or "(empty body)", limit)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _split_userinfo(url: str) -> tuple[str, str]:
    """``(url without user:password@, the user:password part or "")``."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, ""
    userinfo, _, hostport = parts.netloc.rpartition("@")
    return urllib.parse.urlunsplit(parts._replace(netloc=hostport)), userinfo


def redact_url(url: str, userinfo: str | None = None) -> str:
    """``url`` fit to print: credentials in it (``user:password@``) become ``***@``."""
    bare, found = _split_userinfo(url)
    if not (userinfo or found):
        return url
    parts = urllib.parse.urlsplit(bare)
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc))


def _check_key(key: str, key_env: str | None) -> None:
    """A key that cannot go in an HTTP header is a ``ConfigError`` naming its variable (never
    the key): a line break (a key file with CRLF line endings) or another control character."""
    bad = next((ch for ch in key if ord(ch) < 32 or ord(ch) == 127), None)
    if bad is not None:
        what = {"\r": "a carriage return (\\r)", "\n": "a line break (\\n)"}.get(bad, f"a control character ({ord(bad):#04x})")
        raise ConfigError(
            f"the API key in ${key_env or 'the key variable'} contains {what}, which cannot be sent in an "
            f"HTTP header (was it read from a file with Windows line endings?): strip it, e.g. "
            f"export {key_env or 'DF_API_KEY'}=\"$(tr -d '\\r\\n' < keyfile)\""
        )


def _os_reason(exc: Exception) -> str:
    os_error = getattr(exc, "os_error", None)
    if os_error is not None and getattr(os_error, "strerror", None):
        return os_error.strerror
    return str(exc) or type(exc).__name__


def _progress_bar(owner: APILLMServing_request, total: int, n_cached: int):
    if not owner.progress:
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, initial=n_cached, desc=CURRENT_STEP.get() or owner.model_name, unit="req", file=sys.stderr,
               disable=None, leave=False, dynamic_ncols=True)
    if bar.disable:
        bar.close()
        return None
    return bar


def _refresh_bar(bar, run: _BatchRun, n_cached: int, final: bool = False) -> None:
    bar.n = n_cached + run.done + run.failed
    bar.set_postfix_str(f"ok={run.done} failed={run.failed} cached={n_cached}", refresh=False)
    bar.refresh()
