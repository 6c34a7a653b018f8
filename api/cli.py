"""``custos serve``: the API and the reading room, with uvicorn, on 127.0.0.1 by default."""

from __future__ import annotations

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
    err.print(f"serving {settings.data_dir} on http://{host}:{port}/ (reading room: /search)")
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
