"""Hypothesis on the Python codecs: the container SDK's wire codec (clipper.container.codec), which
reads what the frontend sends and writes what replicas answer, and the query client's body encoders
(clipper.client). Properties, over generated values rather than chosen examples:
- a PredictRequest the frontend could send decodes to exactly its inputs, for every input type;
- any bytes at all (and damaged real requests) given to the readers raise WireFormatError or decode,
  never anything else: the serving loop answers a WireFormatError and survives, not other exceptions;
- a response reads back through the generated flatbuffers code as written, and the native and Python
  encoders write the same bytes;
- model outputs convert to one string per input that reads back as the value;
- the client's bodies are the JSON the query API documents, carrying the values exactly."""

import base64
import json
import math
import os
import struct

import flatbuffers
import numpy as np
import pytest
from clipper.wire import Message as wire_message
from clipper.wire import PredictRequest as wire_predict_request
from clipper.wire import PredictResponse as wire_predict_response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipper import client
from clipper.container import codec

# CLIPPER_FUZZ_EXAMPLES: examples per property (300 in CI; more for a longer run, docs/fuzzing.md).
SETTINGS = settings(
    max_examples=int(os.environ.get("CLIPPER_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
NUMERIC = {
    codec.InputType.INTS: st.integers(-(2**31), 2**31 - 1),
    codec.InputType.FLOATS: st.floats(width=32, allow_nan=False, allow_infinity=False),
    codec.InputType.DOUBLES: st.floats(allow_nan=False, allow_infinity=False),
}
DTYPES = {
    codec.InputType.INTS: "<i4",
    codec.InputType.FLOATS: "<f4",
    codec.InputType.DOUBLES: "<f8",
}


def encode_request(batch_id, input_type, inputs, uniform):
    """A Message{PredictRequest} laid out as the frontend's encoder lays it out (model_rpc.fbs)."""
    builder = flatbuffers.Builder(1024)
    if input_type in DTYPES:
        payloads = [np.asarray(row, dtype=DTYPES[input_type]).tobytes() for row in inputs]
    elif input_type is codec.InputType.STRINGS:
        payloads = [text.encode("utf-8") for text in inputs]
    else:
        payloads = list(inputs)
    offsets = None
    if not uniform:
        positions = np.cumsum([0, *map(len, payloads)], dtype=np.uint64)
        wire_predict_request.StartOffsetsVector(builder, len(positions))
        for position in reversed(positions.tolist()):
            builder.PrependUint64(position)
        offsets = builder.EndVector()
    builder.StartVector(1, len(b"".join(payloads)), 16)
    for byte in reversed(b"".join(payloads)):
        builder.PrependUint8(byte)
    data = builder.EndVector()
    wire_predict_request.Start(builder)
    wire_predict_request.AddBatchId(builder, batch_id)
    wire_predict_request.AddInputType(builder, int(input_type))
    wire_predict_request.AddNumInputs(builder, len(inputs))
    wire_predict_request.AddRowLength(builder, len(inputs[0]) if uniform and inputs else 0)
    if offsets is not None:
        wire_predict_request.AddOffsets(builder, offsets)
    wire_predict_request.AddData(builder, data)
    return bytes(
        codec._finish_message(
            builder, codec.Payload.PredictRequest, wire_predict_request.End(builder)
        )
    )


@st.composite
def requests(draw):
    input_type = draw(st.sampled_from(list(codec.InputType)))
    count = draw(st.integers(0, 6))
    if input_type in NUMERIC:
        uniform = draw(st.booleans())
        if uniform:
            length = draw(st.integers(0, 5))
            rows = [
                draw(st.lists(NUMERIC[input_type], min_size=length, max_size=length))
                for _ in range(count)
            ]
        else:
            rows = [draw(st.lists(NUMERIC[input_type], max_size=5)) for _ in range(count)]
        return input_type, rows, uniform and count > 0
    if input_type is codec.InputType.STRINGS:
        return input_type, draw(st.lists(st.text(max_size=12), max_size=count)), False
    return input_type, draw(st.lists(st.binary(max_size=12), max_size=count)), False


def decode(buffer, input_type):
    payload_type, table = codec.read_message(buffer)
    assert payload_type == codec.Payload.PredictRequest
    return codec.decode_predict_request(buffer, table, input_type)


@SETTINGS
@given(requests(), st.integers(0, 2**64 - 1))
def test_a_request_decodes_to_exactly_its_inputs(request, batch_id):
    input_type, inputs, uniform = request
    batch = decode(encode_request(batch_id, input_type, inputs, uniform), input_type)
    assert batch.batch_id == batch_id and batch.num_inputs == len(inputs)
    if input_type in DTYPES:
        decoded = [np.asarray(row).tolist() for row in batch.inputs]
        expected = [np.asarray(row, dtype=DTYPES[input_type]).tolist() for row in inputs]
        assert decoded == expected
        if uniform:
            assert batch.inputs.shape == (len(inputs), len(inputs[0]))
    else:
        assert list(batch.inputs) == list(inputs)


def read_any(buffer):
    """Everything the replica's loops do with a received message; WireFormatError is the only failure."""
    try:
        payload_type, table = codec.read_message(buffer)
        if payload_type == codec.Payload.PredictRequest:
            for input_type in codec.InputType:
                try:
                    codec.decode_predict_request(buffer, table, input_type)
                except codec.WireFormatError:
                    pass
        elif payload_type == codec.Payload.HeartbeatAck:
            codec.decode_heartbeat_ack(buffer, table)
    except codec.WireFormatError:
        pass


@SETTINGS
@given(st.binary(max_size=256))
def test_any_bytes_raise_only_wire_format_errors(buffer):
    read_any(buffer)


@SETTINGS
@given(requests(), st.data())
def test_damaged_requests_raise_only_wire_format_errors(request, data):
    input_type, inputs, uniform = request
    buffer = bytearray(encode_request(7, input_type, inputs, uniform))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(buffer) - 1))
        buffer[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buffer)))
    read_any(bytes(buffer[:cut]))
    read_any(bytes(buffer))


