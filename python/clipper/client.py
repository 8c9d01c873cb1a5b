"""Python query client of Clipper's query REST API: `POST /<app>/predict` and `POST /<app>/update`.

Owns encoding inputs (numpy arrays, bytes as base64), connection reuse (one httpx connection pool per
client, kept alive across calls), timeouts, and turning error answers into typed exceptions. It is not
the admin API (`clipper.ClipperConnection`) nor the management API. `ClipperClient` is synchronous and
safe to share between threads; `AsyncClipperClient` runs on the caller's asyncio event loop.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from clipper.exceptions import ClipperException

__all__ = [
    "AsyncClipperClient",
    "BadInputError",
    "ClientConnectionError",
    "ClientError",
    "ClientTimeoutError",
    "ClipperClient",
    "OverloadedError",
    "PayloadTooLargeError",
    "Prediction",
    "ServerError",
    "UnknownApplicationError",
]

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_CONNECTIONS = 16


# ---- results and errors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """One answer of `/predict`. `default` is True when no model answered within the app's latency
    objective (or none is linked) and `output` is the app's default output; `default_explanation`
    then says why."""

    query_id: int
    output: Any
    default: bool
    default_explanation: str | None = None


class ClientError(ClipperException):
    """A query failed. `status_code`, `error` and `cause` are the server's answer (None when the
    request got no answer, e.g. on a timeout or a refused connection)."""

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        error: str | None = None,
        cause: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = error
        self.cause = cause


class BadInputError(ClientError):
    """400: malformed JSON, an input that does not match the app's input type, or an unknown model
    version. `cause` names the expected schema."""


class UnknownApplicationError(ClientError):
    """404: no application of that name is registered (register it with `register_application`)."""


class PayloadTooLargeError(ClientError):
    """413: the request body is over the frontend's `max_body_bytes`; send smaller batches."""


class OverloadedError(ClientError):
    """429 or 503: the frontend sheds load. Retry after `retry_after_s` seconds (None if unsaid)."""

    def __init__(
        self,
        message: str,
        status_code: int,
        error: str | None,
        cause: str | None,
        retry_after_s: float | None,
    ) -> None:
        super().__init__(message, status_code, error, cause)
        self.retry_after_s = retry_after_s


class ServerError(ClientError):
    """Any other error status (5xx, 405, ...)."""


class ClientTimeoutError(ClientError):
    """No answer within the client's `timeout_s` (the connection is dropped; the next call opens a
    new one)."""


class ClientConnectionError(ClientError):
    """The frontend could not be reached or closed the connection before answering."""


# ---- encoding and decoding (shared by both clients) ---------------------------------------------------


