"""Translation between the model RPC wire format (`cpp/rpc/model_rpc.fbs`) and Python values.

Owns decoding `PredictRequest`s into model inputs, converting model outputs to strings (and reported
`Prediction`s to strings and confidences), and encoding every message a replica sends; it owns no sockets and no threads. The serving loop (server.py) calls it
on its main thread; the heartbeat thread calls the heartbeat helpers with its own builder.

Zero-copy: a numeric batch is a numpy view of the received buffer whenever the tensor sits at an address
aligned to its element size, which libzmq gives messages of 8 KiB and more (the flatbuffer places `data`
16-byte aligned from its start). Smaller messages live at arbitrary offsets inside libzmq's receive
buffer; those are copied once into an aligned array: a copy of under 8 KiB costs well under a
microsecond and spares models unaligned arrays, which numpy handles slowly and some C extensions reject.
"""

from __future__ import annotations

import enum
import itertools
import json
import math
import numbers
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

import flatbuffers
import numpy as np

from clipper.container.model import Prediction
from clipper.wire import Heartbeat as wire_heartbeat
from clipper.wire import Message as wire_message
from clipper.wire import PredictResponse as wire_predict_response
from clipper.wire import Register as wire_register
from clipper.wire import container_defaults
from clipper.wire.Payload import Payload

try:  # the wheel's C encoder of the same layout; absent when the SDK runs from a bare source tree
    from clipper_native._wire import encode_string_vector_message as _native_encode
except ImportError:  # pragma: no cover - exercised where the native build is missing
    _native_encode = None

try:  # the SDK's native receive/reply path (Cython); bound to this module's types at the end
    from clipper.container import _native_codec as native
except ImportError:  # pragma: no cover - exercised where the extension is not built
    native = None  # type: ignore[assignment]

__all__ = [
    "MAX_ERROR_CHARS",
    "NATIVE_AVAILABLE",
    "InputType",
    "OutputConversionError",
    "Payload",
    "PredictBatch",
    "WireFormatError",
    "convert_outputs",
    "decode_heartbeat_ack",
    "decode_predict_request",
    "encode_heartbeat",
    "encode_predict_error",
    "encode_predict_response",
    "encode_register",
    "outputs_to_strings",
    "parse_input_type",
    "read_message",
]

# Errors longer than this are cut before they are sent: the frontend writes a model's error text to its
# log under an error_id and answers queries with that id only, so this bounds one log line.
MAX_ERROR_CHARS = 4096


class InputType(enum.IntEnum):
    """A model's input type; the values are the wire enum's (`clipper.wire.InputType`)."""

    BYTES = 0
    INTS = 1
    FLOATS = 2
    DOUBLES = 3
    STRINGS = 4

    @property
    def wire_name(self) -> str:
        """The canonical name used in configuration and the REST API (`doubles`, `strings`, ...)."""
        return self.name.lower()


# The aliases the engine accepts, from the same source (src/clipper_native/defaults.json), so one
# spelling works everywhere.
_INPUT_TYPE_ALIASES: dict[str, InputType] = {
    alias: InputType[name.upper()] for alias, name in container_defaults.INPUT_TYPE_ALIASES.items()
}

# Little-endian on the wire, whatever the host.
_NUMPY_DTYPES: dict[InputType, np.dtype] = {
    InputType.INTS: np.dtype("<i4"),
    InputType.FLOATS: np.dtype("<f4"),
    InputType.DOUBLES: np.dtype("<f8"),
}


def parse_input_type(value: str | int | InputType) -> InputType:
    """Returns the InputType named by `value` (a name or alias such as "doubles"/"d", or a wire value).

    Raises ValueError naming the accepted spellings.
    """
    if isinstance(value, InputType):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return InputType(value)
        except ValueError:
            pass
    elif isinstance(value, str):
        found = _INPUT_TYPE_ALIASES.get(value.strip().lower())
        if found is not None:
            return found
    raise ValueError(
        f"unknown input type {value!r}: use one of bytes, ints, floats, doubles, strings"
    )


