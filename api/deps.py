"""FastAPI dependencies: the ledger, the settings and the bounded request body."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.body import read_body
from api.settings import Settings
from ledger.application import Ledger


def get_ledger(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


LedgerDep = Annotated[Ledger, Depends(get_ledger)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def request_body(request: Request, settings: SettingsDep) -> bytes:
    """The raw body, at most `settings.max_body_bytes` (413 problem beyond)."""
    return await read_body(request, settings.max_body_bytes)


BodyDep = Annotated[bytes, Depends(request_body)]
