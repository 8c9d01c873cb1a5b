"""The management REST API: Clipper's `/admin/<operation>` paths over HTTP/1.1, JSON in and out.

Owns only the HTTP mapping (paths, methods, the bearer token, status codes, error bodies); every operation
is `ManagementService`'s, and connections, limits and parsing are `clipper.management.http_server`'s (one
event-loop thread, operations on its small worker pool). This is the control plane, never the query path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
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
from clipper.management.supervision_reports import REPORT_PATH, parse_report

logger = logging.getLogger(__name__)

# Receives a validated supervision report's slots (the engine's `set_replica_supervision`).
SupervisionSink = Callable[[list[dict[str, Any]]], None]

ADMIN_PREFIX = "/admin/"
DEFAULT_MAX_BODY_BYTES = HTTPServerLimits.max_body_bytes
# The OpenAPI 3 description of every path this server answers, shipped in the package.
OPENAPI_PATH = "/admin/openapi.json"
OPENAPI_RESOURCE = "openapi.json"
# Unauthenticated liveness and readiness probes: they reveal nothing and change nothing.
HEALTH_PATHS = ("/healthz", "/readyz")
# Paths outside the service's operations; together with them, everything this server answers.
# REPORT_PATH takes the supervision reporter's token only (clipper.management.supervision_reports).
EXTRA_PATHS = (*HEALTH_PATHS, OPENAPI_PATH, REPORT_PATH)
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
    authentication off (the frontend allows that only on loopback, see `clipper.management.auth`).
    `supervision_token` (None: no token opens the path, 401) is the one token `REPORT_PATH` takes; its
    validated slots go to `supervision_sink` (the engine's `set_replica_supervision`)."""

    def __init__(
        self,
        address: tuple[str, int],
        service: ManagementService,
        *,
        management_token: str | None,
        limits: HTTPServerLimits | None = None,
        supervision_token: str | None = None,
        supervision_sink: SupervisionSink | None = None,
    ) -> None:
        self.service = service
        self._server = HTTPServer(
            address,
            ManagementAPI(service, management_token, supervision_token, supervision_sink),
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
    def __init__(
        self,
        service: ManagementService,
        management_token: str | None,
        supervision_token: str | None = None,
        supervision_sink: SupervisionSink | None = None,
    ) -> None:
        self.service = service
        self._token = management_token
        self._supervision_token = supervision_token if supervision_sink is not None else None
        self._supervision_sink = supervision_sink

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
        if path.rstrip("/") == REPORT_PATH:
            return self._check_report_head(head)
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

    def _check_report_head(self, head: HTTPRequestHead) -> HTTPResponse | None:
        """Supervision reports: only with the reporter's token (never the management token, which
        the reporter does not hold), only POST, and only where the frontend takes them."""
        if self._supervision_token is None:
            # 401 like any request without the right token (the OpenAPI document's contract for
            # a secured operation); the cause says why no token can open it here.
            return error_response(
                HTTPStatus.UNAUTHORIZED,
                "Unauthorized",
                f"this frontend takes no supervision reports at {REPORT_PATH}: start it with "
                "CLIPPER_SUPERVISION_TOKEN in its environment (Docker and Kubernetes clusters do)",
                {"WWW-Authenticate": 'Bearer realm="clipper-supervision"'},
            )
        if not is_authorized(head.headers.get("authorization"), self._supervision_token):
            logger.warning(
                "event=supervision_report_unauthorized client=%s with_header=%s",
                head.client_address,
                "authorization" in head.headers,
            )
            return error_response(
                HTTPStatus.UNAUTHORIZED,
                "Unauthorized",
                f"{REPORT_PATH} needs the supervision reporter's token (CLIPPER_SUPERVISION_TOKEN) "
                "as 'Authorization: Bearer <token>'",
                {"WWW-Authenticate": 'Bearer realm="clipper-supervision"'},
            )
        if head.method != "POST":
            return error_response(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "Method not allowed",
                f"{REPORT_PATH} takes a JSON body: send it as POST",
                {"Allow": "POST"},
            )
        return None

    def _report(self, body: bytes) -> HTTPResponse:
        try:
            slots = parse_report(json.loads(body))
        except RecursionError:
            return error_response(
                HTTPStatus.BAD_REQUEST, "Json error", "arrays and objects nest too deeply"
            )
        except (ValueError, UnicodeDecodeError) as error:
            return error_response(
                HTTPStatus.BAD_REQUEST, "Json error", f"Error parsing the report's JSON: {error}"
            )
        except ConfigurationError as error:  # names the field that is wrong
            return error_response(HTTPStatus.BAD_REQUEST, "Invalid supervision report", str(error))
        assert self._supervision_sink is not None  # _check_report_head refused the request else
        try:
            self._supervision_sink(slots)
        except ValueError as error:  # the engine's own checks (std::invalid_argument)
            return error_response(HTTPStatus.BAD_REQUEST, "Invalid supervision report", str(error))
        return json_response(HTTPStatus.OK, {"slots": len(slots)})

    def handle(self, head: HTTPRequestHead, body: bytes) -> HTTPResponse:
        if head.path.rstrip("/") == REPORT_PATH:
            return self._report(body)
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