class WireFormatError(ValueError):
    """A received message does not follow model_rpc.fbs. `batch_id` is set when the batch is known, so
    the replica can still answer it with an error."""

    def __init__(self, message: str, batch_id: int | None = None) -> None:
        super().__init__(message)
        self.batch_id = batch_id


class OutputConversionError(ValueError):
    """predict_batch returned something that cannot be sent as one string per input, or a Prediction
    whose confidence is not a finite number in [0, 1]."""


class PredictBatch(NamedTuple):
    """One decoded PredictRequest."""

    batch_id: int
    num_inputs: int
    # 2-D ndarray (uniform numeric), list of 1-D ndarrays (ragged numeric), list[bytes] or list[str].
    inputs: Any


# ---------------------------------------------------------------------------------------------------
# Receiving
#
# The hot path reads the flatbuffer directly with `struct` rather than through the generated accessors:
# those cost about 1.3 microseconds per field, which added up to 16 of a request's 18 microseconds of
# decoding. The format is flatbuffers' stable binary layout: a table starts with an int32 offset back to
# its vtable; the vtable holds uint16 sizes then one uint16 position per field (0 = absent, use default);
# a vector or string field holds a uint32 offset to a uint32 length followed by the elements. Field
# numbers are the schema's declaration order (a union takes two: its type, then its value).
# ---------------------------------------------------------------------------------------------------

_read_u8 = struct.Struct("<B").unpack_from
_read_i8 = struct.Struct("<b").unpack_from
_read_u16 = struct.Struct("<H").unpack_from
_read_i32 = struct.Struct("<i").unpack_from
_read_u32 = struct.Struct("<I").unpack_from
_read_u64 = struct.Struct("<Q").unpack_from
_PACK_U32 = struct.Struct("<I").pack
_VTABLE_READERS = {count: struct.Struct(f"<{count}H").unpack_from for count in range(1, 8)}

# A request without a data vector: read-only like every view of a received message (and like the
# native decoder's, which views the message even then).
_EMPTY_BYTES = np.zeros(0, dtype=np.uint8)
_EMPTY_BYTES.flags.writeable = False


