"""uvicorn's server, with the service's drain started by the same SIGTERM / SIGINT that stops it."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn

from padim_edge.serve.app import Service


class DrainingServer(uvicorn.Server):
    """A :class:`uvicorn.Server` whose exit signal also calls :meth:`Service.begin_drain`.

    uvicorn stops accepting connections and waits for the open requests; the drain makes the queued
    frames run at once instead of waiting ``--max-delay-ms`` for their batch to fill.
    """

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service
        self.loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: Any = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.service.begin_drain)
        super().handle_exit(sig, frame)
