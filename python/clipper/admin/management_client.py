"""HTTP client of the management REST API (`POST /admin/<operation>` with a JSON body).

Owns the wire details (URL, JSON, timeouts, the cluster's bearer token) and the mapping of HTTP failures
to `clipper` exceptions; `ClipperConnection` builds on it. Uses only the standard library. Blocking; safe
to share across threads.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
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
    def __init__(
        self,
        admin_addr: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        token: str | Callable[[], str | None] | None = None,
    ) -> None:
        """`admin_addr` is "host:port" of the management API. `token` is the cluster's management
        token, or a function returning it (read again once after a 401, so a client outlives a restart
        of the cluster, which makes a new token); None sends no Authorization header."""
        self.admin_addr = admin_addr
        self.timeout_s = timeout_s
        self._token_source = token

    def _token(self) -> str | None:
        source = self._token_source
        return source() if callable(source) else source

    def call(self, operation: str, body: dict[str, Any] | None = None) -> Any:
        """POST `body` to /admin/<operation> and return the decoded JSON answer."""
        url = f"http://{self.admin_addr}/admin/{operation}"
        data = json.dumps(body or {}).encode("utf-8")
        token = self._token()
        try:
            try:
                payload = self._post(url, data, token)
            except urllib.error.HTTPError as error:
                # After a 401 the token is read again: the cluster may have restarted with a new one.
                fresh = (
                    self._token() if error.code == 401 and callable(self._token_source) else None
                )
                if fresh is None or fresh == token:
                    raise
                error.close()
                payload = self._post(url, data, fresh)
        except urllib.error.HTTPError as error:
            raise self._api_error(operation, error) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ClipperException(
                f"cannot reach the management API at {self.admin_addr} for {operation}: {reason}; "
                "check that the cluster is running (start_clipper() or `clipper start`)"
            ) from error
        return self._decode(operation, payload)

    def _post(self, url: str, data: bytes, token: str | None) -> bytes:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(url, data=data, method="POST", headers=headers)
        with urlopen_direct(request, timeout=self.timeout_s) as response:
            payload: bytes = response.read()
        return payload

    def _decode(self, operation: str, payload: bytes) -> Any:
        logger.debug("event=admin_call operation=%s bytes=%d", operation, len(payload))
        try:
            return json.loads(payload) if payload else None
        except ValueError as error:
            raise ClipperException(
                f"the management API at {self.admin_addr} answered {operation} with invalid JSON: "
                f"{payload[:200]!r}"
            ) from error

    def ping(self) -> bool:
        """True when the management API answers /admin/ping, even with a 401 (it is up; whether the
        token is right shows on the first real call)."""
        try:
            self.call("ping")
        except ManagementAPIError as error:
            return error.status_code == 401
        except ClipperException:
            return False
        return True

    def _api_error(self, operation: str, error: urllib.error.HTTPError) -> ManagementAPIError:
        raw = error.read()
        if error.code == 401:
            sent = "a token that the cluster does not accept" if self._token() else "no token"
            return ManagementAPIError(
                operation,
                401,
                "Unauthorized",
                f"the management API at {self.admin_addr} needs the cluster's token and this client "
                f"sent {sent}; on the cluster's host it is read from <state_dir>/management_token "
                "(pass the same state_dir to the container manager), elsewhere pass it as "
                "ClipperConnection(manager, management_token=...)",
            )
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
