"""One batch of requests on the event loop: a queue of jobs, ``max_workers`` coroutines taking
them over one connection pool, endpoints with health (connect failures, 429 limits, rejected keys)
and failover, retries with backoff put back on the queue, replies cached as they arrive, and the
progress bar. The client (``api_request.APILLMServing_request``) owns the settings and the cache."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.errors import ServingError
from ..core.llm import CURRENT_STEP, Conversation, LLMResult
from ._wire import Attempt, clip, dumps, os_reason, parse_reply, retry_after_of, short_body
from .response_cache import CachedResponse

if TYPE_CHECKING:  # pragma: no cover
    from .api_request import APILLMServing_request

RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))
AUTH_STATUSES = frozenset({401, 403})
#: a batch stops with ``ServingError`` once this many requests (or all of a smaller batch) got
#: 401/403 from every endpoint and no endpoint ever accepted the key
AUTH_FAIL_FAST = 3


@dataclass
class Endpoint:
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
class Job:
    positions: list[int]
    messages: Conversation
    key: str | None
    schema: dict | None = None  # the JSON schema the reply must follow (None: free text)
    options: dict | None = None  # request fields for this request only (temperature, seed, ...)
    body: bytes | None = None  # the request JSON, encoded at the first attempt
    attempt: int = 0
    down_retries: int = 0  # connect failures while every endpoint was down (not counted in attempt)
    avoid: Endpoint | None = None



class BatchRun:
    """State of one batch on the event loop: queue, workers, endpoints, cache writes."""

    def __init__(self, owner: "APILLMServing_request", endpoints: list[Endpoint], secrets: list[str],
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
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.pending_cache: list[tuple[str, CachedResponse, str]] = []
        self.flush_scheduled = False
        self.next_endpoint = 0
        self.loop = asyncio.get_running_loop()

    async def execute(self, session, jobs: list[Job], bar, n_cached: int) -> None:
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
            refresh_bar(bar, self, n_cached)

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
                    f"the request could not be sent: {type(exc).__name__}: {clip(self.redact(str(exc)), 300)}"))
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

    def finish(self, job: Job, result: LLMResult) -> None:
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
    def healthy(self, ep: Endpoint, now: float) -> bool:
        return (ep.conn_failures == 0 and ep.limited_until <= now
                and (ep.key_accepted or not ep.auth_rejections))

    def alternative(self, avoid: Endpoint | None) -> Endpoint | None:
        if avoid is None or len(self.endpoints) == 1:
            return None
        now = time.monotonic()
        return next((ep for ep in self.endpoints if ep is not avoid and self.healthy(ep, now)), None)

    def pick(self, avoid: Endpoint | None) -> Endpoint:
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
    async def attempt(self, session, job: Job) -> Attempt:
        import aiohttp

        owner = self.owner
        if job.body is None:
            job.body = dumps(owner._payload(job.messages, job.schema, job.options))
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
                retry_after = retry_after_of(resp.headers) if status in RETRY_STATUSES else None
        except aiohttp.ConnectionTimeoutError:
            return self.connect_failed(ep, started, f"connection error: no connection to {ep.url} "
                                                    f"within {owner.connect_timeout:g}s")
        except (asyncio.TimeoutError, TimeoutError):
            return self.reached(ep, Attempt(reason=f"timeout after {owner.timeout:g}s"))
        except aiohttp.ClientConnectorError as exc:
            return self.connect_failed(ep, started, f"connection error: cannot connect to {ep.url} "
                                                    f"({os_reason(exc)})")
        except (aiohttp.ClientError, OSError) as exc:
            return self.reached(ep, Attempt(reason=f"connection error: {type(exc).__name__}: {exc}"))
        finally:
            ep.inflight -= 1
        attempt = self.reached(ep, Attempt(status=status))
        if status == 200:
            if not ep.key_accepted:
                ep.key_accepted = True
                owner._accepted_urls.add(ep.url)
            return parse_reply(raw)
        attempt.reason = f"HTTP {status}: {short_body(raw)}"
        if status in AUTH_STATUSES and not ep.key_accepted:
            ep.auth_rejections += 1
            self.check_auth(status, attempt.reason)
            if self.alternative(ep) is not None:  # another endpoint may take this key: fail over
                return attempt
        if status not in RETRY_STATUSES:
            attempt.result = LLMResult.failure(self.redact(attempt.reason), status=status)
            return attempt
        if retry_after is not None:
            attempt.retry_after = min(retry_after, owner.max_retry_after)
        if status == 429:
            ep.limited_until = time.monotonic() + (attempt.retry_after or owner.backoff_base)
        return attempt

    def reached(self, ep: Endpoint, attempt: Attempt) -> Attempt:
        ep.reached = True
        ep.conn_failures = 0
        ep.down_since = None
        return attempt

    def connect_failed(self, ep: Endpoint, started: float, reason: str) -> Attempt:
        ep.conn_failures += 1
        if ep.down_since is None or started < ep.down_since:
            ep.down_since = started
        self.check_unreachable(reason)
        return Attempt(reason=reason, connect_failure=True)

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


def progress_bar(owner: "APILLMServing_request", total: int, n_cached: int):
    if not owner.progress:
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, initial=n_cached, desc=CURRENT_STEP.get() or owner.model_name, unit="req", file=sys.stderr,
               disable=None, leave=False, dynamic_ncols=True)
    if bar.disable:
        bar.close()
        return None
    return bar


def refresh_bar(bar, run: BatchRun, n_cached: int, final: bool = False) -> None:
    bar.n = n_cached + run.done + run.failed
    bar.set_postfix_str(f"ok={run.done} failed={run.failed} cached={n_cached}", refresh=False)
    bar.refresh()
