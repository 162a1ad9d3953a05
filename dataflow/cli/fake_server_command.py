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
def command(host: str, port: int, latency: float, fault_rate: float, faults: str, retry_after: float,
            seed: int, hang_seconds: float, max_faults_per_request: int | None, model: str,
            responder: str | None) -> None:
    """Serve POST /v1/chat/completions on loopback with optional latency and faults (Ctrl-C stops)."""
    from dataflow.serving.fake_server import load_responder, serve

    def announce(url: str, token: str) -> None:
        click.echo(f"fake OpenAI server listening: {url}  (api_url for APILLMServing_request)")
        click.echo(f"control token: {token}")
        click.echo("stats: GET /_stats   recorded requests: GET /_requests   settings: POST /_config "
                   "(each with header X-Fake-Server-Token: <control token>; loopback only)   Ctrl-C to stop",
                   err=True)

    try:
        serve(host=host, port=port, announce=announce, latency=latency, fault_rate=fault_rate,
              faults=faults, retry_after=retry_after, seed=seed, hang_seconds=hang_seconds,
              max_faults_per_request=max_faults_per_request, model=model,
              responder=load_responder(responder) if responder else None)
    except (ValueError, ImportError, AttributeError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
