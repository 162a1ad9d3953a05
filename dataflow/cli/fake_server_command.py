"""``dataflow fake-server``: run the loopback OpenAI-compatible fake server in the foreground."""

from __future__ import annotations

import click


@click.command("fake-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int, help="0 picks a free port.")
@click.option("--latency", default=0.0, show_default=True, type=float, help="Seconds added to every reply.")
@click.option("--fault-rate", default=0.0, show_default=True, type=float,
              help="Fraction of requests that get an injected fault.")
@click.option("--faults", default="429,500,503,reset,timeout,malformed,truncated", show_default=True,
              help="Comma-separated fault kinds to draw from.")
@click.option("--retry-after", default=0.1, show_default=True, type=float, help="Retry-After of injected 429s.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--hang-seconds", default=30.0, show_default=True, type=float, help="How long a 'timeout' fault hangs.")
@click.option("--max-faults-per-request", default=None, type=int,
              help="Never inject more faults than this into one distinct request.")
@click.option("--model", default="fake-model", show_default=True)
@click.option("--responder", default=None,
              help="module:function answering (messages, json_schema); chosen here only, never over HTTP.")
@click.option("--no-record", is_flag=True, help="Do not keep request bodies (GET /_requests stays empty).")
def command(host: str, port: int, latency: float, fault_rate: float, faults: str, retry_after: float,
            seed: int, hang_seconds: float, max_faults_per_request: int | None, model: str,
            responder: str | None, no_record: bool) -> None:
    """Serve POST /v1/chat/completions on loopback with optional latency and faults (Ctrl-C stops).

    A ``FakeOpenAIServer(in_process=False)`` starts this command with its control token in the
    ``DF_FAKE_SERVER_TOKEN`` environment variable (never argv, which ``ps`` shows) and reads the
    single line ``FAKE_SERVER_URL <url>`` it then prints."""
    import os

    from dataflow.serving._fake_openai.app import serve
    from dataflow.serving._fake_openai.control import TOKEN_ENV, TOKEN_HEADER
    from dataflow.serving._fake_openai.state import load_responder

    parent_token = os.environ.pop(TOKEN_ENV, None)  # given by a parent FakeOpenAIServer, which knows it

    def announce_to_parent(url: str, token: str) -> None:
        click.echo(f"FAKE_SERVER_URL {url}")

    def announce(url: str, token: str) -> None:
        click.echo(f"fake OpenAI server listening: {url}  (api_url for APILLMServing_request)")
        click.echo(f"control token: {token}")
        click.echo("stats: GET /_stats   recorded requests: GET /_requests   settings: POST /_config "
                   f"(each with header {TOKEN_HEADER}: <control token>; loopback only)   Ctrl-C to stop",
                   err=True)

    try:
        serve(announce_to_parent if parent_token else announce, host=host, port=port, token=parent_token,
              record=not no_record, latency=latency, fault_rate=fault_rate,
              faults=faults, retry_after=retry_after, seed=seed, hang_seconds=hang_seconds,
              max_faults_per_request=max_faults_per_request, model=model,
              responder=load_responder(responder) if responder else None)
    except (ValueError, ImportError, AttributeError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
