"""`zaoxiang mcp`: the studio's MCP tools over stdio, for agents that start their tools themselves
(Claude Desktop, Cursor, ...). It runs its own workers; the window's server offers the same tools at
`/mcp` over HTTP."""

from __future__ import annotations

import argparse
import logging
import sys

from studio.commands import EXIT_OK

NAME = "mcp"
STARTUP_WAIT_S = 300.0  # a first `generate` waits this long for the workers this command started


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser(NAME, help="serve the MCP tools over stdio (for agents)")
    m.add_argument("--workers", default=None, help="auto | cuda:0,cuda:1 | cpu:N (default: settings)")
    m.add_argument("--model", default=None, help="model folder or file, or demo")


def run(a: argparse.Namespace) -> int:
    from contextlib import asynccontextmanager

    import anyio

    from studio.api.keys import KeyStore
    from studio.api.mcp_server import build_server
    from studio.api.service import ApiService
    from studio.app import Studio

    # stdout carries the protocol: every log line goes to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    studio = Studio(model=a.model, workers=a.workers)

    @asynccontextmanager
    async def lifespan(_server):
        # Started here, once the SDK has moved fd 1 off the wire, so workers cannot write into it.
        await anyio.to_thread.run_sync(studio.start)
        try:
            yield {}
        finally:
            await anyio.to_thread.run_sync(studio.close)

    server = build_server(ApiService(studio, KeyStore(studio.paths.config_dir)), lifespan=lifespan,
                          ready_wait_s=STARTUP_WAIT_S, stdio=True)
    try:
        anyio.run(server.run_stdio_async)
    finally:
        studio.close()
    return EXIT_OK
