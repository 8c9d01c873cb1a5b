"""The management REST API: Clipper's `/admin/<operation>` paths over HTTP/1.1, JSON in and out.

Owns only the HTTP mapping (paths, methods, body limits, status codes, error bodies); every operation is
`ManagementService`'s. Runs on the stdlib's threading HTTP server, one thread per connection: this is the
control plane, never on the query path.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from clipper.exceptions import ConfigurationError, StateStoreError
from clipper.management.service import ManagementService

logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/admin/"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# The OpenAPI 3 description of every path this server answers, shipped in the package.
OPENAPI_PATH = "/admin/openapi.json"
OPENAPI_RESOURCE = "openapi.json"
# Paths outside /admin/<operation>; together with the operations, everything this server answers.
EXTRA_PATHS = ("/healthz", "/readyz", OPENAPI_PATH)


@cache
def openapi_document() -> dict[str, Any]:
    """The management API's OpenAPI 3 description (clipper/management/openapi.json)."""
    text = resources.files("clipper.management").joinpath(OPENAPI_RESOURCE).read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def served_paths(service: ManagementService) -> list[str]:
    """Every path the management API answers."""
    return sorted([*(ADMIN_PREFIX + name for name in service.operations), *EXTRA_PATHS])


# Operations that change nothing may also be called with GET (no body), which is handy from a browser or
# curl; Clipper's client always POSTs.
_READ_ONLY_PREFIXES = ("get_", "ping")


class ManagementHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        service: ManagementService,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.service = service
        self.max_body_bytes = max_body_bytes
        super().__init__(address, _ManagementRequestHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _ManagementRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "clipper-management/1"
    # Headers and body go out as separate writes; without this, Nagle plus delayed ACKs add ~40 ms.
    disable_nagle_algorithm = True
    server: ManagementHTTPServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/healthz", "/readyz"):
            self._send_json(HTTPStatus.OK, {"status": "ok"})
            return
        if path == OPENAPI_PATH:
            self._send_json(HTTPStatus.OK, openapi_document())
            return
        operation = self._operation(path)
        if operation is None:
            return
        if not operation.startswith(_READ_ONLY_PREFIXES):
            self._send_error(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "Method not allowed",
                f"{operation} changes the configuration: send it as POST with a JSON body",
                extra_headers={"Allow": "POST"},
            )
            return
        self._run(operation, {})

    def do_POST(self) -> None:
        operation = self._operation(self.path.split("?", 1)[0])
        if operation is None:
            self._discard_body()
            return
        body = self._read_json_body(operation)
        if body is not None:
            self._run(operation, body)

    def _operation(self, path: str) -> str | None:
        """The operation named by `path`, or None after answering 404."""
        operation = path[len(ADMIN_PREFIX) :].rstrip("/") if path.startswith(ADMIN_PREFIX) else ""
        if operation in self.server.service.operations:
            return operation
        known = ", ".join(sorted(self.server.service.operations))
        self._send_error(
            HTTPStatus.NOT_FOUND,
            "Not found",
            f"no management operation at {path}; use {ADMIN_PREFIX}<operation> with one of: {known}",
        )
        return None

    def _read_json_body(self, operation: str) -> dict[str, Any] | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send_error(
                HTTPStatus.LENGTH_REQUIRED, "Length required", "send the body with a Content-Length"
            )
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send_error(HTTPStatus.BAD_REQUEST, "Bad request", "invalid Content-Length header")
            return None
        if length > self.server.max_body_bytes:
            self.close_connection = True  # the unread body makes the connection unusable
            self._send_error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "Body too large",
                f"the body has {length} bytes; the management API accepts at most "
                f"{self.server.max_body_bytes}",
            )
            return None
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except RecursionError:
            # The stdlib parser recurses per nesting level; it refuses deep documents by raising.
            self._send_error(
                HTTPStatus.BAD_REQUEST,
                "Json error",
                f"Error parsing JSON for {operation}: arrays and objects nest too deeply",
            )
            return None
        except (ValueError, UnicodeDecodeError) as error:
            self._send_error(
                HTTPStatus.BAD_REQUEST, "Json error", f"Error parsing JSON for {operation}: {error}"
            )
            return None
        if not isinstance(body, dict):
            self._send_error(
                HTTPStatus.BAD_REQUEST,
                "Json error",
                f"{operation} takes a JSON object, got {type(body).__name__}",
            )
            return None
        return body

    def _run(self, operation: str, body: dict[str, Any]) -> None:
        try:
            result = self.server.service.operations[operation](body)
        except ConfigurationError as error:
            logger.info("event=admin_rejected operation=%s cause=%r", operation, str(error))
            self._send_error(
                HTTPStatus.BAD_REQUEST,
                f"{operation} failed",
                str(error),
                error_type=type(error).__name__,
            )
        except StateStoreError as error:
            logger.error("event=state_store_failed operation=%s cause=%r", operation, str(error))
            self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR, "State store error", str(error))
        except Exception as error:
            logger.exception("event=admin_failed operation=%s", operation)
            self._send_error(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "Internal error",
                f"{operation} failed unexpectedly: {error!r}; see the frontend log",
            )
        else:
            self._send_json(HTTPStatus.OK, result)

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        if 0 < length <= self.server.max_body_bytes:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _send_error(
        self,
        status: HTTPStatus,
        error: str,
        cause: str,
        extra_headers: dict[str, str] | None = None,
        error_type: str | None = None,
    ) -> None:
        """Error bodies are {"error", "cause"}, plus "type" (the ConfigurationError subclass, e.g.
        UnknownObjectError) for a refused change, so clients can raise the same class."""
        payload = {"error": error, "cause": cause}
        if error_type is not None:
            payload["type"] = error_type
        self._send_json(status, payload, extra_headers)

    def _send_json(
        self, status: HTTPStatus, payload: Any, extra_headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(
            "event=admin_http_request client=%s line=%r", self.client_address[0], format % args
        )