def _field_positions(buffer: Any, table: int, field_count: int) -> tuple[int, ...]:
    """Absolute position of each of a table's first `field_count` fields; 0 for an absent field."""
    vtable = table - _read_i32(buffer, table)[0]
    if vtable < 0:  # struct would read it from the buffer's end
        raise ValueError(f"a vtable at {vtable}, before the message's start")
    present = min(field_count, (_read_u16(buffer, vtable)[0] - 4) // 2)
    relative = _VTABLE_READERS[present](buffer, vtable + 4) if present > 0 else ()
    return tuple(table + at if at else 0 for at in relative) + (0,) * (field_count - present)


def _vector(buffer: Any, field: int, dtype: Any) -> np.ndarray | None:
    """A zero-copy ndarray over the vector stored at `field`, or None when the field is absent."""
    if not field:
        return None
    start = field + _read_u32(buffer, field)[0]
    return np.frombuffer(buffer, dtype=dtype, count=_read_u32(buffer, start)[0], offset=start + 4)


def read_message(buffer: Any) -> tuple[int, int]:
    """Returns (payload type, payload table position) of one `Message`. `buffer` is anything with the
    buffer protocol (a zmq.Frame's `.buffer`, bytes, ...) and is never copied. Compare the type with
    `Payload.PredictRequest` etc.; the position feeds decode_predict_request / decode_heartbeat_ack.

    Raises WireFormatError when the bytes are not a Message.
    """
    try:
        root = _read_u32(buffer, 0)[0]
        payload_type_field, payload_field = _field_positions(buffer, root, 2)
        if not payload_type_field or not payload_field:
            return Payload.NONE, 0
        payload_type = _read_u8(buffer, payload_type_field)[0]
        return payload_type, payload_field + _read_u32(buffer, payload_field)[0]
    except (struct.error, KeyError, ValueError) as exc:
        raise WireFormatError(f"not a clipper.wire.Message ({type(exc).__name__}: {exc})") from exc


def decode_heartbeat_ack(buffer: Any, table: int) -> bool:
    """Returns `registered` of the HeartbeatAck at `table` (see read_message)."""
    try:
        (registered_field,) = _field_positions(buffer, table, 1)
        return bool(registered_field and _read_u8(buffer, registered_field)[0])
    except (struct.error, KeyError, ValueError) as exc:
        raise WireFormatError(f"unreadable HeartbeatAck ({type(exc).__name__}: {exc})") from exc


def decode_predict_request(buffer: Any, table: int, expected_input_type: InputType) -> PredictBatch:
    """Decodes the PredictRequest at `table` (see read_message) into the inputs predict_batch receives:

    - numeric, uniform: one (num_inputs, row_length) ndarray viewing the request's `data`;
    - numeric, ragged: a list of 1-D ndarrays, views of one array over `data`;
    - bytes: a list of `bytes`; strings: a list of `str` (UTF-8).

    Raises WireFormatError (with `batch_id` set when readable) when the request is inconsistent or
    carries another input type than the model registered with.
    """
    try:
        batch_id_at, type_at, count_at, row_at, offsets_at, data_at = _field_positions(
            buffer, table, 6
        )
        batch_id = _read_u64(buffer, batch_id_at)[0] if batch_id_at else 0
    except (struct.error, KeyError, ValueError) as exc:
        raise WireFormatError(f"unreadable PredictRequest ({type(exc).__name__}: {exc})") from exc
    try:
        wire_type = _read_i8(buffer, type_at)[0] if type_at else 0
        if wire_type != expected_input_type:
            raise WireFormatError(
                f"the batch holds input type {_type_name(wire_type)} but this replica serves "
                f"{expected_input_type.wire_name}"
            )
        num_inputs = _read_u32(buffer, count_at)[0] if count_at else 0
        data = _vector(buffer, data_at, np.uint8)
        if data is None:
            data = _EMPTY_BYTES
        offsets = _vector(buffer, offsets_at, "<u8")
        if offsets is not None and offsets.size == 0:
            offsets = None
        dtype = _NUMPY_DTYPES.get(expected_input_type)
        if dtype is not None:
            if offsets is None:
                row_length = _read_u32(buffer, row_at)[0] if row_at else 0
                inputs: Any = _uniform_tensor(data, dtype, num_inputs, row_length)
            else:
                inputs = _ragged_tensors(data, dtype, num_inputs, offsets)
        else:
            bounds = _byte_bounds(data, num_inputs, offsets)
            blob = data.tobytes()
            if expected_input_type is InputType.BYTES:
                inputs = [blob[start:end] for start, end in itertools.pairwise(bounds)]
            else:
                inputs = _split_utf8(blob, bounds)
    except WireFormatError as exc:
        exc.batch_id = batch_id
        raise
    except (struct.error, ValueError) as exc:
        raise WireFormatError(
            f"unreadable PredictRequest ({type(exc).__name__}: {exc})", batch_id
        ) from exc
    return PredictBatch(batch_id, num_inputs, inputs)


def _type_name(wire_type: int) -> str:
    try:
        return InputType(wire_type).wire_name
    except ValueError:
        return f"<unknown {wire_type}>"


def _aligned(array: np.ndarray) -> np.ndarray:
    # Unaligned views work in numpy but are slow and trip some C extensions; see the module docstring.
    return array if array.flags.aligned else array.copy()


def _uniform_tensor(
    data: np.ndarray, dtype: np.dtype, num_inputs: int, row_length: int
) -> np.ndarray:
    expected = num_inputs * row_length * dtype.itemsize
    if data.size != expected:
        raise WireFormatError(
            f"uniform batch of {num_inputs} x {row_length} {dtype.name} needs {expected} data bytes, "
            f"got {data.size}"
        )
    return _aligned(data.view(dtype).reshape(num_inputs, row_length))


def _ragged_tensors(
    data: np.ndarray, dtype: np.dtype, num_inputs: int, offsets: np.ndarray
) -> list[np.ndarray]:
    bounds = _byte_bounds(data, num_inputs, offsets)
    itemsize = dtype.itemsize
    if any(bound % itemsize for bound in bounds):  # the last bound is data.size
        raise WireFormatError(
            f"ragged batch offsets must be multiples of the {itemsize}-byte {dtype.name} element"
        )
    values = _aligned(data.view(dtype))
    elements = [bound // itemsize for bound in bounds]
    return [values[start:end] for start, end in itertools.pairwise(elements)]


def _byte_bounds(data: np.ndarray, num_inputs: int, offsets: np.ndarray | None) -> list[int]:
    """Validated offsets as Python ints: num_inputs + 1 non-decreasing positions from 0 to data.size."""
    if offsets is None:
        if num_inputs == 0 and data.size == 0:
            return [0]
        raise WireFormatError(f"a batch of {num_inputs} variable-length inputs carries no offsets")
    if offsets.size != num_inputs + 1:
        raise WireFormatError(
            f"a batch of {num_inputs} inputs needs {num_inputs + 1} offsets, got {offsets.size}"
        )
    if offsets[0] != 0 or offsets[-1] != data.size or (np.diff(offsets.astype(np.int64)) < 0).any():
        raise WireFormatError(
            f"offsets must rise from 0 to the data length {data.size}; got {offsets[0]}..{offsets[-1]}"
        )
    return offsets.tolist()


def _split_utf8(blob: bytes, bounds: list[int]) -> list[str]:
    pairs = itertools.pairwise(bounds)
    if blob.isascii():  # byte offsets are character offsets: decode once, slice the str
        text = blob.decode("ascii")
        return [text[start:end] for start, end in pairs]
    try:
        return [blob[start:end].decode("utf-8") for start, end in pairs]
    except UnicodeDecodeError as exc:
        raise WireFormatError(f"a strings input is not valid UTF-8 ({exc})") from exc


# ---------------------------------------------------------------------------------------------------
# Model outputs -> strings
# ---------------------------------------------------------------------------------------------------


class _ReportsConfidence(Exception):
    """_value_to_string met a Prediction: the batch is converted again by _split_predictions. Batches
    without Predictions thus pay nothing for confidences (the check sits after the str, float and int
    cases, and a Prediction, being a tuple, would otherwise become a JSON list)."""


def convert_outputs(outputs: Any, expected_count: int) -> tuple[list[str], list[float] | None]:
    """Converts predict_batch's return value to one string per input and, when the model returned any
    `Prediction`, one confidence per input (1.0 for a bare output); None when it returned none.

    Each output becomes a string as outputs_to_strings describes. Raises OutputConversionError when
    `outputs` is not a sequence of `expected_count` values, a `bytes` output is not UTF-8, or a
    confidence is not a finite number in [0, 1] (the message names the output's index and the value).
    """
    if isinstance(outputs, np.ndarray):
        if outputs.ndim == 0:
            raise OutputConversionError(
                "predict_batch returned a 0-d array; return one output per input"
            )
        _check_count(len(outputs), expected_count)
        try:
            return _array_rows_to_strings(outputs), None
        except _ReportsConfidence:  # an object array holding Predictions
            return _split_predictions(outputs.tolist())
    if outputs is None or isinstance(outputs, (str, bytes, bytearray, memoryview, dict)):
        raise OutputConversionError(
            f"predict_batch must return a list with one output per input, got {type(outputs).__name__}"
        )
    if not isinstance(outputs, Sequence):
        try:
            outputs = list(outputs)  # a generator is read once, here
        except TypeError:
            raise OutputConversionError(
                "predict_batch must return a list with one output per input, "
                f"got {type(outputs).__name__}"
            ) from None
    _check_count(len(outputs), expected_count)
    try:
        return [value if type(value) is str else _value_to_string(value) for value in outputs], None
    except _ReportsConfidence:
        return _split_predictions(outputs)


def outputs_to_strings(outputs: Any, expected_count: int) -> list[str]:
    """Converts predict_batch's return value to one string per input (a Prediction's confidence is
    checked, then dropped: convert_outputs keeps it).

    `str` stays as is, `bytes` is decoded as UTF-8, numpy scalars and arrays and other JSON-able values
    become JSON (`json.dumps`; arrays via `.tolist()`), anything else `str(value)`.

    Raises OutputConversionError when `outputs` is not a sequence of `expected_count` values, or a
    `bytes` output is not UTF-8.
    """
    return convert_outputs(outputs, expected_count)[0]


def _check_count(actual: int, expected: int) -> None:
    if actual != expected:
        raise OutputConversionError(
            f"predict_batch returned {actual} outputs for a batch of {expected} inputs"
        )


def _split_predictions(outputs: Sequence[Any]) -> tuple[list[str], list[float]]:
    strings: list[str] = []
    confidences: list[float] = []
    for index, value in enumerate(outputs):
        if isinstance(value, Prediction):
            output, confidence = value
            if isinstance(output, Prediction):
                raise OutputConversionError(
                    f"output {index} is a Prediction whose output is itself a Prediction; "
                    "return Prediction(output, confidence) with a plain output"
                )
            if type(confidence) is not float or not 0.0 <= confidence <= 1.0:
                confidence = _checked_confidence(index, confidence)
            confidences.append(confidence)
        else:
            output = value
            confidences.append(1.0)
        strings.append(output if type(output) is str else _value_to_string(output))
    return strings, confidences


def _checked_confidence(index: int, confidence: Any) -> float:
    if isinstance(confidence, (bool, np.bool_)) or not isinstance(confidence, numbers.Real):
        raise OutputConversionError(
            f"output {index} reports the confidence {confidence!r}, which is not a number; "
            "a confidence is a number from 0 to 1"
        )
    number = float(confidence)
    if not 0.0 <= number <= 1.0:  # also refuses NaN
        raise OutputConversionError(
            f"output {index} reports the confidence {number!r}; "
            "a confidence must be a finite number from 0 to 1"
        )
    return number


def _array_rows_to_strings(array: np.ndarray) -> list[str]:
    kind = array.dtype.kind
    if array.ndim == 1:
        if kind in "iu":
            return list(map(str, array.tolist()))
        if kind == "f" and np.isfinite(array).all():
            # repr(float) is exactly what json.dumps writes for a finite float.
            return list(map(repr, array.tolist()))
        if kind == "b":
            return ["true" if value else "false" for value in array.tolist()]
    elif kind in "iufb":
        return [json.dumps(row) for row in array.tolist()]
    return [_value_to_string(value) for value in array.tolist()]


def _value_to_string(value: Any) -> str:
    if isinstance(value, str):
        return str(value)
    if type(value) is float and math.isfinite(value):
        return repr(value)  # what json.dumps writes, minus its overhead
    if type(value) is int:
        return str(value)
    if isinstance(value, Prediction):
        raise _ReportsConfidence
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise OutputConversionError(f"a bytes output is not valid UTF-8 ({exc})") from exc
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    try:
        return json.dumps(value, default=_numpy_to_json)
    except (TypeError, ValueError):
        return str(value)


def _numpy_to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# ---------------------------------------------------------------------------------------------------
# Sending
# ---------------------------------------------------------------------------------------------------


def _finish_message(builder: flatbuffers.Builder, payload_type: int, payload: int) -> bytearray:
    wire_message.Start(builder)
    wire_message.AddPayloadType(builder, payload_type)
    wire_message.AddPayload(builder, payload)
    builder.Finish(wire_message.End(builder))
    return builder.Output()


def encode_register(
    builder: flatbuffers.Builder,
    model_name: str,
    model_version: str,
    input_type: InputType,
    replica_id: int = -1,
    shared_memory: bool = False,
) -> bytearray:
    """Returns a Message{Register}. `builder` is cleared first and may be reused afterwards.
    `shared_memory`: the replica can serve over shared-memory rings (clipper.container.shm_client)."""
    builder.Clear()
    name = builder.CreateString(model_name)
    version = builder.CreateString(model_version)
    wire_register.Start(builder)
    wire_register.AddModelName(builder, name)
    wire_register.AddModelVersion(builder, version)
    wire_register.AddInputType(builder, int(input_type))
    wire_register.AddReplicaId(builder, replica_id)
    wire_register.AddProtocolVersion(builder, 1)
    if shared_memory:
        wire_register.AddSharedMemory(builder, True)
    return _finish_message(builder, Payload.Register, wire_register.End(builder))


def encode_heartbeat(builder: flatbuffers.Builder, replica_key: str) -> bytearray:
    """Returns a Message{Heartbeat{replica_key}}."""
    builder.Clear()
    key = builder.CreateString(replica_key)
    wire_heartbeat.Start(builder)
    wire_heartbeat.AddReplicaKey(builder, key)
    return _finish_message(builder, Payload.Heartbeat, wire_heartbeat.End(builder))


def encode_predict_error(builder: flatbuffers.Builder, batch_id: int, error: str) -> bytearray:
    """Returns a Message{PredictResponse{batch_id, error}} (no outputs); `error` is cut to
    MAX_ERROR_CHARS characters."""
    builder.Clear()
    if len(error) > MAX_ERROR_CHARS:
        error = error[: MAX_ERROR_CHARS - 3] + "..."
    text = builder.CreateString(error or "unknown error")
    wire_predict_response.Start(builder)
    wire_predict_response.AddBatchId(builder, batch_id)
    wire_predict_response.AddError(builder, text)
    return _finish_message(builder, Payload.PredictResponse, wire_predict_response.End(builder))


# A Message{PredictResponse{batch_id, outputs}} laid out by hand, front to back, so that answering a batch
# is one struct.pack plus the strings (the generic Builder spends about 18 microseconds on a one-output
# response). Positions are from the buffer's start; every scalar sits at a multiple of its size.
#    0  uint32   root offset -> Message table at 12
#    4  vtable   Message: size 8, table size 12, payload_type at +8, payload at +4
#   12  table    Message: int32 12-4=8 (to its vtable), uint32 payload offset 32-16=16, uint8 type, 3 pad
#   24  vtable   PredictResponse: size 8, table size 16, batch_id at +8, outputs at +4 (error absent)
#   32  table    PredictResponse: int32 32-24=8, uint32 outputs offset 48-36=12, uint64 batch_id
#   48  [string] outputs: uint32 count, then one uint32 offset per string (element j at 52 + 4j)
#   52 + 4 count: the strings, each uint32 length, UTF-8 bytes, NUL, zero padding to a multiple of 4.
# Element j points at 52 + 4 count + start_j, so it holds start_j + 4 (count - j).
# Everything up to the PredictResponse table's outputs offset is the same in every response.
_RESPONSE_PREFIX = struct.pack(
    "<I4HiIB3x4Hi", 12, 8, 12, 8, 4, 8, 16, Payload.PredictResponse, 8, 16, 8, 4, 8
)
_RESPONSE_TAIL = struct.Struct("<IQI")  # outputs offset 12, batch_id, outputs count
# With confidences (n = count), the same message grows the confidences field and vector, placed before
# the outputs so that the [string] vector is still the message's tail (all the native encoder writes):
#   12  table    Message: as above, but payload offset 36-16=20
#   24  vtable   PredictResponse: size 12, table size 20, batch_id at +12, outputs at +4, error absent,
#                confidences at +8
#   36  table    PredictResponse: int32 36-24=12, uint32 outputs offset (60+4n)-40=20+4n,
#                uint32 confidences offset 56-44=12, uint64 batch_id (at 48)
#   56  [float]  confidences: uint32 n, then n little-endian float32
#   60 + 4n      [string] outputs, laid out as above
# Without confidences nothing of this is written: a batch that reports none costs what it always did.
_CONFIDENT_RESPONSE_PREFIX = struct.pack(
    "<I4HiIB3x6Hi", 12, 8, 12, 8, 4, 8, 20, Payload.PredictResponse, 12, 20, 12, 4, 0, 8, 12
)
# outputs offset 20 + 4n, confidences offset 12, batch_id, confidences count
_CONFIDENT_RESPONSE_TAIL = struct.Struct("<IIQI")
_NUL_AND_PADDING = (b"\0\0\0\0", b"\0\0\0", b"\0\0", b"\0")  # indexed by length % 4
# Below this many outputs a Python loop beats numpy's per-call overhead.
_VECTORIZE_MIN_OUTPUTS = 128


def encode_predict_response(
    batch_id: int, outputs: list[str], confidences: Sequence[float] | None = None
) -> bytes:
    """Returns a Message{PredictResponse{batch_id, outputs, confidences}} (see the layout above); the
    C++ side reads it like any other flatbuffer. `confidences`, one float in [0, 1] per output as
    convert_outputs returns them, is written only when given and not empty. Uses the native encoder
    shipped with the wheel when it is there (same bytes, ~10x faster), else the Python one."""
    if confidences:
        header = _confident_response_header(batch_id, len(outputs), confidences)
    else:
        header = _RESPONSE_PREFIX + _RESPONSE_TAIL.pack(12, batch_id, len(outputs))
    if _native_encode is not None and type(outputs) is list:
        return _native_encode(header, outputs)
    return _encode_in_python(header, outputs)


def encode_predict_response_in_python(
    batch_id: int, outputs: list[str], confidences: Sequence[float] | None = None
) -> bytes:
    """encode_predict_response without any native encoder: the reference the native ones are held to."""
    if confidences:
        header = _confident_response_header(batch_id, len(outputs), confidences)
    else:
        header = _RESPONSE_PREFIX + _RESPONSE_TAIL.pack(12, batch_id, len(outputs))
    return _encode_in_python(header, outputs)


def _confident_response_header(batch_id: int, count: int, confidences: Sequence[float]) -> bytes:
    if len(confidences) != count:
        raise ValueError(f"{len(confidences)} confidences for {count} outputs; give one per output")
    # struct rounds each to the nearest float32 (what a C cast does); 3x faster than array.array here.
    floats = struct.pack(f"<{count}f", *confidences)
    tail = _CONFIDENT_RESPONSE_TAIL.pack(20 + 4 * count, 12, batch_id, count)
    return b"".join((_CONFIDENT_RESPONSE_PREFIX, tail, floats, _PACK_U32(count)))


def _encode_in_python(header: bytes, outputs: Sequence[str]) -> bytes:
    encoded = [text.encode("utf-8") for text in outputs]
    if len(encoded) < _VECTORIZE_MIN_OUTPUTS:
        return b"".join((header, *_string_vector_body_by_loop(encoded)))
    return b"".join((header, *_string_vector_body_by_numpy(encoded)))


def _string_vector_body_by_loop(encoded: list[bytes]) -> list[bytes | bytearray]:
    """The offsets then the strings of a [string] vector, one Python step per string."""
    elements = bytearray()
    strings: list[bytes | bytearray] = [elements]
    start = 4 * len(encoded)  # element j holds start_j + 4 (count - j)
    for item in encoded:
        length = len(item)
        elements += _PACK_U32(start)
        strings += (_PACK_U32(length), item, _NUL_AND_PADDING[length & 3])
        start += ((length + 8) & ~3) - 4
    return strings


def _string_vector_body_by_numpy(encoded: list[bytes]) -> list[bytes]:
    """The same bytes as _string_vector_body_by_loop, computed with a constant number of numpy calls."""
    count = len(encoded)
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=count)
    slots = (lengths + 8) & ~3  # 4 (length) + bytes + 1 (NUL), rounded up to a multiple of 4
    starts = np.zeros(count, dtype=np.int64)
    np.cumsum(slots[:-1], out=starts[1:])
    region = np.zeros(int(starts[-1] + slots[-1]), dtype=np.uint8)
    region.view("<u4")[starts >> 2] = lengths
    total = int(lengths.sum())
    if total:
        # Destination of every payload byte: its string's slot start + 4 + its index in the string.
        shift = np.repeat(starts + 4 - (np.cumsum(lengths) - lengths), lengths)
        region[shift + np.arange(total)] = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    elements = (starts + 4 * (count - np.arange(count, dtype=np.int64))).astype("<u4")
    return [elements.tobytes(), region.tobytes()]


# The native receive/reply path (clipper.container._native_codec) takes this module's types and layout,
# so the two cannot drift apart: same PredictBatch, same errors, same response prefixes.
if native is not None:
    native.bind(
        PredictBatch,
        WireFormatError,
        convert_outputs,
        Prediction,
        _RESPONSE_PREFIX,
        _CONFIDENT_RESPONSE_PREFIX,
        int(Payload.PredictRequest),
        {int(kind): dtype for kind, dtype in _NUMPY_DTYPES.items()},
        {int(kind): kind.wire_name for kind in InputType},
    )
NATIVE_AVAILABLE = native is not None
