"""clipper.container.codec and Prediction: confidences converted, validated, and encoded into the
PredictResponse's confidences vector (read back with the generated flatbuffers code)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from clipper.wire import Message as wire_message
from clipper.wire import PredictResponse as wire_predict_response

from clipper.container import Prediction, codec
from clipper.container.codec import OutputConversionError

from .wire_frontend import decode_replica_message


def float32(value: float) -> float:
    return float(np.float32(value))


# --- converting outputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "outputs",
    [
        ["a", 1, 2.5],
        np.array([1.0, 2.0, 3.0]),
        (value for value in ("x", {"k": 1}, None)),
        [(1, 2), [3], "z"],  # plain tuples are outputs, not Predictions
    ],
    ids=["list", "array", "generator", "tuples"],
)
def test_a_batch_without_predictions_reports_no_confidences(outputs):
    strings, confidences = codec.convert_outputs(outputs, 3)
    assert len(strings) == 3
    assert confidences is None


def test_bare_outputs_count_as_sure_beside_predictions():
    strings, confidences = codec.convert_outputs(
        ["plain", Prediction("cat", 0.25), 7, Prediction({"label": "dog"}, 0.5)], 4
    )
    assert strings == ["plain", "cat", "7", '{"label": "dog"}']
    assert confidences == [1.0, 0.25, 1.0, 0.5]


def test_a_predictions_output_is_converted_like_a_bare_output():
    values = [np.float64(0.1), b"caf\xc3\xa9", [1, 2], np.array([0.5, 0.25]), 3.0, "text"]
    bare, _ = codec.convert_outputs(values, len(values))
    wrapped, confidences = codec.convert_outputs(
        [Prediction(value, 0.5) for value in values], len(values)
    )
    assert wrapped == bare == ["0.1", "café", "[1, 2]", "[0.5, 0.25]", "3.0", "text"]
    assert confidences == [0.5] * len(values)


def test_predictions_in_an_object_array_and_a_generator():
    array = np.empty(2, dtype=object)
    array[:] = [Prediction("a", 0.5), Prediction("b", 1.0)]
    assert codec.convert_outputs(array, 2) == (["a", "b"], [0.5, 1.0])
    generated = (Prediction(str(index), index / 4) for index in range(3))
    assert codec.convert_outputs(generated, 3) == (["0", "1", "2"], [0.0, 0.25, 0.5])


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [
        (0, 0.0),
        (1, 1.0),
        (np.float32(0.25), 0.25),
        (np.float64(0.75), 0.75),
        (np.int64(1), 1.0),
        (5e-324, 5e-324),
    ],
)
def test_any_real_number_from_0_to_1_is_a_confidence(confidence, expected):
    _, confidences = codec.convert_outputs([Prediction("x", confidence)], 1)
    assert confidences == [expected] and type(confidences[0]) is float


@pytest.mark.parametrize(
    ("confidence", "shown"),
    [
        (1.5, "the confidence 1.5;"),
        (-0.01, "the confidence -0.01;"),
        (float("nan"), "the confidence nan;"),
        (float("inf"), "the confidence inf;"),
        (np.float32(2.0), "the confidence 2.0;"),
        ("0.5", "the confidence '0.5', which is not a number"),
        (None, "the confidence None, which is not a number"),
        (True, "the confidence True, which is not a number"),
        ([0.5], "the confidence [0.5], which is not a number"),
    ],
)
def test_a_confidence_outside_0_to_1_names_the_output_and_the_value(confidence, shown):
    outputs = ["a", Prediction("b", 0.5), Prediction("c", confidence)]
    with pytest.raises(OutputConversionError, match="^output 2 reports ") as caught:
        codec.convert_outputs(outputs, 3)
    assert shown in str(caught.value)
    assert "from 0 to 1" in str(caught.value)


def test_a_prediction_of_a_prediction_is_refused():
    with pytest.raises(OutputConversionError, match="output 0 is a Prediction whose output is"):
        codec.convert_outputs([Prediction(Prediction("x", 0.5), 0.5)], 1)


def test_the_count_is_checked_with_predictions_too():
    with pytest.raises(OutputConversionError, match="returned 1 outputs for a batch of 2 inputs"):
        codec.convert_outputs([Prediction("x", 0.5)], 2)


def test_outputs_to_strings_checks_confidences_and_keeps_only_the_strings():
    assert codec.outputs_to_strings([Prediction("x", 0.5), "y"], 2) == ["x", "y"]
    with pytest.raises(OutputConversionError, match="output 0 reports the confidence 7.0"):
        codec.outputs_to_strings([Prediction("x", 7.0)], 1)


# --- encoding ----------------------------------------------------------------------------------------


def test_confidences_read_back_with_the_generated_code_as_float32():
    confidences = [0.5, 1.0, 0.0, 0.1, 1 / 3]
    outputs = ["", "a", "ab", "abc", "日本語"]
    message = codec.encode_predict_response(2**40 + 3, outputs, confidences)
    assert decode_replica_message(b"", message).fields == {
        "batch_id": 2**40 + 3,
        "outputs": outputs,
        "error": None,
        "confidences": [float32(value) for value in confidences],
    }


def test_many_confidences_read_back_in_order():
    outputs = [f"label-{index}" * (index % 4) for index in range(1000)]
    confidences = [index / 999 for index in range(1000)]
    fields = decode_replica_message(
        b"", codec.encode_predict_response(1, outputs, confidences)
    ).fields
    assert fields["outputs"] == outputs
    assert fields["confidences"] == [float32(value) for value in confidences]


def _response_table(message: bytes) -> wire_predict_response.PredictResponse:
    table = wire_message.Message.GetRootAs(message, 0).Payload()
    response = wire_predict_response.PredictResponse()
    response.Init(table.Bytes, table.Pos)
    return response


@pytest.mark.parametrize("confidences", [None, []], ids=["none", "empty"])
def test_a_response_without_confidences_has_no_confidences_field(confidences):
    message = codec.encode_predict_response(4, ["a", "b"], confidences)
    assert message == codec.encode_predict_response(4, ["a", "b"])
    assert _response_table(message).ConfidencesIsNone()
    # The layout of a response that reports none is unchanged: header 52 bytes, 2 offsets, 2 strings.
    assert len(message) == 52 + 2 * 4 + 2 * 8


def test_a_confident_response_grows_by_the_vector_and_its_field_only():
    plain = codec.encode_predict_response(4, ["a", "b"])
    confident = codec.encode_predict_response(4, ["a", "b"], [0.5, 0.5])
    # vtable +4 (two more uint16), table +4 (the vector's offset), vector 4 + 2 x 4.
    assert len(confident) - len(plain) == 4 + 4 + 4 + 2 * 4
    assert not _response_table(confident).ConfidencesIsNone()


def test_confidences_of_another_count_than_the_outputs_are_refused():
    with pytest.raises(ValueError, match="2 confidences for 3 outputs"):
        codec.encode_predict_response(1, ["a", "b", "c"], [0.5, 0.5])


def test_a_converted_batch_encodes_end_to_end():
    strings, confidences = codec.convert_outputs(
        np.array([Prediction("yes", np.float32(0.9)), "maybe"], dtype=object), 2
    )
    fields = decode_replica_message(
        b"", codec.encode_predict_response(8, strings, confidences)
    ).fields
    assert fields["outputs"] == ["yes", "maybe"]
    assert fields["confidences"][1] == 1.0
    assert math.isclose(fields["confidences"][0], 0.9, rel_tol=1e-6)
