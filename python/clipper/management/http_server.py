"""A small HTTP/1.1 server for the control plane that slow or abusive clients cannot exhaust.

Owns connections, not meaning: h11 parses and frames the messages; this module enforces the limits (read
timeouts for headers and body, an idle timeout between requests, caps on connections overall and per client
address, header count and size, body size, request-smuggling rules) and hands each complete request to an
`HTTPApplication`. One asyncio event loop on one thread serves every connection (a connection costs a
descriptor and a coroutine, never a thread); the application's blocking work runs on a small thread pool.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import json
import logging
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, fields
from http import HTTPStatus
from typing import Any

import h11

from clipper.exceptions import ClipperException

logger = logging.getLogger(__name__)

_READ_CHUNK_BYTES = 64 * 1024
_SERVER_HEADER = b"clipper-management/2"


@dataclass(frozen=True)
class HTTPServerLimits:
    """What one client may hold of the server. Every field is a flag of `python -m clipper.management`
    (`--management-<field>`); the defaults suit an admin API called by a few programs."""

    # Request line plus headers larger than this answer 431.
    max_header_bytes: int = 16 * 1024
    # More header fields than this answer 431.
    max_headers: int = 64
    # Bodies larger than this answer 413 (as soon as the headers announce it).
    max_body_bytes: int = 1024 * 1024
    # From a request's first byte to the end of its headers; a client slower than that gets 408.
    header_timeout_millis: int = 5_000
    # From the end of the headers to the end of the body (and for writing the answer).
    body_timeout_millis: int = 30_000
    # A connection with no request in progress is closed after this long.
    idle_timeout_millis: int = 30_000
    # With this many connections open, a new one closes the one waiting longest without a complete
    # request (503 to it), or is itself answered 503 and closed when every connection is mid-request.
    max_connections: int = 256
    # The same cap for the connections of one client address (the room is made among its own).
    max_connections_per_client: int = 64
    # Threads running the application's (blocking) operations; requests beyond them wait their turn.
    worker_threads: int = 4

    def validate(self) -> None:
        for option in fields(self):
            value = getattr(self, option.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ClipperException(
                    f"management {option.name}={value!r} is not valid: give a whole number >= 1"
                )


@dataclass(frozen=True)
class HTTPRequestHead:
    method: str
    # The request target as sent, e.g. "/admin/ping?x=1".
    target: str
    # Lower-case header names; a repeated header keeps its last value.
    headers: dict[str, str]
    client_address: str

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass(frozen=True)
class HTTPResponse:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> HTTPResponse:
    return HTTPResponse(
        int(status), json.dumps(payload).encode("utf-8"), headers=tuple((headers or {}).items())
    )


def error_response(
    status: int, error: str, cause: str, headers: dict[str, str] | None = None
) -> HTTPResponse:
    return json_response(status, {"error": error, "cause": cause}, headers)


class HTTPApplication(abc.ABC):
    """What the server calls for each request (see `HTTPServer`)."""

    def check_head(self, head: HTTPRequestHead) -> HTTPResponse | None:
        """Called on the event loop once the headers arrived, before the body is read (and before a
        `100 Continue`): return a response to answer at once without reading the body (the
        connection is then closed if a body was announced), or None to go on. Must not block."""
        return None

    @abc.abstractmethod
    def handle(self, head: HTTPRequestHead, body: bytes) -> HTTPResponse:
        """Answer a complete request. Runs on a worker thread; may block."""


class HTTPServer:
    """Serves `application` on `address` from a thread of its own: `start()`, then `stop()`."""

    def __init__(
        self,
        address: tuple[str, int],
        application: HTTPApplication,
        limits: HTTPServerLimits | None = None,
        thread_name: str = "http-server",
    ) -> None:
        self.limits = limits or HTTPServerLimits()
        self.limits.validate()
        self._address = address
        self._application = application
        self._thread_name = thread_name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.limits.worker_threads, thread_name_prefix=f"{thread_name}-worker"
        )
        self._open_connections = 0
        self._connections_per_client: Counter[str] = Counter()
        # Connections closed to make room whose coroutine has not finished yet (they hold no slot).
        self._evicted: set[asyncio.StreamWriter] = set()
        self._evicting = 0
        self._evicting_per_client: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        # Connections between requests (idle, or still sending headers), oldest first: the ones
        # closed to make room when every slot is taken, so slow clients cannot lock others out.
        # (Each maps to its client address.)
        self._waiting: dict[asyncio.StreamWriter, str] = {}
        # Connections refused for a cap, and closed to make room, since start (for logs and tests).
        self.refused_connections = 0
        self.evicted_connections = 0

    # ---- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind (raising OSError if the address is taken) and start serving on a background thread."""
        bound = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(self._bind())
                self.port = int(self._server.sockets[0].getsockname()[1])
            except BaseException as error:  # noqa: BLE001 - handed to the starting thread
                failure.append(error)
                bound.set()
                loop.close()
                return
            bound.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._close_everything())
                loop.close()

        self._thread = threading.Thread(target=run, name=self._thread_name, daemon=True)
        self._thread.start()
        bound.wait()
        if failure:
            self._thread.join()
            self._executor.shutdown(wait=False)
            raise failure[0]

    def stop(self) -> None:
        """Close the listener and every connection; wait for the thread (and running operations)."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        self._executor.shutdown(wait=True, cancel_futures=True)

    @property
    def open_connections(self) -> int:
        return self._open_connections

    async def _bind(self) -> asyncio.base_events.Server:
        host, port = self._address
        return await asyncio.start_server(
            self._serve_connection,
            host,
            port,
            reuse_address=True,
            backlog=min(4096, self.limits.max_connections * 2),
            limit=_READ_CHUNK_BYTES,
        )

    async def _close_everything(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---- one connection -------------------------------------------------------------------------------

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if peer else "unknown"
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Headers and body leave in one write, but a kept-alive client should not wait for Nagle.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        limits = self.limits
        # At a cap, the connection that has waited longest without a complete request (of this client
        # at the per-client cap) makes room, so idle or slow connections cannot lock anyone out.
        if self._connections_per_client[client] - self._evicting_per_client[client] >= (
            limits.max_connections_per_client
        ):
            self._evict_oldest_waiting(client)
        elif self._open_connections - self._evicting >= limits.max_connections:
            self._evict_oldest_waiting(None)
        if (
            self._open_connections - self._evicting >= limits.max_connections
            or self._connections_per_client[client] - self._evicting_per_client[client]
            >= limits.max_connections_per_client
        ):
            self.refused_connections += 1
            if self.refused_connections == 1 or self.refused_connections % 100 == 0:
                logger.warning(
                    "event=management_connection_refused client=%s open=%d from_client=%d "
                    "refused_total=%d",
                    client,
                    self._open_connections,
                    self._connections_per_client[client],
                    self.refused_connections,
                )
            writer.write(
                _raw_error(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    "Too many connections",
                    "the management API has too many open connections (from your address or in "
                    "all); close idle ones and retry",
                )
            )
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._open_connections += 1
        self._connections_per_client[client] += 1
        try:
            await self._serve_requests(reader, writer, client)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            writer.transport.abort()
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        except Exception:
            logger.exception("event=management_connection_failed client=%s", client)
            writer.transport.abort()
        finally:
            self._waiting.pop(writer, None)
            if writer in self._evicted:
                self._evicted.discard(writer)
                self._evicting -= 1
                self._evicting_per_client[client] -= 1
                if self._evicting_per_client[client] <= 0:
                    del self._evicting_per_client[client]
            self._open_connections -= 1
            self._connections_per_client[client] -= 1
            if self._connections_per_client[client] <= 0:
                del self._connections_per_client[client]
            if task is not None:
                self._tasks.discard(task)
            if not writer.transport.is_closing():
                writer.close()

    async def _serve_requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str
    ) -> None:
        limits = self.limits
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        while True:
            # ---- the request line and headers, within the idle and then the header timeout ----
            head_bytes = bytearray(connection.trailing_data[0])
            started = bool(head_bytes)
            self._waiting.pop(writer, None)
            self._waiting[writer] = client  # (re)inserted last: the newest waiter
            deadline = (
                time.monotonic()
                + (limits.header_timeout_millis if started else limits.idle_timeout_millis) / 1000
            )
            while True:
                try:
                    event = connection.next_event()
                except h11.RemoteProtocolError as error:
                    status = error.error_status_hint
                    cause = str(error)
                    if status == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE:
                        cause = f"request line and headers exceed {limits.max_header_bytes} bytes"
                    await self._send_raw_and_close(writer, status, "Bad request", cause)
                    return
                if event is not h11.NEED_DATA:
                    break
                data = await self._read(reader, deadline)
                if data is None:
                    if started:
                        await self._send_raw_and_close(
                            writer,
                            HTTPStatus.REQUEST_TIMEOUT,
                            "Request timeout",
                            f"the headers did not arrive within {limits.header_timeout_millis} ms",
                        )
                    else:
                        writer.transport.abort()  # idle: nothing to answer
                    return
                if not started and data:
                    started = True
                    deadline = time.monotonic() + limits.header_timeout_millis / 1000
                if len(head_bytes) <= limits.max_header_bytes:
                    head_bytes += data
                connection.receive_data(data)
            self._waiting.pop(writer, None)
            if isinstance(event, h11.ConnectionClosed):
                return
            if not isinstance(event, h11.Request):
                return  # nothing else can start a request; h11 would have raised
            refusal = _check_framing(event, bytes(head_bytes), limits)
            if refusal is not None:
                await self._send_raw_and_close(writer, *refusal)
                return
            head = HTTPRequestHead(
                method=event.method.decode("ascii", "replace"),
                target=event.target.decode("ascii", "replace"),
                headers={
                    name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers
                },
                client_address=client,
            )
            early = self._application.check_head(head)
            declared = _declared_length(event)
            has_body = declared is None or declared > 0
            if early is not None:
                if has_body:  # unread: the connection cannot carry another request
                    await self._respond(
                        writer, connection, early, close=True, head_only=head.method == "HEAD"
                    )
                    return
                connection.next_event()  # the empty body's end, so the exchange completes
                if not await self._respond(
                    writer, connection, early, close=False, head_only=head.method == "HEAD"
                ):
                    return
                connection.start_next_cycle()
                continue
            if declared is not None and declared > limits.max_body_bytes:
                await self._send_raw_and_close(
                    writer,
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    "Body too large",
                    f"the body has {declared} bytes; the management API accepts at most "
                    f"{limits.max_body_bytes}",
                )
                return
            # ---- the body, within the body timeout and the size limit ----
            if connection.they_are_waiting_for_100_continue:
                writer.write(
                    connection.send(h11.InformationalResponse(status_code=100, headers=[]))
                )
            body = bytearray()
            deadline = time.monotonic() + limits.body_timeout_millis / 1000
            while True:
                try:
                    event = connection.next_event()
                except h11.RemoteProtocolError as error:
                    await self._send_raw_and_close(
                        writer, error.error_status_hint, "Bad request", str(error)
                    )
                    return
                if event is h11.NEED_DATA:
                    data = await self._read(reader, deadline)
                    if data is None:
                        await self._send_raw_and_close(
                            writer,
                            HTTPStatus.REQUEST_TIMEOUT,
                            "Request timeout",
                            f"the body did not arrive within {limits.body_timeout_millis} ms",
                        )
                        return
                    connection.receive_data(data)
                    continue
                if isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > limits.max_body_bytes:
                        await self._send_raw_and_close(
                            writer,
                            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            "Body too large",
                            f"the body exceeds {limits.max_body_bytes} bytes",
                        )
                        return
                    continue
                if isinstance(event, h11.EndOfMessage):
                    break
                return  # the client went away mid-body
            loop = asyncio.get_running_loop()
            response = await loop.run_in_executor(
                self._executor, self._application.handle, head, bytes(body)
            )
            if not await self._respond(
                writer, connection, response, close=False, head_only=head.method == "HEAD"
            ):
                return
            connection.start_next_cycle()

    def _evict_oldest_waiting(self, client: str | None) -> None:
        """A cap is reached: close the connection (of `client`, or of anyone when None) that has
        waited longest without a complete request, to make room; none is closed mid-request."""
        for victim, victim_client in self._waiting.items():
            if client is not None and victim_client != client:
                continue
            del self._waiting[victim]
            self._evicted.add(victim)
            self._evicting += 1
            self._evicting_per_client[victim_client] += 1
            self.evicted_connections += 1
            if self.evicted_connections == 1 or self.evicted_connections % 100 == 0:
                logger.warning(
                    "event=management_connection_evicted open=%d evicted_total=%d",
                    self._open_connections,
                    self.evicted_connections,
                )
            victim.write(
                _raw_error(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    "Too many connections",
                    "closed to make room for another client: send a request as soon as you "
                    "connect, and close connections you do not use",
                )
            )
            victim.close()
            return

    async def _read(self, reader: asyncio.StreamReader, deadline: float) -> bytes | None:
        """The next bytes (b"" at end of stream), or None once `deadline` passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            return await asyncio.wait_for(reader.read(_READ_CHUNK_BYTES), remaining)
        except asyncio.TimeoutError:
            return None

    async def _respond(
        self,
        writer: asyncio.StreamWriter,
        connection: h11.Connection,
        response: HTTPResponse,
        close: bool,
        head_only: bool = False,
    ) -> bool:
        """Send `response` (its headers alone for a HEAD request); True when the connection may
        serve another request."""
        headers = [
            ("Server", _SERVER_HEADER.decode()),
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            *response.headers,
        ]
        if close:
            headers.append(("Connection", "close"))
        data = connection.send(h11.Response(status_code=response.status, headers=headers))
        if not head_only:
            data += connection.send(h11.Data(data=response.body))
        data += connection.send(h11.EndOfMessage())
        writer.write(data)
        await self._drain(writer)
        if close or connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
            writer.close()
            return False
        return True

    async def _send_raw_and_close(
        self, writer: asyncio.StreamWriter, status: int, error: str, cause: str
    ) -> None:
        """Answer outside h11's state machine (the request was refused or unparseable) and close."""
        if writer.transport.is_closing():  # closed to make room, or by the client
            return
        writer.write(_raw_error(status, error, cause))
        await self._drain(writer)
        writer.close()

    async def _drain(self, writer: asyncio.StreamWriter) -> None:
        """Wait for the answer to leave, at most the body timeout (a client that never reads is cut)."""
        try:
            await asyncio.wait_for(writer.drain(), self.limits.body_timeout_millis / 1000)
        except asyncio.TimeoutError:
            writer.transport.abort()


