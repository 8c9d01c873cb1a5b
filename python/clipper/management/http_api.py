"""The management REST API: Clipper's `/admin/<operation>` paths over HTTP/1.1, JSON in and out.

Owns only the HTTP mapping (paths, methods, the bearer token, status codes, error bodies); every operation
is `ManagementService`'s, and connections, limits and parsing are `clipper.management.http_server`'s (one
event-loop thread, operations on its small worker pool). This is the control plane, never the query path.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from http import HTTPStatus
from importlib import resources
from typing import Any

from clipper.exceptions import ConfigurationError, StateStoreError
from clipper.management.auth import is_authorized
from clipper.management.http_server import (
    HTTPApplication,
    HTTPRequestHead,
    HTTPResponse,
    HTTPServer,
    HTTPServerLimits,
    error_response,
    json_response,
)
from clipper.management.service import ManagementService

logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/admin/"
DEFAULT_MAX_BODY_BYTES = HTTPServerLimits.max_body_bytes
# The OpenAPI 3 description of every path this server answers, shipped in the package.
OPENAPI_PATH = "/admin/openapi.json"
OPENAPI_RESOURCE = "openapi.json"
# Unauthenticated liveness and readiness probes: they reveal nothing and change nothing.
HEALTH_PATHS = ("/healthz", "/readyz")
# Paths outside /admin/<operation>; together with the operations, everything this server answers.
EXTRA_PATHS = (*HEALTH_PATHS, OPENAPI_PATH)
# Methods HTTP defines that this API does not use: 405 with Allow; any other method is 501.
_KNOWN_METHODS = ("HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")


@cache
def openapi_document() -> dict[str, Any]:
    """The management API's OpenAPI 3 description (clipper/management/openapi.json)."""
    text = resources.files("clipper.management").joinpath(OPENAPI_RESOURCE).read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def served_paths(service: ManagementService) -> list[str]:
    """Every path the management API answers."""
    return sorted([*(ADMIN_PREFIX + name for name in service.operations), *EXTRA_PATHS])


def documented_methods(path: str) -> tuple[str, ...]:
    """The methods the OpenAPI document declares for `path`, which are the ones it is served with
    (upper case, sorted); GET and POST for a path it does not know. Listing operations and ping may
    also be called with GET (no body), handy from a browser or curl; Clipper's client always POSTs."""
    item = openapi_document()["paths"].get(path)
    return ("GET", "POST") if item is None else tuple(sorted(method.upper() for method in item))


class ManagementHTTPServer:
    """The management API on `address`: `start()` binds and serves from a background thread, `stop()`.

    `management_token` is required on every /admin/ path as `Authorization: Bearer <token>`; None turns
    authentication off (the frontend allows that only on loopback, see `clipper.management.auth`)."""

    def __init__(
        self,
        address: tuple[str, int],
        service: ManagementService,
        *,
        management_token: str | None,
        limits: HTTPServerLimits | None = None,
    ) -> None:
        self.service = service
        self._server = HTTPServer(
            address,
            ManagementAPI(service, management_token),
            limits,
            thread_name="management-http",
        )

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def limits(self) -> HTTPServerLimits:
        return self._server.limits

    @property
    def http_server(self) -> HTTPServer:
        return self._server

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()


