"""``custos serve``: the API and the reading room, with uvicorn, on 127.0.0.1 by default."""

from __future__ import annotations

import signal
from typing import Annotated

import typer

from archive.cli import err, run, state


def serve_cmd(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the API (OpenAPI at /openapi.json) and the reading room (/search) until
    interrupted (Ctrl-C or SIGTERM), then exit cleanly."""
    import uvicorn

    from api.app import create_app

    settings = run(False, state(ctx).settings)
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again to the
    # handler in place before it started: make that a clean exit (status 0).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stopped)
    err.print(f"serving {settings.data_dir} on http://{host}:{port}/ (reading room: /search)")
    server.run()
    if not server.started:
        err.print(f"[red]error:[/] the server could not start on {host}:{port}")
        raise typer.Exit(1)


def _stopped(signum: int, frame: object) -> None:
    err.print("stopped")
    raise typer.Exit(0)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
