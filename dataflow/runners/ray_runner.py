"""``RayRunner``: run each operator step's batch function on a pool of Ray actors with Ray Data.

What happens in one step (``OperatorABC._run_step`` under ``with RayRunner(...)``):

1. This process (the driver) checks the input columns, looks for a reusable finished step, and
   reads the step's rows from ``FileStorage`` exactly as the local runner does.
2. The operator's batch function (a closure over the operator and its ``llm_serving``) is pickled
   once with cloudpickle. The rows become a Ray Dataset of ``(index, row JSON)`` records, and
   ``map_batches`` runs them through a fixed pool of ``num_actors`` actors
   (``ActorPoolStrategy``), each reserving ``cpus_per_actor`` CPUs. An actor unpickles the
   operator -- building its serving client once -- and calls the batch function on each batch
   of ``batch_size`` rows; the client sends that batch's requests concurrently (its
   ``max_workers``), so the cluster has up to ``num_actors x max_workers`` requests in flight.
3. The driver collects the outcomes, sorts them back into input order by index, adds the actors'
   LLM statistics to its own serving's and the counters their copies of the operator recorded
   (``stat_update``; each batch's travel with its outcomes) to the operator's, and ``_run_step``
   writes the step file, rejected rows and manifest atomically, as it always does. Step files
   are therefore identical to the local runner's, and either runner reuses or resumes the
   other's steps.

Response cache: every actor opens the same SQLite response cache as the driver (the step's
``cache_path``, made absolute; WAL mode with a 30 s busy timeout, one transaction per event-loop
turn of replies). A reply is committed as it arrives, so when an actor, a node or the driver dies,
a retried batch (Ray Data restarts the actor and resubmits its batches) or a rerun finds every
finished request in the cache and does not send it again. This needs ``cache_path`` on a
filesystem every node sees (one machine, or a shared POSIX filesystem with working file locks;
SQLite's WAL mode does not work over NFS).

Operators whose ``rows_independent`` is False (their row logic looks across the whole table, e.g.
``DataSampler``, ``APIGenGenerator``) run in the driver on all rows at once, so results never
depend on how rows were split.

CPU budget: LLM actors are I/O-bound; each reserves only ``cpus_per_actor`` (0.25 by default). The
runner refuses (``ConfigError``) a pool whose ``num_actors x cpus_per_actor`` would leave less
than ``reserve_cpus`` (1) of the cluster's CPUs for Ray Data's own read/write tasks: with every
CPU held by actors a Ray Data job waits forever without an error.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Callable

from ..core.errors import ConfigError
from ..core.operator import FAILED, FILTERED, OK, OperatorABC, RowOutcome
from .base import Runner

log = logging.getLogger("dataflow.runners")

_STATUSES = (OK, FAILED, FILTERED)


class RayRunner(Runner):
    """Execute operator steps on Ray actors (see the module docstring).

    Args:
        address: ``None`` starts a local Ray instance (``ray.init()``) unless one is already
            running in this process; ``"auto"`` joins the cluster this machine belongs to
            (started with ``ray start --head``); ``"ray://HOST:10001"`` connects with Ray Client.
        num_actors: size of the actor pool (each builds one serving client).
        cpus_per_actor: CPUs each actor reserves (small: LLM actors wait on the network).
        batch_size: rows per batch given to an actor at a time.
        reserve_cpus: CPUs that must stay free for Ray Data's reads and writes.
        ray_init_kwargs: extra ``ray.init`` arguments (``num_cpus``, ``object_store_memory``,
            ``runtime_env`` ...). A local start defaults to ``include_dashboard=False``.
        ray_remote_args: extra actor options for ``map_batches`` (``resources``, ``memory``,
            ``runtime_env``; Ray Data spreads actors over nodes by default).
        forward_env: names of environment variables to set on the actors (default: the
            serving's API-key variables that are set here, e.g. ``DF_API_KEY``). Their values
            travel in Ray's runtime environment, never in a step file, manifest or log.
        verbose: show Ray Data's progress bars and execution logs.
    """

    def __init__(
        self,
        address: str | None = None,
        num_actors: int = 2,
        cpus_per_actor: float = 0.25,
        batch_size: int = 32,
        *,
        reserve_cpus: float = 1.0,
        ray_init_kwargs: dict[str, Any] | None = None,
        ray_remote_args: dict[str, Any] | None = None,
        forward_env: list[str] | tuple[str, ...] | None = None,
        verbose: bool = False,
    ):
        if int(num_actors) < 1:
            raise ConfigError(f"RayRunner: num_actors must be >= 1, got {num_actors}")
        if not float(cpus_per_actor) > 0:
            raise ConfigError(f"RayRunner: cpus_per_actor must be > 0, got {cpus_per_actor}")
        if int(batch_size) < 1:
            raise ConfigError(f"RayRunner: batch_size must be >= 1, got {batch_size}")
        if float(reserve_cpus) < 0:
            raise ConfigError(f"RayRunner: reserve_cpus must be >= 0, got {reserve_cpus}")
        self.address = address
        self.num_actors = int(num_actors)
        self.cpus_per_actor = float(cpus_per_actor)
        self.batch_size = int(batch_size)
        self.reserve_cpus = float(reserve_cpus)
        self.ray_init_kwargs = dict(ray_init_kwargs or {})
        self.ray_remote_args = dict(ray_remote_args or {})
        self.forward_env = list(forward_env) if forward_env is not None else None
        self.verbose = verbose
        self._started_ray = False
        #: what the last distributed step did: {"operator", "rows", "batches", "actors"}
        self.last_run: dict[str, Any] | None = None
        #: ``last_run`` of every step this runner ran, in order
        self.runs: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return (f"RayRunner(address={self.address!r}, num_actors={self.num_actors}, "
                f"cpus_per_actor={self.cpus_per_actor}, batch_size={self.batch_size})")

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "RayRunner":
        """Connect to Ray (or start it) and check the CPU budget. Idempotent."""
        ray = _import_ray()
        if not ray.is_initialized():
            kwargs = dict(self.ray_init_kwargs)
            if self.address is None or self.address == "local":
                kwargs.setdefault("include_dashboard", False)
                _add_source_path(kwargs)
            ray.init(address=self.address if self.address != "local" else None, **kwargs)
            self._started_ray = True
        self.check_cpu_budget()
        return self

    def shutdown(self) -> None:
        """Shut Ray down if this runner started it (a cluster it joined keeps running)."""
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False

    def check_cpu_budget(self) -> None:
        """``ConfigError`` unless ``num_actors x cpus_per_actor <= cluster CPUs - reserve_cpus``."""
        import ray

        total = float(ray.cluster_resources().get("CPU", 0.0))
        need = self.num_actors * self.cpus_per_actor
        if need > total - self.reserve_cpus + 1e-9:
            fit = max(0, math.floor((total - self.reserve_cpus) / self.cpus_per_actor + 1e-9))
            raise ConfigError(
                f"RayRunner: {self.num_actors} actors x {self.cpus_per_actor:g} CPU = {need:g} CPU, but the "
                f"Ray cluster has {total:g} CPU and {self.reserve_cpus:g} must stay free for Ray Data's reads "
                "and writes (with every CPU held by actors a Ray Data job hangs without an error). Use "
                f"num_actors <= {fit} at {self.cpus_per_actor:g} CPU each, a smaller cpus_per_actor (LLM "
                "actors are I/O-bound: 0.25 or less is plenty), or a bigger cluster."
            )

    # -- one step -------------------------------------------------------------------------------
    def run_batches(
        self, operator: OperatorABC, batch_fn: Callable[[list[dict]], list[RowOutcome]], rows: list[dict]
    ) -> list[RowOutcome]:
        name = type(operator).__name__
        if not rows:
            return batch_fn(rows)
        if not getattr(operator, "rows_independent", True):
            log.info("%s looks across rows (rows_independent=False): running it in the driver", name)
            self.last_run = {"operator": name, "rows": len(rows), "batches": 1, "actors": 0}
            self.runs.append(self.last_run)
            return batch_fn(rows)
        self.start()
        import ray
        import ray.data
        from ray.data import ActorPoolStrategy

        from ..storage import jsonio

        serving = getattr(operator, "llm_serving", None)
        cache = getattr(serving, "cache", None)
        if cache is not None:
            len(cache)  # create the SQLite file (WAL, table) here, before actors open it together
        payload = _pickle_batch_fn(operator, batch_fn)

        items = [{"i": i, "row": jsonio.dumps_str(row)} for i, row in enumerate(rows)]
        n_batches = math.ceil(len(items) / self.batch_size)
        dataset = ray.data.from_items(items, override_num_blocks=max(1, min(n_batches, 10_000)))
        remote_args = dict(self.ray_remote_args)  # resources=, memory=, runtime_env=, ...
        env = self._forwarded_env(serving)
        if env:
            runtime_env = dict(remote_args.get("runtime_env") or {})
            runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **env}
            remote_args["runtime_env"] = runtime_env
        # the payload goes by reference inside a list: Ray does not resolve it as an argument, the
        # driver keeps it alive for the whole job, and a restarted actor fetches it again
        payload_ref = ray.put(payload)
        out = dataset.map_batches(
            _BatchWorker,
            fn_constructor_args=([payload_ref],),
            batch_size=self.batch_size,
            batch_format="pandas",
            compute=ActorPoolStrategy(size=min(self.num_actors, n_batches)),
            num_cpus=self.cpus_per_actor,
            **remote_args,
        )
        with _quiet_ray_data(self.verbose):
            records = out.take_all()
        del payload_ref

        outcomes: list[RowOutcome | None] = [None] * len(rows)
        stats: dict[str, int] = {}
        counters: dict[str, int] = {}
        for record in records:
            index = int(record["i"])
            if not 0 <= index < len(rows) or outcomes[index] is not None:
                raise RuntimeError(f"RayRunner: {name} returned row index {index} twice or out of range")
            data = jsonio.loads(record["outcome"])
            outcomes[index] = RowOutcome(data["status"], data["rows"], data["reason"], advisory=data.get("advisory"))
            if record["stats"]:
                for key, value in jsonio.loads(record["stats"]).items():
                    stats[key] = stats.get(key, 0) + int(value)
            if record["counters"]:
                for key, value in jsonio.loads(record["counters"]).items():
                    counters[key] = counters.get(key, 0) + int(value)
        missing = [i for i, o in enumerate(outcomes) if o is None]
        if missing:
            raise RuntimeError(f"RayRunner: {name}: no outcome for {len(missing)} of {len(rows)} rows")
        if serving is not None and stats:
            for key, value in stats.items():
                if hasattr(serving.stats, key):
                    setattr(serving.stats, key, getattr(serving.stats, key) + value)
        for key, value in counters.items():
            operator.stat_update(key, value)
        self.last_run = {"operator": name, "rows": len(rows), "batches": n_batches,
                         "actors": min(self.num_actors, n_batches)}
        self.runs.append(self.last_run)
        return outcomes  # type: ignore[return-value]

    def _forwarded_env(self, serving: Any) -> dict[str, str]:
        names = self.forward_env
        if names is None:
            names = [n for n in (getattr(serving, "key_names", None) or []) if n]
        return {n: os.environ[n] for n in dict.fromkeys(names) if os.environ.get(n)}


class _BatchWorker:
    """The Ray Data actor: unpickles the operator once, then runs its batch function per batch."""

    def __init__(self, payload_ref: list):
        import ray
        import ray.cloudpickle as cloudpickle

        self.operator, self.batch_fn = cloudpickle.loads(ray.get(payload_ref[0]))
        self.serving = getattr(self.operator, "llm_serving", None)

    def __call__(self, batch):
        import pandas as pd

        from ..storage import jsonio

        indexes = [int(i) for i in batch["i"]]
        rows = [jsonio.loads(r) for r in batch["row"]]
        before = self.serving.stats.as_dict() if self.serving is not None else {}
        self.operator.take_counters()  # this batch's counts only
        outcomes = self.batch_fn(rows)
        counted = self.operator.take_counters()
        if len(outcomes) != len(rows):
            raise RuntimeError(f"{type(self.operator).__name__}.process_batch returned {len(outcomes)} "
                               f"outcomes for {len(rows)} rows")
        after = self.serving.stats.as_dict() if self.serving is not None else {}
        delta = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
        encoded = []
        for outcome in outcomes:
            if outcome.status not in _STATUSES:
                raise RuntimeError(f"unknown row status {outcome.status!r}")
            encoded.append(jsonio.dumps_str({"status": outcome.status, "rows": outcome.rows,
                                             "reason": outcome.reason, "advisory": outcome.advisory}))
        # the batch's LLM statistics and counters ride on its first record
        stats = [jsonio.dumps_str(delta) if delta else ""] + [""] * (len(rows) - 1)
        counters = [jsonio.dumps_str(counted) if counted else ""] + [""] * (len(rows) - 1)
        return pd.DataFrame({"i": indexes, "outcome": encoded, "stats": stats, "counters": counters})


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            'RayRunner needs Ray: pip install "dataflow-fc[ray]" (or pip install "ray[data]>=2.9")'
        ) from None
    return ray


def _pickle_batch_fn(operator: OperatorABC, batch_fn: Callable) -> bytes:
    import ray.cloudpickle as cloudpickle

    try:
        return cloudpickle.dumps((operator, batch_fn))
    except Exception as exc:  # noqa: BLE001 - reported with what to do
        serving = getattr(operator, "llm_serving", None)
        raise ConfigError(
            f"RayRunner: cannot ship {type(operator).__name__} (serving: {type(serving).__name__}) to Ray "
            f"actors: {type(exc).__name__}: {exc}. Use an HTTP backend (APILLMServing_request) with the "
            "Ray runner; an in-process model cannot be copied to other processes."
        ) from None


def _add_source_path(kwargs: dict[str, Any]) -> None:
    """When ``dataflow`` is imported from a source tree (not installed), let local workers import
    it too, by putting that tree on their PYTHONPATH."""
    import dataflow

    root = os.path.dirname(os.path.dirname(os.path.abspath(dataflow.__file__)))
    if "site-packages" in root or "dist-packages" in root:
        return
    runtime_env = dict(kwargs.get("runtime_env") or {})
    env_vars = dict(runtime_env.get("env_vars") or {})
    current = env_vars.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    if root in current.split(os.pathsep):
        return
    env_vars["PYTHONPATH"] = root + (os.pathsep + current if current else "")
    runtime_env["env_vars"] = env_vars
    kwargs["runtime_env"] = runtime_env


class _quiet_ray_data:
    """Without ``verbose``: no Ray Data progress bars or execution INFO logs for this job."""

    def __init__(self, verbose: bool):
        self.verbose = verbose

    def __enter__(self) -> None:
        if self.verbose:
            return
        from ray.data import DataContext

        ctx = DataContext.get_current()
        self._saved = (ctx.enable_progress_bars, ctx.print_on_execution_start)
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        self._loggers = []
        for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
            logger = logging.getLogger(name)
            self._loggers.append((logger, logger.level))
            logger.setLevel(logging.WARNING)

    def __exit__(self, *exc: Any) -> None:
        if self.verbose:
            return
        from ray.data import DataContext

        ctx = DataContext.get_current()
        ctx.enable_progress_bars, ctx.print_on_execution_start = self._saved
        for logger, level in self._loggers:
            logger.setLevel(level)
