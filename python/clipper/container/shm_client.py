"""The replica's half of the shared-memory transport's handshake (cpp/rpc/shm_transport.h).

A replica on the frontend's host registers asking for shared memory; the frontend answers with a
SharedMemoryOffer (a unix socket path and a one-time token). `attach()` connects to that socket, sends
the token and receives the channel as three descriptors (a sealed memfd, the request doorbell, the
response doorbell); the rings themselves are driven by the Cython extension `_shm_ring`. Without that
extension (the standalone SDK distribution builds none) `available()` is False and the replica asks for
nothing: it serves over ZeroMQ as before.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from clipper.container.codec import WireFormatError

try:
    from clipper.container._shm_ring import ShmChannel, ShmChannelError
except ImportError:  # the standalone SDK distribution: ZeroMQ only
    ShmChannel = None  # type: ignore[assignment,misc]

    class ShmChannelError(RuntimeError):  # type: ignore[no-redef]
        """The channel is unusable."""


__all__ = ["ShmChannelError", "attach", "available", "decode_offer"]

# The frontend's answer beside the descriptors: magic, layout version, reserved, ring capacities.
_ATTACH_REPLY = struct.Struct("<QIIQQ")
_MAGIC = 0x314D48535050494C
_LAYOUT_VERSION = 1
_HANDSHAKE_TIMEOUT_S = 5.0


def available() -> bool:
    """Whether this installation can serve over shared memory (the extension is built)."""
    return ShmChannel is not None


def decode_offer(buffer: Any, table: int) -> tuple[str, bytes]:
    """(socket_path, token) of the SharedMemoryOffer at `table` (see codec.read_message)."""
    from clipper.wire.SharedMemoryOffer import SharedMemoryOffer

    offer = SharedMemoryOffer()
    offer.Init(bytes(buffer), table)
    path, token = offer.SocketPath(), offer.Token()
    if not path or not token:
        raise WireFormatError("a SharedMemoryOffer without socket_path or token")
    return path.decode("utf-8", "replace"), token


def attach(socket_path: str, token: bytes, spin_micros: int = 0) -> Any:
    """Takes up an offer: returns an attached ShmChannel that polls its request ring for up to
    `spin_micros` before sleeping (ShmChannel.receive). Raises OSError or ShmChannelError when the
    frontend cannot be reached this way (another host or mount namespace) or answers badly."""
    if ShmChannel is None:
        raise ShmChannelError("the shared-memory extension is not built in this installation")
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.settimeout(_HANDSHAKE_TIMEOUT_S)
        connection.connect(socket_path)
        connection.sendall(token)
        data, descriptors, _flags, _address = socket.recv_fds(connection, _ATTACH_REPLY.size, 3)
        if len(data) != _ATTACH_REPLY.size or len(descriptors) != 3:
            for descriptor in descriptors:
                _close_quietly(descriptor)
            raise ShmChannelError("the frontend refused the shared-memory offer")
        magic, version, _reserved, request_capacity, response_capacity = _ATTACH_REPLY.unpack(data)
        if magic != _MAGIC or version != _LAYOUT_VERSION:
            for descriptor in descriptors:
                _close_quietly(descriptor)
            raise ShmChannelError(f"unknown shared-memory layout {version}")
        connection.settimeout(None)
        memfd, request_doorbell, response_doorbell = descriptors
        return ShmChannel(
            connection,
            memfd,
            request_doorbell,
            response_doorbell,
            request_capacity,
            response_capacity,
            spin_micros,
        )
    except BaseException:
        connection.close()
        raise


def _close_quietly(descriptor: int) -> None:
    import os

    try:
        os.close(descriptor)
    except OSError:
        pass