class ManagementAPI(HTTPApplication):
    def __init__(self, service: ManagementService, management_token: str | None) -> None:
        self.service = service
        self._token = management_token

    def check_head(self, head: HTTPRequestHead) -> HTTPResponse | None:
        path = head.path
        if head.method not in ("GET", "POST"):
            if head.method in _KNOWN_METHODS:
                return error_response(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    "Method not allowed",
                    f"{head.method} is not used by the management API: use GET or POST",
                    {"Allow": ", ".join(documented_methods(path))},
                )
            return error_response(
                HTTPStatus.NOT_IMPLEMENTED,
                "Not implemented",
                f"unknown method {head.method!r}: the management API answers GET and POST",
            )
        if path in HEALTH_PATHS:
            if head.method != "GET":
                return error_response(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    "Method not allowed",
                    f"{path} is read with GET",
                    {"Allow": "GET"},
                )
            return json_response(HTTPStatus.OK, {"status": "ok"})
        if not (path.startswith(ADMIN_PREFIX) or path == ADMIN_PREFIX.rstrip("/")):
            return error_response(
                HTTPStatus.NOT_FOUND,
                "Not found",
                f"no management operation at {path}; use {ADMIN_PREFIX}<operation>",
            )
        if self._token is not None and not is_authorized(
            head.headers.get("authorization"), self._token
        ):
            logger.warning(
                "event=admin_unauthorized client=%s path=%s with_header=%s",
                head.client_address,
                path,
                "authorization" in head.headers,
            )
            return error_response(
                HTTPStatus.UNAUTHORIZED,
                "Unauthorized",
                "the management API needs the cluster's token as 'Authorization: Bearer <token>'; "
                "ClipperConnection reads it from the cluster's state directory "
                "(<state_dir>/management_token) or takes it as management_token=",
                {"WWW-Authenticate": 'Bearer realm="clipper-management"'},
            )
        if path == OPENAPI_PATH:
            if head.method != "GET":
                return error_response(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    "Method not allowed",
                    f"{OPENAPI_PATH} is read with GET",
                    {"Allow": "GET"},
                )
            return json_response(HTTPStatus.OK, openapi_document())
        operation = path[len(ADMIN_PREFIX) :].rstrip("/")
        if operation not in self.service.operations:
            known = ", ".join(sorted(self.service.operations))
            return error_response(
                HTTPStatus.NOT_FOUND,
                "Not found",
                f"no management operation at {path}; use {ADMIN_PREFIX}<operation> with one of: "
                f"{known}",
            )
        allowed = documented_methods(path.rstrip("/"))
        if head.method not in allowed:
            return error_response(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "Method not allowed",
                f"{operation} takes its arguments: send it as POST with a JSON body",
                {"Allow": ", ".join(allowed)},
            )
        return None

    def handle(self, head: HTTPRequestHead, body: bytes) -> HTTPResponse:
        operation = head.path[len(ADMIN_PREFIX) :].rstrip("/")
        if head.method == "GET" or not body.strip():
            return self._run(operation, {})
        try:
            parsed = json.loads(body)
        except RecursionError:
            # The stdlib parser recurses per nesting level; it refuses deep documents by raising.
            return error_response(
                HTTPStatus.BAD_REQUEST,
                "Json error",
                f"Error parsing JSON for {operation}: arrays and objects nest too deeply",
            )
        except (ValueError, UnicodeDecodeError) as error:
            return error_response(
                HTTPStatus.BAD_REQUEST, "Json error", f"Error parsing JSON for {operation}: {error}"
            )
        if not isinstance(parsed, dict):
            return error_response(
                HTTPStatus.BAD_REQUEST,
                "Json error",
                f"{operation} takes a JSON object, got {type(parsed).__name__}",
            )
        return self._run(operation, parsed)

    def _run(self, operation: str, body: dict[str, Any]) -> HTTPResponse:
        try:
            result = self.service.operations[operation](body)
        except ConfigurationError as error:
            logger.info("event=admin_rejected operation=%s cause=%r", operation, str(error))
            # "type" names the ConfigurationError subclass (e.g. UnknownObjectError), so clients can
            # raise the same class.
            return json_response(
                HTTPStatus.BAD_REQUEST,
                {"error": f"{operation} failed", "cause": str(error), "type": type(error).__name__},
            )
        except StateStoreError as error:
            logger.error("event=state_store_failed operation=%s cause=%r", operation, str(error))
            return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "State store error", str(error))
        except Exception as error:
            logger.exception("event=admin_failed operation=%s", operation)
            return error_response(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "Internal error",
                f"{operation} failed unexpectedly: {error!r}; see the frontend log",
            )
        return json_response(HTTPStatus.OK, result)