def _json_value(value: Any) -> Any:
    """`value` as JSON-ready Python: numpy arrays and scalars become lists and numbers, bytes become
    base64 text (the encoding of `bytes` apps), lists and tuples are converted element by element."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"input holds {value!r}, which JSON cannot carry; send finite numbers")
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, without importing numpy
    if callable(tolist):
        return _json_value(tolist())
    raise TypeError(
        f"cannot send an input of type {type(value).__name__}: use a list or numpy array of numbers, "
        "a str, or bytes"
    )


def _batch_values(inputs: Any) -> list[Any]:
    if isinstance(inputs, (str, bytes, bytearray, memoryview)):
        raise TypeError("predict_batch takes a sequence of inputs; use predict for a single input")
    if getattr(inputs, "ndim", None) == 1 and getattr(inputs, "dtype", None) is not None:
        raise TypeError(
            "predict_batch got a 1-D array: pass a 2-D array (one row per input) or a list of inputs"
        )
    if not isinstance(inputs, Iterable):
        raise TypeError(f"predict_batch takes a sequence of inputs, not {type(inputs).__name__}")
    return [_json_value(item) for item in inputs]


def _predict_body(input_value: Any, version: str | int | None, uid: int | None) -> bytes:
    body: dict[str, Any] = {"input": _json_value(input_value)}
    _add_routing(body, version, uid)
    return json.dumps(body, allow_nan=False).encode()


def _predict_batch_body(inputs: Any, version: str | int | None, uid: int | None) -> bytes:
    body: dict[str, Any] = {"input_batch": _batch_values(inputs)}
    _add_routing(body, version, uid)
    return json.dumps(body, allow_nan=False).encode()


def _update_body(uid: int, input_value: Any, label: float) -> bytes:
    if isinstance(uid, bool) or not isinstance(uid, int):
        raise TypeError(f"uid must be an int, not {type(uid).__name__}")
    label_value = _json_value(label)
    if isinstance(label_value, bool) or not isinstance(label_value, (int, float)):
        raise TypeError(f"label must be a number, not {type(label).__name__}")
    body = {"uid": uid, "input": _json_value(input_value), "label": label_value}
    return json.dumps(body, allow_nan=False).encode()


def _add_routing(body: dict[str, Any], version: str | int | None, uid: int | None) -> None:
    if version is not None:
        body["version"] = str(version)
    if uid is not None:
        body["uid"] = int(uid)


def _prediction(answer: dict[str, Any]) -> Prediction:
    return Prediction(
        query_id=answer["query_id"],
        output=answer["output"],
        default=answer["default"],
        default_explanation=answer.get("default_explanation"),
    )


def _check(response: httpx.Response, app: str, action: str) -> Any:
    """The decoded JSON of a 200 answer; raises the ClientError subclass of any other."""
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code == 200 and answer is not None:
        return answer
    error = cause = None
    if isinstance(answer, dict):
        error, cause = answer.get("error"), answer.get("cause")
    where = f"POST /{app}/{action}"
    detail = cause or error or response.text[:200] or response.reason_phrase
    message = f"{where} answered {response.status_code}: {detail}"
    status = response.status_code
    if status == 400:
        raise BadInputError(message, status, error, cause)
    if status == 404:
        raise UnknownApplicationError(
            f"{message} (register the application first, or check its name)", status, error, cause
        )
    if status == 413:
        raise PayloadTooLargeError(
            f"{message} (split the batch, or raise the frontend's max_body_bytes)",
            status,
            error,
            cause,
        )
    if status in (429, 503):
        retry_after = _retry_after_s(response.headers.get("Retry-After"))
        hint = f"retry after {retry_after:g} s" if retry_after is not None else "retry shortly"
        raise OverloadedError(f"{message} ({hint})", status, error, cause, retry_after)
    raise ServerError(message, status, error, cause)


def _retry_after_s(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header is not None else None
    except ValueError:  # an HTTP date: not sent by Clipper, not worth parsing
        return None


def _base_url(address: str) -> str:
    address = address.rstrip("/")
    if "://" not in address:
        address = f"http://{address}"
    if not address.startswith(("http://", "https://")):
        raise ValueError(f"address {address!r}: use host:port or an http(s):// URL")
    return address


def _transport_error(
    error: httpx.HTTPError, base_url: str, app: str, action: str, timeout_s: float
) -> ClientError:
    where = f"POST {base_url}/{app}/{action}"
    if isinstance(error, httpx.TimeoutException):
        return ClientTimeoutError(
            f"{where} got no answer within {timeout_s:g} s ({type(error).__name__}); raise "
            "timeout_s or check the frontend's load"
        )
    return ClientConnectionError(
        f"{where} failed: {error!r}; is the cluster running at that address (`clipper status`)?"
    )


def _client_options(timeout_s: float, max_connections: int) -> dict[str, Any]:
    if not timeout_s > 0:
        raise ValueError(f"timeout_s={timeout_s!r} must be positive")
    if max_connections < 1:
        raise ValueError(f"max_connections={max_connections!r} must be at least 1")
    return {
        "timeout": httpx.Timeout(timeout_s),
        "limits": httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        "headers": {"Content-Type": "application/json"},
        # The query address is the cluster's own; a proxy from the environment would only get in the
        # way (and usually cannot reach 127.0.0.1).
        "trust_env": False,
    }


# ---- the clients -----------------------------------------------------------------------------------


class ClipperClient:
    """Sends queries to a cluster's query API at `address` ("host:port", e.g.
    `ClipperConnection.get_query_addr()`, or an http:// URL), reusing kept-alive connections.

    `timeout_s` bounds each call (connect, send and answer); `max_connections` bounds the pool when
    several threads share the client. Use it as a context manager, or call `close()`."""

    def __init__(
        self,
        address: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.base_url = _base_url(address)
        self.timeout_s = timeout_s
        self._http = httpx.Client(**_client_options(timeout_s, max_connections))

    def predict(
        self, app: str, input: Any, version: str | int | None = None, uid: int | None = None
    ) -> Prediction:
        """The answer of `app` to one input (numbers as a list or 1-D numpy array, a str, or bytes)."""
        return _prediction(self._post(app, "predict", _predict_body(input, version, uid)))

    def predict_batch(
        self, app: str, inputs: Any, version: str | int | None = None, uid: int | None = None
    ) -> list[Prediction]:
        """One answer per input, in order (`inputs`: a list of inputs or a 2-D numpy array)."""
        answer = self._post(app, "predict", _predict_batch_body(inputs, version, uid))
        return [_prediction(item) for item in answer["batch_predictions"]]

    def update(self, app: str, uid: int, input: Any, label: float) -> dict[str, Any]:
        """Sends feedback (the true `label` of `input` for user `uid`); returns the acknowledgement."""
        result: dict[str, Any] = self._post(app, "update", _update_body(uid, input, label))
        return result

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ClipperClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _post(self, app: str, action: str, body: bytes) -> Any:
        try:
            response = self._http.post(f"{self.base_url}/{app}/{action}", content=body)
        except httpx.HTTPError as error:
            raise _transport_error(error, self.base_url, app, action, self.timeout_s) from error
        return _check(response, app, action)


class AsyncClipperClient:
    """The asyncio twin of `ClipperClient` (same arguments, methods are coroutines); many concurrent
    calls share up to `max_connections` kept-alive connections. Use `async with`, or `await aclose()`."""

    def __init__(
        self,
        address: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.base_url = _base_url(address)
        self.timeout_s = timeout_s
        self._http = httpx.AsyncClient(**_client_options(timeout_s, max_connections))

    async def predict(
        self, app: str, input: Any, version: str | int | None = None, uid: int | None = None
    ) -> Prediction:
        return _prediction(await self._post(app, "predict", _predict_body(input, version, uid)))

    async def predict_batch(
        self, app: str, inputs: Any, version: str | int | None = None, uid: int | None = None
    ) -> list[Prediction]:
        answer = await self._post(app, "predict", _predict_batch_body(inputs, version, uid))
        return [_prediction(item) for item in answer["batch_predictions"]]

    async def update(self, app: str, uid: int, input: Any, label: float) -> dict[str, Any]:
        result: dict[str, Any] = await self._post(app, "update", _update_body(uid, input, label))
        return result

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClipperClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _post(self, app: str, action: str, body: bytes) -> Any:
        try:
            response = await self._http.post(f"{self.base_url}/{app}/{action}", content=body)
        except httpx.HTTPError as error:
            raise _transport_error(error, self.base_url, app, action, self.timeout_s) from error
        return _check(response, app, action)
