"""``custos serve``: the API and the reading room, with uvicorn, on 127.0.0.1 by default.

With ``--workers N`` the command starts N processes that each listen on the same address
(``SO_REUSEPORT``: the kernel spreads connections over them) and stops them on SIGINT or
SIGTERM. Each socket is made as a TCP socket proper so that asyncio sets ``TCP_NODELAY`` on
its connections (uvicorn's own worker mode loses it, and every answer then waits ~40 ms for
the client's delayed ACK).
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from archive.cli import err, run, state


def serve_cmd(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option(help="Processes serving the same port (one per core).", min=1, max=64)
    ] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the API (OpenAPI at /openapi.json) and the reading room (/search) until
    interrupted (Ctrl-C or SIGTERM), then exit cleanly.

    Unless `queue.in_serve = false`, the server also runs the work deposits and tier changes
    queue (identify formats, extract text, seal, replicate, migrate): no worker is needed on
    one machine."""
    st = state(ctx)
    settings = run(False, st.settings)  # refuse bad settings before anything starts
    err.print(
        f"serving {settings.data_dir} on http://{host}:{port}/ (reading room: /search)"
        + (f" with {workers} processes" if workers > 1 else "")
    )
    if workers == 1:
        _serve(st.data_dir, st.config, host, port, log_level, reuse_port=False)
        return
    # The schema and the recovery of interrupted work, once, before the processes start
    # (each would otherwise try to create the schema of a new catalog at the same time).
    from archive.services import open_services

    run(False, lambda: open_services(settings).close())
    spawn = multiprocessing.get_context("spawn")
    processes = [
        spawn.Process(
            target=_serve,
            args=(st.data_dir, st.config, host, port, log_level),
            # One process runs the queued work: the others would only wait for its locks.
            kwargs={"reuse_port": True, "run_outbox": n == 0},
            name=f"custos-serve-{n}",
        )
        for n in range(workers)
    ]

    def stop(signum: int, frame: object) -> None:
        for p in processes:
            if p.is_alive():
                p.terminate()  # SIGTERM: each finishes its requests and exits

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    failed = [p.name for p in processes if p.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        err.print(f"[red]error:[/] {', '.join(failed)} stopped with an error")
        raise typer.Exit(1)
    err.print("stopped")


def _listen(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()  # a port taken: the caller says so
        raise
    sock.setblocking(False)
    return sock


def _serve(
    data_dir: Path | None,
    config_file: Path | None,
    host: str,
    port: int,
    log_level: str,
    *,
    reuse_port: bool,
    run_outbox: bool = True,
) -> None:
    """One serving process (also the whole server without --workers); with ``run_outbox``
    it also runs the work commits queue (see :class:`archive.jobs.OutboxRunner`): one
    process of N does."""
    import errno

    import uvicorn
    from rich.markup import escape

    from api.app import create_app
    from archive.config import load_settings
    from archive.errors import CustosError

    try:
        settings = load_settings(data_dir=data_dir, config_file=config_file)
        sock = _listen(host, port, reuse_port=reuse_port)
    except (CustosError, OSError) as exc:
        text = exc.diagnostics() if isinstance(exc, CustosError) else str(exc)
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            text += f"\n  hint: port {port} is taken; choose another with --port N"
        err.print(f"[red]error:[/] cannot serve on {host}:{port}: {escape(text)}")
        sys.exit(1)
    config = uvicorn.Config(
        create_app(
            settings,
            run_outbox=run_outbox and settings.queue.in_serve,
        ),
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
    server.run(sockets=[sock])


def _stopped(signum: int, frame: Any) -> None:
    sys.exit(0)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
