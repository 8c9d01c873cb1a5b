"""The PredictRequest the micro benchmarks feed the container SDK, laid out as the engine builds it:
one row-major float64 tensor (values 0, 1, 2, ...), 16-byte aligned, no offsets. Imported by path
(bench/micro is not a package): the scripts here run with their own folder first on sys.path."""

import flatbuffers
import numpy as np
from clipper.wire import InputType as WireInputType
from clipper.wire import Message, Payload, PredictRequest


def doubles_request(rows: int, columns: int, batch_id: int = 7) -> bytes:
    """A Message{PredictRequest} of `rows` inputs of `columns` doubles each."""
    builder = flatbuffers.Builder(1024)
    data = np.arange(rows * columns, dtype=np.float64).tobytes()
    # The Python generator ignores the schema's force_align, so the vector is started by hand.
    builder.StartVector(1, len(data), 16)
    builder.head -= len(data)
    builder.Bytes[builder.head : builder.head + len(data)] = data
    data_offset = builder.EndVector()
    PredictRequest.Start(builder)
    PredictRequest.AddBatchId(builder, batch_id)
    PredictRequest.AddInputType(builder, WireInputType.InputType.Doubles)
    PredictRequest.AddNumInputs(builder, rows)
    PredictRequest.AddRowLength(builder, columns)
    PredictRequest.AddData(builder, data_offset)
    request = PredictRequest.End(builder)
    Message.Start(builder)
    Message.AddPayloadType(builder, Payload.Payload.PredictRequest)
    Message.AddPayload(builder, request)
    builder.Finish(Message.End(builder))
    return bytes(builder.Output())