def _declared_length(request: h11.Request) -> int | None:
    """The Content-Length of a request; 0 when it has no body; None when chunked."""
    for name, value in request.headers:
        if name == b"transfer-encoding":
            return None
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)
    return 0


def _check_framing(
    request: h11.Request, head_bytes: bytes, limits: HTTPServerLimits
) -> tuple[int, str, str] | None:
    """Refusals h11 does not make itself: too many headers, a repeated Content-Length (even with equal
    values) and Content-Length together with Transfer-Encoding (the request-smuggling shapes)."""
    if len(request.headers) > limits.max_headers:
        return (
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Too many headers",
            f"the request has {len(request.headers)} header fields; at most {limits.max_headers}",
        )
    # h11 accepts bare LF line ends too; the header block ends at the first empty line either way.
    ends = [i for i in (head_bytes.find(b"\r\n\r\n"), head_bytes.find(b"\n\n")) if i >= 0]
    end = min(ends) if ends else -1
    if end < 0 or end + 4 > limits.max_header_bytes:  # h11 checks only headers split across reads
        return (
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Headers too large",
            f"request line and headers exceed {limits.max_header_bytes} bytes",
        )
    names = [name for name, _ in request.headers]
    header_block = head_bytes[:end].lower()
    content_lengths = header_block.count(b"\ncontent-length:") + header_block.count(
        b"\ncontent-length "
    )
    if content_lengths > 1:
        return (HTTPStatus.BAD_REQUEST, "Bad request", "Content-Length is given more than once")
    if b"content-length" in names and b"transfer-encoding" in names:
        return (
            HTTPStatus.BAD_REQUEST,
            "Bad request",
            "a request may not have both Content-Length and Transfer-Encoding",
        )
    return None


def _raw_error(status: int, error: str, cause: str) -> bytes:
    body = json.dumps({"error": error, "cause": cause}).encode("utf-8")
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    head = (
        f"HTTP/1.1 {int(status)} {reason}\r\n"
        f"Server: {_SERVER_HEADER.decode()}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body
