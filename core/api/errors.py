"""API errors in OpenAI's shape, mapped once: every failure becomes ``{"error": {...}}`` with the right status.

Core raises domain exceptions (``core.errors``); ``from_domain`` turns them into an ``ApiError``; the app's
exception handlers (``core.api.app``) render it. Request validation errors and malformed JSON become 400s.
"""

from __future__ import annotations

from typing import Any

from core.api.schemas import ErrorBody, ErrorResponse
from core.errors import ConfigError, GenerationError, InkstoneError, InputError, ModelError, NotFoundError


class ApiError(Exception):
    """An error to send to the client: HTTP status, message, OpenAI ``type``, ``code`` and ``param``."""

    def __init__(
        self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        """The JSON body, ``{"error": {"message", "type", "param", "code"}}``."""
        return ErrorResponse(error=ErrorBody(message=self.message, type=self.type, param=self.param,
                                             code=self.code)).model_dump()


def from_domain(exc: InkstoneError) -> ApiError:
    """The API error for a domain exception (the message is kept: it names the bad value and the fix)."""
    message = str(exc)
    if isinstance(exc, InputError):
        code = "context_length_exceeded" if "context window" in message else "invalid_value"
        return ApiError(400, message, code=code, param=exc.param or "messages")
    if isinstance(exc, NotFoundError):
        return ApiError(404, message, code="not_found")
    if isinstance(exc, ModelError):
        return ApiError(503, message, "server_error", code="model_not_loaded")
    if isinstance(exc, ConfigError):
        return ApiError(400, message, code="invalid_configuration")
    if isinstance(exc, GenerationError):
        return ApiError(500, message, "server_error", code="generation_failed")
    return ApiError(500, message, "server_error")


def validation_error(errors: list[dict[str, Any]]) -> ApiError:
    """A 400 naming the first invalid field of a request body (pydantic's error list)."""
    if not errors:
        return ApiError(400, "The request body is invalid.")
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return ApiError(400, f"The request body is not valid JSON ({first.get('msg')}): send a JSON object.",
                        code="invalid_json")
    where = f"`{param}`" if param else "the request body"
    return ApiError(400, f"Invalid value for {where}: {first.get('msg')}.", code="invalid_value", param=param)
