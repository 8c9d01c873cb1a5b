"""The frontend's half of model_rpc.fbs, for tests: builds PredictRequests and HeartbeatAcks with the
official flatbuffers Builder, decodes what replicas send with the generated accessors (never with the
SDK's own reader, so the two check each other), and plays the frontend on a real ZeroMQ ROUTER."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import flatbuffers
import numpy as np
import zmq
from clipper.wire import Heartbeat as wire_heartbeat
from clipper.wire import HeartbeatAck as wire_heartbeat_ack
from clipper.wire import Message as wire_message
from clipper.wire import PredictRequest as wire_predict_request
from clipper.wire import PredictResponse as wire_predict_response
from clipper.wire import Register as wire_register
from clipper.wire.Payload import Payload

WIRE_TYPES = {"bytes": 0, "ints": 1, "floats": 2, "doubles": 3, "strings": 4}
NUMPY_DTYPES = {"ints": "<i4", "floats": "<f4", "doubles": "<f8"}


def build_predict_request(
    batch_id: int, input_type: str, inputs: Any, *, ragged: bool | None = None
) -> bytes:
    """A Message{PredictRequest} as the engine lays it out: a uniform numeric batch (a 2-D array) as
    one row-major tensor without offsets, anything else (list of arrays, bytes or str) with offsets.
    `data` is 16-byte aligned from the buffer's start, as the schema's force_align asks (the Python
    generator ignores force_align, so the vector is started by hand)."""
    builder = flatbuffers.Builder(1024)
    dtype = NUMPY_DTYPES.get(input_type)
    offsets = None
    if isinstance(inputs, np.ndarray) and inputs.ndim == 2 and not ragged:
        array = np.ascontiguousarray(inputs, dtype=dtype)
        data, num_inputs, row_length = array.tobytes(), array.shape[0], array.shape[1]
    else:
        parts = []
        for item in inputs:
            if isinstance(item, str):
                parts.append(item.encode("utf-8"))
            elif isinstance(item, (bytes, bytearray)):
                parts.append(bytes(item))
            else:
                parts.append(np.asarray(item, dtype=dtype).tobytes())
        data, num_inputs, row_length = b"".join(parts), len(parts), 0
        offsets = np.concatenate([[0], np.cumsum([len(part) for part in parts])]).astype("<u8")
    builder.StartVector(1, len(data), 16)
    builder.head -= len(data)
    builder.Bytes[builder.head : builder.head + len(data)] = data
    data_vector = builder.EndVector()
    offsets_vector = builder.CreateNumpyVector(offsets) if offsets is not None else None
    wire_predict_request.Start(builder)
    wire_predict_request.AddBatchId(builder, batch_id)
    wire_predict_request.AddInputType(builder, WIRE_TYPES[input_type])
    wire_predict_request.AddNumInputs(builder, num_inputs)
    wire_predict_request.AddRowLength(builder, row_length)
    if offsets_vector is not None:
        wire_predict_request.AddOffsets(builder, offsets_vector)
    wire_predict_request.AddData(builder, data_vector)
    request = wire_predict_request.End(builder)
    return _finish(builder, Payload.PredictRequest, request)


def build_heartbeat_ack(registered: bool) -> bytes:
    builder = flatbuffers.Builder(64)
    wire_heartbeat_ack.Start(builder)
    wire_heartbeat_ack.AddRegistered(builder, registered)
    return _finish(builder, Payload.HeartbeatAck, wire_heartbeat_ack.End(builder))


def _finish(builder: flatbuffers.Builder, payload_type: int, payload: int) -> bytes:
    wire_message.Start(builder)
    wire_message.AddPayloadType(builder, payload_type)
    wire_message.AddPayload(builder, payload)
    builder.Finish(wire_message.End(builder))
    return bytes(builder.Output())


def aligned_copy(message: bytes, misalign: int = 0) -> np.ndarray:
    """`message` in a uint8 array starting `misalign` bytes past a 64-byte boundary."""
    storage = np.zeros(len(message) + 64 + misalign, dtype=np.uint8)
    start = (-storage.ctypes.data) % 64 + misalign
    array = storage[start : start + len(message)]
    array[:] = np.frombuffer(message, dtype=np.uint8)
    return array


@dataclass
class Received:
    """One message a replica sent, decoded with the generated code."""

    routing_id: bytes
    kind: str  # "register", "heartbeat", "response" or "other"
    fields: dict[str, Any] = field(default_factory=dict)


def decode_replica_message(routing_id: bytes, buffer: bytes) -> Received:
    message = wire_message.Message.GetRootAs(buffer, 0)
    table = message.Payload()
    payload_type = message.PayloadType()
    if payload_type == Payload.Register:
        register = wire_register.Register()
        register.Init(table.Bytes, table.Pos)
        return Received(
            routing_id,
            "register",
            {
                "model_name": register.ModelName().decode(),
                "model_version": register.ModelVersion().decode(),
                "input_type": register.InputType(),
                "replica_id": register.ReplicaId(),
                "protocol_version": register.ProtocolVersion(),
            },
        )
    if payload_type == Payload.Heartbeat:
        heartbeat = wire_heartbeat.Heartbeat()
        heartbeat.Init(table.Bytes, table.Pos)
        return Received(routing_id, "heartbeat", {"replica_key": heartbeat.ReplicaKey().decode()})
    if payload_type == Payload.PredictResponse:
        response = wire_predict_response.PredictResponse()
        response.Init(table.Bytes, table.Pos)
        error = response.Error()
        return Received(
            routing_id,
            "response",
            {
                "batch_id": response.BatchId(),
                "outputs": [
                    response.Outputs(index).decode() for index in range(response.OutputsLength())
                ],
                "error": error.decode() if error is not None else None,
                # Empty when the replica reported none (the field is then absent from the message).
                "confidences": [
                    response.Confidences(index) for index in range(response.ConfidencesLength())
                ],
            },
        )
    return Received(routing_id, "other", {"payload_type": payload_type})


class RouterFrontend:
    """A real peer: a ROUTER bound on a free loopback port that answers heartbeats the way the engine
    does (with `registered` as set on this object) and records everything replicas send."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.registered = True  # what heartbeat acks answer
        self.received: list[Received] = []

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()

    def receive(self, timeout_s: float) -> Received | None:
        """The next message, or None after `timeout_s`. Heartbeats are acknowledged on the way."""
        if not self.socket.poll(max(0, round(timeout_s * 1000)), zmq.POLLIN):
            return None
        routing_id, body = self.socket.recv_multipart()
        message = decode_replica_message(routing_id, body)
        if message.kind == "heartbeat":
            self.socket.send_multipart([routing_id, build_heartbeat_ack(self.registered)])
        self.received.append(message)
        return message

    def wait_for(self, kind: str, timeout_s: float = 10.0, **expected: Any) -> Received:
        """The next message of `kind` whose fields include `expected`; fails after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            message = self.receive(remaining)
            if message is None:
                break
            if message.kind == kind and all(
                message.fields.get(k) == v for k, v in expected.items()
            ):
                return message
        raise AssertionError(f"no {kind} message {expected or ''} within {timeout_s} s")

    def send_batch(self, routing_id: bytes, batch_id: int, input_type: str, inputs: Any) -> None:
        self.socket.send_multipart(
            [routing_id, build_predict_request(batch_id, input_type, inputs)]
        )

    def predict(
        self,
        routing_id: bytes,
        batch_id: int,
        input_type: str,
        inputs: Any,
        timeout_s: float = 10.0,
    ) -> dict[str, Any]:
        """Sends one batch and returns the fields of its response."""
        self.send_batch(routing_id, batch_id, input_type, inputs)
        return self.wait_for("response", timeout_s, batch_id=batch_id).fields