outputs_strategy = st.lists(st.text(max_size=40), max_size=140)  # past the vectorized path's 128


@SETTINGS
@given(outputs_strategy, st.integers(0, 2**64 - 1), st.booleans(), st.data())
def test_a_response_reads_back_as_written_by_either_encoder(outputs, batch_id, confident, data):
    confidences = None
    if confident and outputs:
        confidences = data.draw(
            st.lists(st.floats(0, 1), min_size=len(outputs), max_size=len(outputs))
        )
    header = (
        codec._confident_response_header(batch_id, len(outputs), confidences)
        if confidences
        else codec._RESPONSE_PREFIX + codec._RESPONSE_TAIL.pack(12, batch_id, len(outputs))
    )
    python_bytes = codec._encode_in_python(header, outputs)
    if codec._native_encode is not None:
        assert codec._native_encode(header, outputs) == python_bytes
    assert codec.encode_predict_response(batch_id, outputs, confidences) == python_bytes
    message = wire_message.Message.GetRootAs(python_bytes, 0)
    assert message.PayloadType() == codec.Payload.PredictResponse
    response = wire_predict_response.PredictResponse()
    response.Init(message.Payload().Bytes, message.Payload().Pos)
    assert response.BatchId() == batch_id
    assert [response.Outputs(i).decode("utf-8") for i in range(response.OutputsLength())] == outputs
    expected = [struct.unpack("<f", struct.pack("<f", c))[0] for c in confidences or []]
    assert [response.Confidences(i) for i in range(response.ConfidencesLength())] == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


@SETTINGS
@given(st.lists(json_values, max_size=8))
def test_outputs_become_one_string_each_that_reads_back_as_the_value(outputs):
    strings = codec.outputs_to_strings(outputs, len(outputs))
    assert len(strings) == len(outputs)
    for value, text in zip(outputs, strings, strict=True):
        assert isinstance(text, str)
        if isinstance(value, str):
            assert text == value
        else:
            assert json.loads(text) == value
    with pytest.raises(codec.OutputConversionError):
        codec.outputs_to_strings(outputs, len(outputs) + 1)


def strict_json(body):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(body.decode("utf-8"), parse_constant=refuse)


client_inputs = st.one_of(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=6).map(np.array),
    st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), max_size=6).map(
        lambda values: np.array(values, dtype=np.float32)
    ),
    st.lists(st.integers(-(2**31), 2**31 - 1), max_size=6).map(
        lambda v: np.array(v, dtype=np.int32)
    ),
    st.lists(st.integers(-(2**31), 2**31 - 1), max_size=6),
    st.binary(max_size=20),
    st.text(max_size=20),
)


def expected_json(value):
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


@SETTINGS
@given(client_inputs, st.none() | st.text(max_size=5), st.none() | st.integers(0, 2**63 - 1))
def test_the_clients_predict_body_carries_the_input_exactly(value, version, uid):
    body = strict_json(client._predict_body(value, version, uid))
    assert body["input"] == expected_json(value)
    if isinstance(value, bytes):
        assert base64.b64decode(body["input"], validate=True) == value
    assert body.get("version") == version and body.get("uid") == uid


@SETTINGS
@given(
    st.lists(client_inputs, max_size=4), st.integers(0, 2**63 - 1), st.floats(allow_infinity=False)
)
def test_the_clients_batch_and_update_bodies(values, uid, label):
    assert strict_json(client._predict_batch_body(values, None, None))["input_batch"] == [
        expected_json(value) for value in values
    ]
    for value in values[:1]:
        if math.isnan(label):
            with pytest.raises(ValueError):
                client._update_body(uid, value, label)
            continue
        update = strict_json(client._update_body(uid, value, label))
        assert update == {"uid": uid, "input": expected_json(value), "label": label}
