"""The native receive/reply path (clipper.container._native_codec) held to the pure-Python codec
(clipper.container.codec), the reference and the fallback: the same decoded values for every request,
the same WireFormatError (with the same batch id) for malformed ones, the same response bytes for
every model output, and never a read outside the message (hypothesis mutates real requests)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipper.container import Prediction, codec
from clipper.container.codec import InputType, OutputConversionError, WireFormatError

from .wire_frontend import aligned_copy, build_heartbeat_ack, build_predict_request

native = pytest.importorskip(
    "clipper.container._native_codec", reason="the container SDK's Cython extension clipper.container._native_codec is not built (pip install . builds it)"
)

TYPES = {
    "ints": InputType.INTS,
    "floats": InputType.FLOATS,
    "doubles": InputType.DOUBLES,
    "bytes": InputType.BYTES,
    "strings": InputType.STRINGS,
}
DTYPES = {"ints": np.int32, "floats": np.float32, "doubles": np.float64}


def python_decode(buffer: Any, input_type: InputType) -> codec.PredictBatch:
    payload_type, table = codec.read_message(buffer)
    assert payload_type == codec.Payload.PredictRequest
    return codec.decode_predict_request(buffer, table, input_type)


def native_decode(buffer: Any, input_type: InputType) -> codec.PredictBatch:
    payload_type, table = native.read_message(buffer)
    assert payload_type == codec.Payload.PredictRequest
    return native.decode_predict_request(buffer, table, int(input_type))


def assert_same_batch(expected: codec.PredictBatch, actual: codec.PredictBatch, received) -> None:
    assert type(actual) is codec.PredictBatch
    assert (actual.batch_id, actual.num_inputs) == (expected.batch_id, expected.num_inputs)
    if isinstance(expected.inputs, np.ndarray):
        assert isinstance(actual.inputs, np.ndarray)
        assert actual.inputs.dtype == expected.inputs.dtype
        assert actual.inputs.shape == expected.inputs.shape
        np.testing.assert_array_equal(actual.inputs, expected.inputs)
        assert actual.inputs.flags.aligned
        assert actual.inputs.flags.writeable == expected.inputs.flags.writeable
        assert np.shares_memory(actual.inputs, received) == np.shares_memory(
            expected.inputs, received
        )
        return
    assert isinstance(actual.inputs, list) and len(actual.inputs) == len(expected.inputs)
    for mine, theirs in zip(actual.inputs, expected.inputs):
        assert type(mine) is type(theirs)
        if isinstance(theirs, np.ndarray):
            assert mine.dtype == theirs.dtype and mine.shape == theirs.shape
            np.testing.assert_array_equal(mine, theirs)
            assert mine.flags.aligned
        else:
            assert mine == theirs


# --- requests ----------------------------------------------------------------------------------------


def numeric_values(kind: str) -> st.SearchStrategy:
    if kind == "ints":
        return st.integers(-(2**31), 2**31 - 1)
    width = 32 if kind == "floats" else 64
    return st.floats(width=width, allow_nan=False)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(sorted(TYPES)))
    batch_id = draw(st.integers(0, 2**64 - 1))
    if kind in DTYPES:
        if draw(st.booleans()):  # uniform
            rows, columns = draw(st.integers(0, 6)), draw(st.integers(0, 5))
            values = draw(st.lists(numeric_values(kind), min_size=rows * columns,
                                   max_size=rows * columns))  # fmt: skip
            inputs: Any = np.array(values, dtype=DTYPES[kind]).reshape(rows, columns)
        else:
            inputs = [
                np.array(row, dtype=DTYPES[kind])
                for row in draw(st.lists(st.lists(numeric_values(kind), max_size=4), max_size=5))
            ]
    elif kind == "bytes":
        inputs = draw(st.lists(st.binary(max_size=12), max_size=5))
    else:
        inputs = draw(st.lists(st.text(max_size=8), max_size=5))
    return kind, build_predict_request(batch_id, kind, inputs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.integers(0, 15))
def test_every_request_decodes_to_the_same_batch(request, misalign):
    kind, message = request
    received = aligned_copy(message, misalign)
    received.flags.writeable = False  # as a ZeroMQ frame or the ring's view is
    expected = python_decode(memoryview(received), TYPES[kind])
    assert_same_batch(expected, native_decode(memoryview(received), TYPES[kind]), received)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.data())
def test_a_corrupted_request_is_the_same_error_or_the_same_batch(request, data):
    """Flip, overwrite or cut bytes of a real request: the native decoder never reads outside the
    message and never fails in another way than WireFormatError; when the Python codec decodes the
    bytes to a batch, so does the native one, to the same batch."""
    kind, message = request
    corrupted = bytearray(message)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(corrupted) - 1))
        corrupted[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        corrupted = corrupted[: data.draw(st.integers(0, len(corrupted)))]
    received = bytes(corrupted)
    try:
        payload_type, table = native.read_message(received)
        native_result: Any = (
            native.decode_predict_request(received, table, int(TYPES[kind]))
            if payload_type == codec.Payload.PredictRequest
            else payload_type
        )
    except WireFormatError as exc:
        native_result = exc
    try:
        payload_type, table = codec.read_message(received)
        python_result: Any = (
            codec.decode_predict_request(received, table, TYPES[kind])
            if payload_type == codec.Payload.PredictRequest
            else payload_type
        )
    except (WireFormatError, IndexError, OverflowError, MemoryError) as exc:
        # struct reads negative positions from the end, numpy may refuse a size: the Python
        # codec's only guarantee on garbage is not crashing the replica.
        python_result = exc
    if isinstance(python_result, codec.PredictBatch):
        assert isinstance(native_result, codec.PredictBatch), native_result
        assert_same_batch(python_result, native_result, np.frombuffer(received, np.uint8))
    elif (
        isinstance(python_result, WireFormatError)
        and python_result.batch_id is not None
        and isinstance(native_result, WireFormatError)
    ):
        assert native_result.batch_id == python_result.batch_id


def test_a_short_or_empty_buffer_is_a_wire_format_error():
    for message in (b"", b"\x01", b"\xff\xff\xff\x7f"):
        with pytest.raises(WireFormatError):
            native.read_message(message)


def test_errors_name_the_problem_and_the_batch_like_the_python_codec():
    cases = [
        (build_predict_request(41, "doubles", np.ones((2, 2))), InputType.FLOATS),
        (build_predict_request(42, "strings", [b"\xff\xfe", "ok"]), InputType.STRINGS),
    ]
    for message, input_type in cases:
        with pytest.raises(WireFormatError) as python_error:
            python_decode(message, input_type)
        with pytest.raises(WireFormatError) as native_error:
            native_decode(message, input_type)
        assert str(native_error.value) == str(python_error.value)
        assert native_error.value.batch_id == python_error.value.batch_id


# --- responses ---------------------------------------------------------------------------------------

plain_outputs = st.one_of(
    st.text(max_size=10),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.binary(max_size=4).filter(lambda b: b.isascii()),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(0, 9), max_size=2),
)
outputs_strategy = st.lists(
    st.one_of(
        plain_outputs,
        st.builds(Prediction, plain_outputs, st.floats(0.0, 1.0)),
    ),
    max_size=12,
)


def python_answer(outputs: Any, count: int, batch_id: int) -> bytes:
    strings, confidences = codec.convert_outputs(outputs, count)
    return codec.encode_predict_response_in_python(batch_id, strings, confidences)


def native_answer(outputs: Any, count: int, batch_id: int, input_type: str = "doubles") -> Any:
    inputs = np.zeros((count, 1)) if input_type == "doubles" else ["x"] * count
    request = build_predict_request(batch_id, input_type, inputs)
    seen: list[Any] = []

    def predict_batch(batch_inputs: Any) -> Any:
        seen.append(batch_inputs)
        return outputs

    reply = native.answer(request, predict_batch, int(TYPES[input_type]), None)
    assert len(seen) == (1 if count else 0)
    return reply


@settings(max_examples=400, deadline=None)
@given(outputs_strategy, st.integers(0, 2**64 - 1), st.sampled_from(["list", "tuple"]))
def test_every_output_list_encodes_to_the_python_codecs_bytes(outputs, batch_id, container):
    outputs = tuple(outputs) if container == "tuple" else outputs
    if not outputs:
        return  # an empty batch is not handed to predict_batch (below)
    assert native_answer(outputs, len(outputs), batch_id) == python_answer(
        outputs, len(outputs), batch_id
    )


@pytest.mark.parametrize(
    "array",
    [
        np.arange(5, dtype=np.int64) - 2,
        np.arange(4, dtype=np.uint8),
        np.linspace(-1, 1, 7),
        np.array([0.5, math.nan, math.inf], dtype=np.float32),
        np.array([True, False]),
        np.arange(6.0).reshape(3, 2),
        np.array(["a", "bc"], dtype=object),
        np.array([Prediction(1, 0.25), Prediction("x", 1.0)], dtype=object),
    ],
)
def test_array_outputs_encode_to_the_python_codecs_bytes(array):
    assert native_answer(array, len(array), 9) == python_answer(array, len(array), 9)


def test_an_empty_batch_is_answered_without_calling_the_model():
    reply = native_answer([], 0, 5, input_type="strings")
    assert reply == codec.encode_predict_response_in_python(5, [])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(), max_size=20),
    st.integers(0, 2**64 - 1),
    st.booleans(),
    st.data(),
)
def test_encode_predict_response_writes_the_same_bytes(outputs, batch_id, confident, data):
    confidences = None
    if confident and outputs:
        confidences = data.draw(
            st.lists(st.floats(0, 1), min_size=len(outputs), max_size=len(outputs))
        )
    expected = codec.encode_predict_response_in_python(batch_id, outputs, confidences)
    assert native.encode_predict_response(batch_id, outputs, confidences) == expected


@pytest.mark.parametrize(
    ("outputs", "cause"),
    [
        ([1.0], OutputConversionError),  # one output for two inputs
        ([Prediction(1, 1.5), 2], OutputConversionError),  # confidence out of range
        ("ab", OutputConversionError),  # a str is not a list of outputs
        (["\ud800", "ok"], UnicodeEncodeError),  # not encodable as UTF-8
    ],
)
def test_unsendable_outputs_fail_the_batch_with_their_cause(outputs, cause):
    with pytest.raises(native.PredictFailed) as failed:
        native_answer(outputs, 2, 77)
    assert (failed.value.batch_id, failed.value.num_inputs) == (77, 2)
    assert isinstance(failed.value.__cause__, cause)


def test_a_model_exception_fails_the_batch_with_the_exception_as_cause():
    def predict_batch(inputs: Any) -> Any:
        raise KeyError("missing feature")

    request = build_predict_request(3, "doubles", np.ones((4, 2)))
    with pytest.raises(native.PredictFailed) as failed:
        native.answer(request, predict_batch, int(InputType.DOUBLES), None)
    assert (failed.value.batch_id, failed.value.num_inputs) == (3, 4)
    assert isinstance(failed.value.__cause__, KeyError)


def test_other_messages_and_malformed_requests_are_left_to_the_python_path():
    def predict_batch(inputs: Any) -> Any:
        raise AssertionError("not a batch to answer")

    wrong_type = build_predict_request(3, "doubles", np.ones((1, 2)))
    for message, input_type in (
        (build_heartbeat_ack(True), InputType.DOUBLES),
        (wrong_type, InputType.STRINGS),
        (b"\x00\x00", InputType.DOUBLES),
    ):
        assert native.answer(message, predict_batch, int(input_type), None) is NotImplemented


def test_the_model_receives_a_read_only_view_of_the_received_message():
    values = np.arange(12.0).reshape(4, 3)
    received = aligned_copy(build_predict_request(1, "doubles", values))
    received.flags.writeable = False  # as a ZeroMQ frame or the ring's view is
    seen: list[np.ndarray] = []

    def predict_batch(inputs: np.ndarray) -> list[float]:
        seen.append(inputs)
        return inputs.sum(axis=1).tolist()

    reply = native.answer(memoryview(received), predict_batch, int(InputType.DOUBLES), None)
    assert np.shares_memory(seen[0], received) and not seen[0].flags.writeable
    np.testing.assert_array_equal(seen[0], values)
    assert reply == codec.encode_predict_response_in_python(1, ["3.0", "12.0", "21.0", "30.0"])


# --- numeric inputs: numpy's C API, with np.ndarray's flags and base ---------------------------------

FLAGS = ("c_contiguous", "f_contiguous", "owndata", "writeable", "aligned", "writebackifcopy")


def flags_of(array: np.ndarray) -> dict[str, bool]:
    return {name: getattr(array.flags, name) for name in FLAGS}


def offset_in(array: np.ndarray, received: np.ndarray) -> int:
    return array.ctypes.data - received.ctypes.data


@pytest.mark.parametrize("kind", sorted(DTYPES))
@pytest.mark.parametrize("writable", [True, False])
@pytest.mark.parametrize("shape", [(3, 4), (1, 10), (0, 5), (4, 0)])
def test_a_uniform_batch_is_what_np_ndarray_makes_of_the_received_buffer(kind, writable, shape):
    """The inputs made in C have what np.ndarray(shape, dtype, buffer, offset) gives them (the code
    they replace): the same flags, writable only when the buffer is, and the buffer's owner (a
    memoryview's object) as their base."""
    values = np.arange(int(np.prod(shape)), dtype=DTYPES[kind]).reshape(shape)
    received = aligned_copy(build_predict_request(5, kind, values))
    received.flags.writeable = writable
    buffer = memoryview(received)
    inputs = native_decode(buffer, TYPES[kind]).inputs
    reference = np.ndarray(shape, np.dtype(DTYPES[kind]), buffer, offset_in(inputs, received))
    np.testing.assert_array_equal(inputs, values)
    assert flags_of(inputs) == flags_of(reference)
    assert inputs.flags.writeable == writable
    # numpy takes the owner of received's memory (the array it slices) as the base of both.
    assert inputs.base is reference.base is received.base
    assert inputs.dtype == reference.dtype and inputs.strides == reference.strides


