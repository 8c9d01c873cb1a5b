"""Micro-benchmarks (pytest-benchmark) of the container SDK's hot path: decoding a batch the frontend
sent, converting the model's answers (bare outputs, or Predictions with confidences) and encoding them.
Not tests: run with `python -m pytest bench/micro --benchmark-only` and compare runs with
`--benchmark-compare`."""

import pytest
from wire_request import doubles_request  # bench/micro, imported by path

from clipper.container import Prediction, codec


@pytest.mark.parametrize("rows", [1, 64, 1024])
def test_decode_uniform_doubles_batch(benchmark, rows):
    buffer = doubles_request(rows, 10)

    def decode():
        _payload_type, table = codec.read_message(buffer)
        return codec.decode_predict_request(buffer, table, codec.InputType.DOUBLES)

    batch = benchmark(decode)
    assert len(batch.inputs) == rows


@pytest.mark.parametrize("encoder", ["native", "python"])
@pytest.mark.parametrize("rows", [1, 64, 1024])
def test_encode_outputs(benchmark, monkeypatch, rows, encoder):
    """The wheel's C encoder (clipper_native._wire) against the pure-Python fallback."""
    if encoder == "python":
        monkeypatch.setattr(codec, "_native_encode", None)
    else:
        assert codec._native_encode is not None, "clipper_native._wire is not installed"
    outputs = [str(float(i)) for i in range(rows)]
    encoded = benchmark(codec.encode_predict_response, 7, outputs)
    assert len(encoded) > rows


@pytest.mark.parametrize("encoder", ["native", "python"])
@pytest.mark.parametrize("rows", [1, 64, 1024])
def test_encode_outputs_with_confidences(benchmark, monkeypatch, rows, encoder):
    """The same outputs with one confidence each: the header grows by the [float] vector."""
    if encoder == "python":
        monkeypatch.setattr(codec, "_native_encode", None)
    else:
        assert codec._native_encode is not None, "clipper_native._wire is not installed"
    outputs = [str(float(i)) for i in range(rows)]
    confidences = [i / rows for i in range(rows)]
    encoded = benchmark(codec.encode_predict_response, 7, outputs, confidences)
    assert len(encoded) > 4 * rows


@pytest.mark.parametrize("reported", ["bare", "predictions"])
@pytest.mark.parametrize("rows", [1, 64, 1024])
def test_answer_a_batch(benchmark, rows, reported):
    """What a replica does with predict_batch's return value: convert_outputs, then encode. "bare"
    returns floats (no confidences written), "predictions" the same floats as Predictions."""
    values = [float(i) * 0.5 for i in range(rows)]
    outputs = values if reported == "bare" else [Prediction(v, 0.5) for v in values]

    def answer():
        strings, confidences = codec.convert_outputs(outputs, rows)
        return codec.encode_predict_response(7, strings, confidences)

    encoded = benchmark(answer)
    assert len(encoded) > rows


class _FixedAnswers:
    """A model whose predict_batch costs next to nothing: what remains is the replica's overhead."""

    def __init__(self, outputs):
        self.outputs = outputs

    def predict_batch(self, inputs):
        return self.outputs


@pytest.mark.parametrize("path", ["native", "python", "python_with_wire"])
@pytest.mark.parametrize("reported", ["bare", "predictions"])
@pytest.mark.parametrize("rows", [1, 64, 1024])
def test_replica_per_batch_overhead(benchmark, monkeypatch, rows, reported, path):
    """One received batch to its encoded response, as ModelServer._answer runs it: decode, call
    predict_batch, convert and encode. "native" is the Cython path (clipper.container._native_codec,
    one call per batch); "python" the pure-Python codec (what the SDK-only wheel in the model images
    ran before); "python_with_wire" the Python codec with the full wheel's C string-vector encoder
    (clipper_native._wire: what local replicas ran before)."""
    from clipper.container import ContainerOptions, ModelServer
    from clipper.container import server as server_module

    if path != "native":
        monkeypatch.setattr(server_module, "native", None)
        if path == "python":
            monkeypatch.setattr(codec, "_native_encode", None)
        else:
            assert codec._native_encode is not None, "clipper_native._wire is not installed"
    else:
        assert server_module.native is not None, "the SDK's Cython extension is not built"
    values = [float(i) * 0.5 for i in range(rows)]
    outputs = values if reported == "bare" else [Prediction(v, 0.5) for v in values]
    server = ModelServer(
        _FixedAnswers(outputs), ContainerOptions(model_name="m", model_version="1")
    )
    buffer = memoryview(doubles_request(rows, 10))
    reply = benchmark(server._answer, buffer)
    assert reply == codec.encode_predict_response_in_python(
        7, *codec.convert_outputs(outputs, rows)
    )
