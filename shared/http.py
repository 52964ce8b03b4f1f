"""What every service's REST API answers alike."""

from __future__ import annotations

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def refuse_unstorable_text(app: FastAPI) -> None:
    """PostgreSQL text cannot hold NUL: a request carrying one in a parameter or body is a 422 in FastAPI's own
    validation-error shape (the one each API documents), not a 500. The statement failed, so nothing changed."""

    @app.exception_handler(asyncpg.CharacterNotInRepertoireError)
    async def _unstorable_text(request: Request, exc: asyncpg.CharacterNotInRepertoireError) -> JSONResponse:
        return JSONResponse({"detail": [{
            "loc": ["request"], "type": "value_error",
            "msg": "text in the request cannot be stored or searched: it contains a NUL (\\u0000) character",
        }]}, status_code=422)
