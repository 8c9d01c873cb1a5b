"""The model author's side of the container SDK: the `Model` base class and `Prediction`, an output
with the model's confidence in it.

Owns only the contract between the serving loop and user code; it does no I/O. predict_batch always runs
on the serving loop's main thread, one batch at a time, so a model needs no locking of its own.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, NamedTuple


class Prediction(NamedTuple):
    """One output with the model's confidence in it, for predict_batch to return in place of a bare
    output::

        return [Prediction(label, float(probability)) for label, probability in zip(labels, best)]

    `confidence` is a number from 0 (unsure) to 1 (sure); the frontend's selection policies read it
    (`cascade` asks the next model while it is below their threshold). Bare outputs and Predictions
    mix freely in one batch: a bare output counts as confidence 1.0. A confidence that is not a finite
    number in [0, 1] fails the batch with an error naming the output's index and the value.
    """

    output: Any
    confidence: float


class Model(abc.ABC):
    """Base class of a model served by a Clipper container.

    Subclass it, implement `predict_batch`, and start serving with `clipper.container.run(model, ...)`
    or the `clipper-model` command::

        class Doubler(Model):
            def predict_batch(self, inputs):
                return (inputs * 2).sum(axis=1)      # one output per input

        run(Doubler(), model_name="doubler", model_version="1", input_type="doubles")

    What `inputs` is depends on the input type the model registers with:

    - `ints`, `floats`, `doubles`: when every input of the batch has the same length, ONE 2-D numpy
      array of dtype int32, float32 or float64 with one row per input. It views the received message
      without a copy whenever the transport allows (batches of 8 KiB and more); treat it as read-only
      and copy rows you keep beyond the call. Otherwise a list of 1-D arrays, one per input.
    - `bytes`: a list of `bytes`; `strings`: a list of `str`.

    The return value holds one output per input, in order (a list, tuple or numpy array). Each output is
    sent as a string: `str` as is, `bytes` decoded as UTF-8, numbers, lists, dicts and numpy values as
    JSON, anything else as `str(output)`. An output that is valid JSON reaches the client as JSON.
    To report how sure the model is, return `Prediction(output, confidence)` for an output instead.

    An exception raised by predict_batch (or outputs of the wrong count) fails that batch only: its
    queries get their application's default output with the error as explanation, and the container
    goes on serving. The exception is logged with its traceback.
    """

    @abc.abstractmethod
    def predict_batch(self, inputs: Any) -> Sequence[Any]:
        """Returns one output per element of `inputs`, in the same order."""