@pytest.mark.parametrize("kind", sorted(DTYPES))
@pytest.mark.parametrize("writable", [True, False])
@pytest.mark.parametrize("misalign", [0, 1])
def test_ragged_inputs_are_what_slicing_one_view_of_the_values_makes(kind, writable, misalign):
    rows = [np.arange(n, dtype=DTYPES[kind]) + 10 * n for n in (3, 0, 1, 5)]
    received = aligned_copy(build_predict_request(6, kind, rows), misalign)
    received.flags.writeable = writable
    buffer = memoryview(received)
    inputs = native_decode(buffer, TYPES[kind]).inputs
    for mine, expected in zip(inputs, rows):
        np.testing.assert_array_equal(mine, expected)
    if misalign:  # an unaligned message: the values were copied once, into an array of their own
        owner = inputs[0].base
        assert owner.flags.owndata and not np.shares_memory(owner, received)
        assert all(row.base is owner and flags_of(row) == flags_of(owner[0:3]) for row in inputs)
        return
    # The code replaced: one np.ndarray over all the values, sliced per input.
    dtype = np.dtype(DTYPES[kind])
    total = sum(len(row) for row in rows)
    values = np.ndarray((total,), dtype, buffer, offset_in(inputs[0], received))
    bounds = np.cumsum([0] + [len(row) for row in rows])
    for mine, low, high in zip(inputs, bounds[:-1], bounds[1:]):
        reference = values[low:high]
        assert np.shares_memory(mine, received) or mine.size == 0
        assert mine.base is reference.base and flags_of(mine) == flags_of(reference)
        assert mine.size == 0 or mine.ctypes.data == reference.ctypes.data
        assert mine.flags.writeable == writable


def test_an_unaligned_uniform_batch_is_copied_into_an_array_of_its_own():
    values = np.arange(6.0).reshape(2, 3)
    received = aligned_copy(build_predict_request(7, "doubles", values), misalign=4)
    received.flags.writeable = False
    inputs = native_decode(memoryview(received), InputType.DOUBLES).inputs
    np.testing.assert_array_equal(inputs, values)
    assert inputs.flags.owndata and inputs.flags.aligned and inputs.flags.writeable
    assert not np.shares_memory(inputs, received)


def test_the_inputs_keep_the_received_bytes_alive():
    """A model may keep its inputs: they hold the buffer they view, whatever the caller drops."""
    import gc

    values = np.arange(20.0).reshape(4, 5)

    def decoded() -> np.ndarray:
        message = bytes(build_predict_request(8, "doubles", values))
        return native_decode(message, InputType.DOUBLES).inputs

    inputs = decoded()
    gc.collect()
    garbage = [bytes(range(256)) * 8 for _ in range(1000)]  # reuse any freed memory
    assert type(inputs.base) is bytes and not inputs.flags.writeable
    np.testing.assert_array_equal(inputs, values)
    del garbage
