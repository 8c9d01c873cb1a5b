"""HTTP client of the management REST API (`POST /admin/<operation>` with a JSON body).

Owns the wire details (URL, JSON, timeouts) and the mapping of HTTP failures to `clipper` exceptions;
`ClipperConnection` builds on it. Uses only the standard library. Blocking; safe to share across threads.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from typing import Any

from clipper.exceptions import ClipperException, ManagementAPIError, management_api_error

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0

# Cluster endpoints are reached directly: an HTTP(S)_PROXY set for the internet must not capture calls to
# 127.0.0.1 or to the cluster's own addresses.
_DIRECT_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def urlopen_direct(
    request: urllib.request.Request | str, timeout: float
) -> http.client.HTTPResponse:
    """`urllib.request.urlopen` without proxies, for every call to a cluster endpoint."""
    response: http.client.HTTPResponse = _DIRECT_OPENER.open(request, timeout=timeout)
    return response


class ManagementClient:
    def __init__(self, admin_addr: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """`admin_addr` is "host:port" of the management API."""
        self.admin_addr = admin_addr
        self.timeout_s = timeout_s

    def call(self, operation: str, body: dict[str, Any] | None = None) -> Any:
        """POST `body` to /admin/<operation> and return the decoded JSON answer."""
        url = f"http://{self.admin_addr}/admin/{operation}"
        data = json.dumps(body or {}).encode("utf-8")
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urlopen_direct(request, timeout=self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            raise self._api_error(operation, error) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ClipperException(
                f"cannot reach the management API at {self.admin_addr} for {operation}: {reason}; "
                "check that the cluster is running (start_clipper() or `clipper start`)"
            ) from error
        logger.debug("event=admin_call operation=%s bytes=%d", operation, len(payload))
        try:
            return json.loads(payload) if payload else None
        except ValueError as error:
            raise ClipperException(
                f"the management API at {self.admin_addr} answered {operation} with invalid JSON: "
                f"{payload[:200]!r}"
            ) from error

    def ping(self) -> bool:
        """True when the management API answers /admin/ping."""
        try:
            self.call("ping")
        except ClipperException:
            return False
        return True

    @staticmethod
    def _api_error(operation: str, error: urllib.error.HTTPError) -> ManagementAPIError:
        raw = error.read()
        try:
            payload = json.loads(raw)
            return management_api_error(
                operation,
                error.code,
                str(payload.get("error", "")),
                str(payload.get("cause", "")),
                payload.get("type"),
            )
        except (ValueError, AttributeError):
            return ManagementAPIError(
                operation, error.code, error.reason or "", raw.decode("utf-8", "replace")
            )
