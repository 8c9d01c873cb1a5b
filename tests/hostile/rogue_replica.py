"""A replica that speaks the model RPC by hand (a ZeroMQ DEALER and the SDK's wire encoders), so it can
say what no well-behaved replica says: wrong output counts, corrupt or unexpected messages, invalid
UTF-8, floods of registrations and heartbeats. It holds the cluster's replica keys (CURVE): these
are the faults of a replica the cluster admitted, buggy or compromised. It runs on a thread of the
test process."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import flatbuffers
import zmq
from clipper.wire import Message as wire_message
from clipper.wire import PredictResponse as wire_predict_response

from clipper.container import ReplicaCredentials
from clipper.container.codec import (
    InputType,
    Payload,
    decode_predict_request,
    encode_heartbeat,
    encode_register,
    read_message,
)

# (batch_id, num_inputs) -> the bytes to send back, or None to stay silent.
Answer = Callable[[int, int], "bytes | None"]


def response_with_outputs(batch_id: int, outputs: list[bytes]) -> bytes:
    """A well-formed Message{PredictResponse} whose output strings are exactly `outputs` (any bytes)."""
    builder = flatbuffers.Builder(1024)
    offsets = [builder.CreateString(output) for output in outputs]
    wire_predict_response.StartOutputsVector(builder, len(offsets))
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    vector = builder.EndVector()
    wire_predict_response.Start(builder)
    wire_predict_response.AddBatchId(builder, batch_id)
    wire_predict_response.AddOutputs(builder, vector)
    payload = wire_predict_response.End(builder)
    wire_message.Start(builder)
    wire_message.AddPayloadType(builder, Payload.PredictResponse)
    wire_message.AddPayload(builder, payload)
    builder.Finish(wire_message.End(builder))
    return bytes(builder.Output())


class RogueReplica:
    """Registers as `model_name:version` on the frontend's RPC port and answers each batch with
    `answer(batch_id, num_inputs)`, heartbeating like a real replica so the frontend keeps it."""

    def __init__(
        self,
        rpc_port: int,
        model_name: str,
        version: str,
        answer: Answer,
        credentials: ReplicaCredentials | None,
        input_type: InputType = InputType.DOUBLES,
    ) -> None:
        self.address = f"tcp://127.0.0.1:{rpc_port}"
        self.credentials = credentials
        self.model_name = model_name
        self.version = version
        self.input_type = input_type
        self.answer = answer
        self.key = f"rogue-{uuid.uuid4().hex}"
        self.batches = 0
        self._stop = threading.Event()
        self._context = zmq.Context()
        self._thread = threading.Thread(target=self._run, name="rogue-replica", daemon=True)

    def __enter__(self) -> RogueReplica:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._context.term()

    def socket(self, routing_id: str | None = None) -> zmq.Socket:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if routing_id:
            sock.setsockopt(zmq.ROUTING_ID, routing_id.encode())
        if self.credentials is not None:
            self.credentials.apply(sock)
        sock.connect(self.address)
        return sock

    def _run(self) -> None:
        builder = flatbuffers.Builder(256)
        data = self.socket(self.key)
        beats = self.socket()
        try:
            data.send(
                bytes(encode_register(builder, self.model_name, self.version, self.input_type))
            )
            heartbeat = bytes(encode_heartbeat(builder, self.key))
            while not self._stop.is_set():
                beats.send(heartbeat, zmq.NOBLOCK)
                while beats.poll(0):
                    beats.recv()  # the acknowledgement
                if not data.poll(100):
                    continue
                frame = data.recv()
                payload_type, table = read_message(frame)
                if payload_type != Payload.PredictRequest:
                    continue
                batch = decode_predict_request(frame, table, self.input_type)
                self.batches += 1
                reply = self.answer(batch.batch_id, batch.num_inputs)
                if reply is not None:
                    data.send(reply)
        finally:
            data.close()
            beats.close()
