"""The loopback OpenAI-compatible HTTP server for tests and benchmarks (product code, like httpx's
``MockTransport``).

Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``, and for the test
harness ``GET /_stats`` (counts), ``GET /_requests`` (recorded request bodies; ``?full=1`` adds
headers and whether the response was delivered, ``?completed=1`` keeps only delivered ones),
``POST /_reset`` and ``POST /_config`` (change latency / fault rate / ... of a running server).

The harness (``/_...``) endpoints are control endpoints, guarded because any local process can
reach a loopback port: each needs the server's own random token in the ``X-Fake-Server-Token``
header (``FakeOpenAIServer.control_token``; printed at start on the command line), a loopback
``Host`` and ``Origin`` (if any), and for POST a JSON content type. ``/_config`` changes only inert
settings (``HTTP_CONFIG_KEYS``: latency, fault rates, ...): the responder, which is code, is chosen
only in the Python API or on the command line. Recorded requests never keep credentials: the
``Authorization`` header (and any header named like a key, token, secret or cookie) is replaced
by a keyed digest, ``FakeOpenAIServer.credential_tag(value)``.

It adds ``latency`` to every reply and injects faults at ``fault_rate``: ``429`` (with
``Retry-After``), ``500``, ``503``, ``reset`` (TCP RST), ``timeout`` (hang ``hang_seconds`` then
drop), ``malformed`` (200 with a body that is not JSON) and ``truncated`` (200 with half a JSON
body). Whether a request is faulted is a deterministic function of ``seed``, the request body and
how many times that body was seen, so a run is reproducible whatever the arrival order.
``max_faults_per_request`` caps injected faults per distinct body (so retries always recover).

The ``responder(messages, json_schema)`` returns the reply text, a dict/list (sent as JSON), an
``LLMResult`` (its text, sent with its ``finish_reason``, e.g. ``"length"`` for a cut reply), or a
``FakeFault`` (returned or raised) for a permanent failure of that request; any other exception is
a 500. Without a responder the reply is deterministic text, or for a ``json_schema``
``response_format`` a minimal instance of the schema.

Run it in a background thread (default), in a subprocess (``in_process=False``), or from the
command line: ``dataflow fake-server --port 8000 --latency 0.2``.

The package splits the server by job: ``faults`` (which request gets which injected fault),
``control`` (who may use the ``/_...`` endpoints, what a request record keeps), ``state`` (options,
counters, responders), ``app`` (the aiohttp handlers and the foreground ``serve``), ``server``
(``FakeOpenAIServer``: a thread or subprocess and its lifecycle). Import the public names from
``dataflow.serving``: ``FakeOpenAIServer``, ``FakeFault``; ``dataflow fake-server`` is the command.
"""

from .faults import FakeFault
from .server import FakeOpenAIServer

__all__ = ["FakeFault", "FakeOpenAIServer"]
