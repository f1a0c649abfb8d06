"""Validation error responses that name the field and never echo the request body back.

FastAPI's default 422 body repeats each invalid input, which for a job request can include the
Hub token; this handler keeps only the location, message and type of each error.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

__all__ = ["install_error_handlers"]


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)  # registered for this type only
    details = [
        {"loc": list(item.get("loc", ())), "msg": item.get("msg", ""), "type": item.get("type", "")}
        for item in error.errors()
    ]
    return JSONResponse({"detail": details}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def install_error_handlers(app: FastAPI) -> None:
    """Register the validation error handler on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation_error)
