# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# distutils: language = c++
"""The replica's receive and reply path in C: decode a PredictRequest, call predict_batch, convert its
outputs and encode the PredictResponse, in one call per batch (`answer`), so that predict_batch is the
only Python a batch runs. The response goes straight into the shared-memory response ring when the
replica is attached and it fits (no intermediate bytes), else into one `bytes` for ZeroMQ.

Same results as the pure-Python codec (clipper.container.codec), which stays the reference and the
fallback where this extension is not built; tests/python/container/test_native_codec.py holds them
against each other. What this module does not handle itself it hands back to the Python code:
messages other than a PredictRequest and malformed requests (`answer` returns NotImplemented; the
server's Python path logs and answers them), and outputs other than str, int, finite float and
Prediction of those (converted by codec.convert_outputs, then encoded here).

Every position read from a message is checked against the message's length first: a request is
never read outside its buffer, whatever its bytes say.

Numeric inputs are made through numpy's C API over the received bytes (no copy when aligned), with
what np.ndarray(shape, dtype, buffer, offset) gives them: writable only when the buffer is, and the
buffer's owner (a memoryview's underlying object) as their base, so they keep the bytes alive.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF
from libc.math cimport isfinite
from libc.stdint cimport int8_t, int32_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy, memset
from libcpp.vector cimport vector

cimport numpy as cnp

from clipper.container._shm_ring cimport ShmChannel

import numpy as np

cnp.import_array()

cdef extern from "Python.h":
    # Borrowed; NULL when absent (PyDict_GetItem would save and restore the error state around it).
    PyObject* PyDict_GetItemWithError(object mapping, object key) except? NULL
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL
    object PyUnicode_DecodeUTF8(const char* data, Py_ssize_t size, const char* errors)
    bint PyMemoryView_Check(object candidate)
    bint PyUnicode_IS_COMPACT_ASCII(object text)
    void* PyUnicode_DATA(object text)
    Py_ssize_t PyUnicode_GET_LENGTH(object text)
    PyObject* PyMemoryView_GET_BASE(object view)

cdef extern from "numpy/arrayobject.h":
    ctypedef struct _Descr "PyArray_Descr":
        pass
    # numpy's Cython declarations leave it out; steals a reference to `descr`.
    object PyArray_NewFromDescr(PyTypeObject* subtype, _Descr* descr, int nd,
                                cnp.npy_intp* dims, cnp.npy_intp* strides, void* data, int flags,
                                PyObject* obj)
    PyTypeObject PyArray_Type

__all__ = ["PredictFailed", "answer", "decode_predict_request", "encode_predict_response",
           "read_message"]


class PredictFailed(Exception):
    """predict_batch raised, or its outputs cannot be sent (the cause is `__cause__`): the batch is
    answered with an error by the caller, which also logs it."""

    def __init__(self, batch_id, num_inputs):
        super().__init__(f"batch {batch_id} of {num_inputs} inputs failed")
        self.batch_id = batch_id
        self.num_inputs = num_inputs


# Bound once by codec.py (bind()), which owns the message layout and the Python-side types.
cdef object _PredictBatch = None
cdef object _WireFormatError = None
cdef object _convert_outputs = None
cdef object _Prediction = None
cdef bytes _prefix = None             # Message + PredictResponse up to the outputs offset
cdef bytes _confident_prefix = None   # the same with the confidences field
cdef int _predict_request_type = -1
cdef dict _dtypes = {}                # wire input type -> numpy dtype (numeric types only)
cdef dict _type_names = {}            # wire input type -> canonical name

# _dtypes by wire type as C arrays (NULL / 0: not numeric), read per batch without a dict lookup. The
# descriptors are borrowed from _dtypes, which holds them.
cdef enum:
    _WIRE_TYPES = 32
cdef PyObject* _descrs[_WIRE_TYPES]
cdef Py_ssize_t _itemsizes[_WIRE_TYPES]


def bind(predict_batch, wire_format_error, convert_outputs, prediction, bytes prefix,
         bytes confident_prefix, int predict_request_type, dict dtypes, dict type_names):
    """Called once by clipper.container.codec with its types and layout constants."""
    global _PredictBatch, _WireFormatError, _convert_outputs, _Prediction, _prefix
    global _confident_prefix, _predict_request_type, _dtypes, _type_names
    _PredictBatch = predict_batch
    _WireFormatError = wire_format_error
    _convert_outputs = convert_outputs
    _Prediction = prediction
    _prefix = prefix
    _confident_prefix = confident_prefix
    _predict_request_type = predict_request_type
    _dtypes = dtypes
    _type_names = type_names
    cdef int kind
    for kind in range(_WIRE_TYPES):
        _descrs[kind] = NULL
        _itemsizes[kind] = 0
    for kind, dtype in dtypes.items():
        if not 0 <= kind < _WIRE_TYPES or not isinstance(dtype, np.dtype):
            raise ValueError(f"bind: wire type {kind} needs a numpy dtype below {_WIRE_TYPES}")
        _descrs[kind] = <PyObject*>dtype
        _itemsizes[kind] = (<cnp.dtype>dtype).itemsize


# ---------------------------------------------------------------------------------------------------
# Reading (flatbuffers' binary layout, as codec.py describes it), every read bounds-checked
# ---------------------------------------------------------------------------------------------------

cdef struct Message:
    const uint8_t* data
    Py_ssize_t size
    bint writable   # whether numeric inputs viewing it may be written (as the buffer allows)


cdef inline bint _has(const Message* m, Py_ssize_t at, Py_ssize_t count) noexcept nogil:
    return at >= 0 and count >= 0 and at <= m.size - count


cdef inline uint32_t _u32(const uint8_t* at) noexcept nogil:
    cdef uint32_t value
    memcpy(&value, at, 4)
    return value


cdef inline uint64_t _u64(const uint8_t* at) noexcept nogil:
    cdef uint64_t value
    memcpy(&value, at, 8)
    return value


cdef bint _fields(const Message* m, Py_ssize_t table, int count, Py_ssize_t* out) noexcept nogil:
    """Absolute position of each of a table's first `count` fields (0 when absent); False when the
    table or its vtable lies outside the message."""
    cdef int32_t back
    cdef Py_ssize_t vtable
    cdef uint16_t vtable_size, relative
    cdef int present, i
    if not _has(m, table, 4):
        return False
    memcpy(&back, m.data + table, 4)
    vtable = table - <Py_ssize_t>back
    if not _has(m, vtable, 4):
        return False
    memcpy(&vtable_size, m.data + vtable, 2)
    present = (vtable_size - 4) // 2 if vtable_size >= 4 else 0
    if present > count:
        present = count
    if not _has(m, vtable + 4, 2 * present):
        return False
    for i in range(count):
        out[i] = 0
        if i < present:
            memcpy(&relative, m.data + vtable + 4 + 2 * i, 2)
            if relative:
                out[i] = table + relative
    return True


cdef bint _vector(const Message* m, Py_ssize_t field, Py_ssize_t element_size,
                  Py_ssize_t* start, Py_ssize_t* length) noexcept nogil:
    """Position of a vector's first element and its element count; False when it overruns."""
    cdef Py_ssize_t at
    if not _has(m, field, 4):
        return False
    at = field + <Py_ssize_t>_u32(m.data + field)
    if not _has(m, at, 4):
        return False
    length[0] = <Py_ssize_t>_u32(m.data + at)
    start[0] = at + 4
    return _has(m, start[0], length[0] * element_size)


cdef int _read_message(const Message* m, Py_ssize_t* table) noexcept nogil:
    """The payload type (0 when absent) and its table position; -1 when unreadable."""
    cdef Py_ssize_t fields[2]
    cdef Py_ssize_t root
    if not _has(m, 0, 4):
        return -1
    root = <Py_ssize_t>_u32(m.data)
    if not _fields(m, root, 2, fields):
        return -1
    if not fields[0] or not fields[1]:
        table[0] = 0
        return 0
    if not _has(m, fields[0], 1) or not _has(m, fields[1], 4):
        return -1
    table[0] = fields[1] + <Py_ssize_t>_u32(m.data + fields[1])
    return m.data[fields[0]]


def read_message(buffer):
    """Same as codec.read_message: (payload type, payload table position) of one Message."""
    cdef Py_buffer view
    cdef Message m
    cdef Py_ssize_t table = 0
    cdef int payload_type
    PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE)
    m.data = <const uint8_t*>view.buf
    m.size = view.len
    m.writable = not view.readonly
    payload_type = _read_message(&m, &table)
    PyBuffer_Release(&view)
    if payload_type < 0:
        raise _WireFormatError("not a clipper.wire.Message (its offsets run past its end)")
    return payload_type, table


def decode_predict_request(buffer, Py_ssize_t table, int expected_input_type):
    """Same as codec.decode_predict_request: the PredictBatch predict_batch receives."""
    cdef Py_buffer view
    cdef Message m
    PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE)
    m.data = <const uint8_t*>view.buf
    m.size = view.len
    m.writable = not view.readonly
    try:
        return _decode(buffer, &m, table, expected_input_type)
    finally:
        PyBuffer_Release(&view)


cdef object _decode(object buffer, const Message* m, Py_ssize_t table, int expected):
    cdef uint64_t batch_id = 0
    cdef uint32_t num_inputs = 0
    inputs = _decode_inputs(buffer, m, table, expected, &batch_id, &num_inputs)
    return _PredictBatch(batch_id, num_inputs, inputs)


cdef object _decode_inputs(object buffer, const Message* m, Py_ssize_t table, int expected,
                           uint64_t* batch_id_out, uint32_t* num_inputs_out):
    """The inputs predict_batch receives; the batch id and input count through the pointers (the
    batch id as soon as it is read, so a later error can name it). `buffer` owns `m`'s bytes: the
    base of numeric inputs (any object that keeps them alive)."""
    cdef Py_ssize_t f[6]
    cdef uint64_t batch_id = 0
    cdef int wire_type = 0
    cdef uint32_t num_inputs = 0, row_length = 0
    cdef Py_ssize_t data_start = 0, data_length = 0, offsets_start = 0, offsets_count = 0
    cdef bint has_offsets = False
    if not _fields(m, table, 6, f) or (f[0] and not _has(m, f[0], 8)):
        raise _WireFormatError("unreadable PredictRequest (its table lies outside the message)")
    if f[0]:
        batch_id = _u64(m.data + f[0])
        batch_id_out[0] = batch_id
    if f[1]:
        if not _has(m, f[1], 1):
            raise _unreadable(batch_id)
        wire_type = <int8_t>m.data[f[1]]
    if wire_type != expected:
        raise _WireFormatError(
            f"the batch holds input type {_type_name(wire_type)} but this replica serves "
            f"{_type_names[expected]}", batch_id)
    if f[2]:
        if not _has(m, f[2], 4):
            raise _unreadable(batch_id)
        num_inputs = _u32(m.data + f[2])
    if f[5] and not _vector(m, f[5], 1, &data_start, &data_length):
        raise _unreadable(batch_id)
    if f[4]:
        if not _vector(m, f[4], 8, &offsets_start, &offsets_count):
            raise _unreadable(batch_id)
        has_offsets = offsets_count > 0
    if 0 <= expected < _WIRE_TYPES and _descrs[expected] != NULL:
        if not has_offsets:
            if f[3]:
                if not _has(m, f[3], 4):
                    raise _unreadable(batch_id)
                row_length = _u32(m.data + f[3])
            inputs = _uniform(buffer, m, expected, num_inputs, row_length, data_start, data_length,
                              batch_id)
        else:
            inputs = _ragged(buffer, m, expected, num_inputs, data_start, data_length,
                             offsets_start, offsets_count, batch_id)
    else:
        inputs = _blobs(m, expected, num_inputs, data_start, data_length, has_offsets,
                        offsets_start, offsets_count, batch_id)
    num_inputs_out[0] = num_inputs
    return inputs


cdef object _unreadable(uint64_t batch_id):
    return _WireFormatError("unreadable PredictRequest (a field or vector runs past the message)",
                            batch_id)


cdef str _type_name(int wire_type):
    name = _type_names.get(wire_type)
    return name if name is not None else f"<unknown {wire_type}>"


cdef object _owner(object buffer):
    """What a view of `buffer` keeps alive, as numpy chooses it: a memoryview's underlying object."""
    cdef PyObject* base
    if PyMemoryView_Check(buffer):
        base = PyMemoryView_GET_BASE(buffer)
        if base != NULL:
            return <object>base
    return buffer


cdef cnp.ndarray _view(int wire_type, const uint8_t* data, int nd, cnp.npy_intp* dims,
                       bint writable, object base):
    """An ndarray of wire_type's dtype over `data` (C order, `nd` dimensions), `base` its owner."""
    cdef PyObject* descr = _descrs[wire_type]
    Py_INCREF(<object>descr)  # PyArray_NewFromDescr steals it
    cdef cnp.ndarray array = PyArray_NewFromDescr(
        &PyArray_Type, <_Descr*>descr, nd, dims, NULL, <void*>data,
        cnp.NPY_ARRAY_CARRAY if writable else cnp.NPY_ARRAY_CARRAY_RO, NULL)
    cnp.set_array_base(array, base)
    return array


cdef cnp.ndarray _numeric_view(object buffer, const Message* m, int wire_type, Py_ssize_t start,
                               Py_ssize_t count, int nd, cnp.npy_intp* dims):
    """A view of `dims` (`count` elements) at `start`, as np.ndarray(shape, dtype, buffer, start)
    makes it (one C call instead: that call cost half a batch); a copy when the address is unaligned
    (see codec.py's module docstring)."""
    array = _view(wire_type, m.data + start, nd, dims, m.writable, _owner(buffer))
    # numpy calls an empty array aligned
    if count and (<uintptr_t>(m.data + start)) % _itemsizes[wire_type]:
        return cnp.PyArray_NewCopy(array, cnp.NPY_CORDER)
    return array


cdef object _uniform(object buffer, const Message* m, int wire_type, uint32_t num_inputs,
                     uint32_t row_length, Py_ssize_t start, Py_ssize_t length, uint64_t batch_id):
    cdef Py_ssize_t itemsize = _itemsizes[wire_type]
    cdef uint64_t elements = <uint64_t>num_inputs * row_length
    cdef cnp.npy_intp dims[2]
    if length % itemsize or <uint64_t>(length // itemsize) != elements:
        dtype = <object>_descrs[wire_type]
        raise _WireFormatError(
            f"uniform batch of {num_inputs} x {row_length} {dtype.name} needs "
            f"{int(num_inputs) * int(row_length) * itemsize} data bytes, got {length}", batch_id)
    dims[0] = num_inputs
    dims[1] = row_length
    return _numeric_view(buffer, m, wire_type, start, <Py_ssize_t>elements, 2, dims)


cdef int _check_bounds(const Message* m, uint32_t num_inputs, Py_ssize_t length, bint has_offsets,
                       Py_ssize_t offsets_start, Py_ssize_t offsets_count,
                       uint64_t batch_id) except -1:
    """codec._byte_bounds' checks: num_inputs + 1 offsets rising from 0 to the data length."""
    cdef Py_ssize_t i
    cdef uint64_t previous = 0, bound
    if not has_offsets:
        if num_inputs == 0 and length == 0:
            return 0
        raise _WireFormatError(
            f"a batch of {num_inputs} variable-length inputs carries no offsets", batch_id)
    if <uint64_t>offsets_count != <uint64_t>num_inputs + 1:
        raise _WireFormatError(
            f"a batch of {num_inputs} inputs needs {int(num_inputs) + 1} offsets, got "
            f"{offsets_count}", batch_id)
    for i in range(offsets_count):
        bound = _u64(m.data + offsets_start + 8 * i)
        if bound < previous or (i == 0 and bound != 0) or (
                i == offsets_count - 1 and bound != <uint64_t>length):
            raise _WireFormatError(
                f"offsets must rise from 0 to the data length {length}; got "
                f"{_u64(m.data + offsets_start)}.."
                f"{_u64(m.data + offsets_start + 8 * (offsets_count - 1))}", batch_id)
        previous = bound
    return 0


cdef object _ragged(object buffer, const Message* m, int wire_type, uint32_t num_inputs,
                    Py_ssize_t start, Py_ssize_t length, Py_ssize_t offsets_start,
                    Py_ssize_t offsets_count, uint64_t batch_id):
    cdef Py_ssize_t itemsize = _itemsizes[wire_type]
    cdef Py_ssize_t i
    cdef uint64_t low, high
    cdef cnp.npy_intp count
    cdef cnp.ndarray values
    cdef const uint8_t* first
    cdef bint writable
    _check_bounds(m, num_inputs, length, True, offsets_start, offsets_count, batch_id)
    for i in range(offsets_count):
        if _u64(m.data + offsets_start + 8 * i) % itemsize:
            dtype = <object>_descrs[wire_type]
            raise _WireFormatError(
                f"ragged batch offsets must be multiples of the {itemsize}-byte {dtype.name} "
                "element", batch_id)
    count = length // itemsize
    values = _numeric_view(buffer, m, wire_type, start, count, 1, &count)
    # Each input views `values` (its base, as values[low:high] would have it), without the slicing.
    first = <const uint8_t*>cnp.PyArray_DATA(values)
    writable = cnp.PyArray_ISWRITEABLE(values)
    inputs = []
    for i in range(num_inputs):
        low = _u64(m.data + offsets_start + 8 * i)
        high = _u64(m.data + offsets_start + 8 * (i + 1))
        count = <cnp.npy_intp>((high - low) // itemsize)
        inputs.append(_view(wire_type, first + low, 1, &count, writable, values))
    return inputs


cdef object _blobs(const Message* m, int expected, uint32_t num_inputs, Py_ssize_t start,
                   Py_ssize_t length, bint has_offsets, Py_ssize_t offsets_start,
                   Py_ssize_t offsets_count, uint64_t batch_id):
    cdef Py_ssize_t i
    cdef uint64_t low, high
    cdef const char* data = <const char*>(m.data + start)
    cdef bint as_bytes = _type_names.get(expected) == "bytes"
    _check_bounds(m, num_inputs, length, has_offsets, offsets_start, offsets_count, batch_id)
    inputs = []
    for i in range(num_inputs):
        low = _u64(m.data + offsets_start + 8 * i)
        high = _u64(m.data + offsets_start + 8 * (i + 1))
        if as_bytes:
            inputs.append(PyBytes_FromStringAndSize(data + low, <Py_ssize_t>(high - low)))
        else:
            try:
                inputs.append(PyUnicode_DecodeUTF8(data + low, <Py_ssize_t>(high - low), NULL))
            except UnicodeDecodeError as exc:
                raise _WireFormatError(f"a strings input is not valid UTF-8 ({exc})",
                                       batch_id) from exc
    return inputs


# ---------------------------------------------------------------------------------------------------
# Outputs -> strings -> PredictResponse (the layout in codec.py)
# ---------------------------------------------------------------------------------------------------

cdef struct Outputs:
    vector[const char*] data
    vector[Py_ssize_t] sizes
    vector[float] confidences   # empty: the model reported none
    Py_ssize_t encoded_size     # the response's bytes (_encoded_size), once collected


cdef object _as_text(object value):
    """The string codec._value_to_string gives for str, int and finite float; None for others."""
    cdef type kind = type(value)
    if kind is str:
        return value
    if kind is float:
        return repr(value) if isfinite(<double>value) else None
    if kind is int:
        return str(value)
    return None


cdef object _collect(object outputs, Py_ssize_t expected, Outputs* out):
    """Fills `out` with UTF-8 views of predict_batch's return value and returns what holds them (keep
    it until the response is written: the outputs themselves when they are all str, no list built);
    None when it needs codec.convert_outputs (other types, a wrong count: that raises the right
    error)."""
    cdef Py_ssize_t i, size, count
    cdef const char* utf8
    cdef bint confident = False
    cdef double confidence
    if type(outputs) is list or type(outputs) is tuple:
        values = outputs
    elif type(outputs) is np.ndarray and outputs.ndim == 1 and outputs.dtype.kind in "iuf":
        values = outputs.tolist()
    else:
        return None
    count = len(values)
    if count != expected:
        return None
    keep = None  # the strings made here, beside `values`, which holds the others
    out.data.resize(count)
    out.sizes.resize(count)
    for i in range(count):
        value = values[i]
        if type(value) is str:
            text = value
        elif type(value) is _Prediction:
            output, reported = value
            if type(reported) is not float:
                return None
            confidence = reported
            if not 0.0 <= confidence <= 1.0:
                return None
            if not confident:
                confident = True
                out.confidences.assign(count, 1.0)
            out.confidences[i] = <float>confidence
            text = _as_text(output)
        else:
            text = _as_text(value)
        if text is None:
            return None
        if PyUnicode_IS_COMPACT_ASCII(text):  # its characters are its UTF-8, stored in place
            utf8 = <const char*>PyUnicode_DATA(text)
            size = PyUnicode_GET_LENGTH(text)
        else:
            try:
                utf8 = PyUnicode_AsUTF8AndSize(text, &size)
            except UnicodeEncodeError:  # a lone surrogate: codec's path reports it
                return None
        if text is not value:
            if keep is None:
                keep = [values]
            keep.append(text)
        out.data[i] = utf8
        out.sizes[i] = size
    return values if keep is None else keep


cdef int _collect_strings(list strings, object confidences, Outputs* out) except -1:
    """Fills `out` from a list of str and optional confidences (convert_outputs' result): views of
    `strings`' items, so keep `strings` until the response is written."""
    cdef Py_ssize_t i, size, count = len(strings)
    out.data.resize(count)
    out.sizes.resize(count)
    out.confidences.clear()
    for i in range(count):
        text = strings[i]
        if type(text) is not str:
            raise TypeError(f"output {i} is a {type(text).__name__}, not str")
        out.data[i] = PyUnicode_AsUTF8AndSize(text, &size)
        out.sizes[i] = size
    if confidences:
        if len(confidences) != count:
            raise ValueError(
                f"{len(confidences)} confidences for {count} outputs; give one per output")
        out.confidences.resize(count)
        for i in range(count):
            out.confidences[i] = <float>(<double>confidences[i])
    return 0


cdef Py_ssize_t _encoded_size(const Outputs* out) noexcept:
    cdef Py_ssize_t count = out.data.size()
    cdef Py_ssize_t total = (len(_confident_prefix) + 24 + 4 * count if out.confidences.size()
                             else len(_prefix) + 16) + 4 * count
    cdef Py_ssize_t i
    for i in range(count):
        total += (out.sizes[i] + 8) & ~(<Py_ssize_t>3)
    return total


cdef inline void _put_u32(uint8_t* at, uint32_t value) noexcept nogil:
    memcpy(at, &value, 4)


cdef void _encode(uint8_t* at, uint64_t batch_id, const Outputs* out) noexcept:
    """Writes the response (exactly _encoded_size bytes) at `at`: codec.py's layout."""
    cdef uint32_t count = <uint32_t>out.data.size()
    cdef Py_ssize_t prefix_size, i, length, slot
    cdef uint32_t start
    cdef uint8_t* elements
    cdef uint8_t* strings
    if out.confidences.size():
        prefix_size = len(_confident_prefix)
        memcpy(at, PyBytes_AS_STRING(_confident_prefix), prefix_size)
        at += prefix_size
        _put_u32(at, 20 + 4 * count)   # outputs offset
        _put_u32(at + 4, 12)           # confidences offset
        memcpy(at + 8, &batch_id, 8)
        _put_u32(at + 16, count)       # confidences count, then the floats
        at += 20
        memcpy(at, out.confidences.data(), 4 * count)
        at += 4 * count
    else:
        prefix_size = len(_prefix)
        memcpy(at, PyBytes_AS_STRING(_prefix), prefix_size)
        at += prefix_size
        _put_u32(at, 12)               # outputs offset
        memcpy(at + 4, &batch_id, 8)
        at += 12
    _put_u32(at, count)                # the [string] vector: count, offsets, strings
    elements = at + 4
    strings = elements + 4 * count
    start = 4 * count                  # element j holds start_j + 4 (count - j)
    for i in range(count):
        length = out.sizes[i]
        slot = (length + 8) & ~(<Py_ssize_t>3)
        _put_u32(elements + 4 * i, start)
        _put_u32(strings, <uint32_t>length)
        memcpy(strings + 4, out.data[i], length)
        memset(strings + 4 + length, 0, slot - 4 - length)  # NUL terminator and padding
        strings += slot
        start += <uint32_t>(slot - 4)


cdef object _emit(uint64_t batch_id, const Outputs* out, ShmChannel channel):
    """Into the response ring when `channel` has room (returns None), else a new bytes. Needs
    `out.encoded_size`."""
    cdef Py_ssize_t size = out.encoded_size
    cdef uint8_t* at
    if size > 0xFFFFFFFF:
        raise ValueError("the response would be larger than 4 GiB")
    if channel is not None:
        at = channel.reserve_reply(<size_t>size)
        if at != NULL:
            _encode(at, batch_id, out)
            channel.commit_reply()
            return None
    result = PyBytes_FromStringAndSize(NULL, size)
    _encode(<uint8_t*>PyBytes_AS_STRING(result), batch_id, out)
    return result


def encode_predict_response(uint64_t batch_id, list outputs, confidences=None):
    """Same bytes as codec.encode_predict_response."""
    cdef Outputs out
    _collect_strings(outputs, confidences, &out)
    out.encoded_size = _encoded_size(&out)
    return _emit(batch_id, &out, None)


cdef object _evaluate(object predict_batch, object inputs, uint32_t num_inputs, uint64_t batch_id,
                      Outputs* out):
    """Runs the model on one batch and collects its outputs into `out`; returns what holds their
    buffers (keep it until the response is written): answer()'s and serve()'s shared step. Raises
    PredictFailed when predict_batch raised or its outputs cannot be sent."""
    try:
        outputs = predict_batch(inputs) if num_inputs else []
        held = _collect(outputs, num_inputs, out)
        if held is None:
            strings, confidences = _convert_outputs(outputs, num_inputs)
            _collect_strings(strings, confidences, out)
            held = strings
        out.encoded_size = _encoded_size(out)
        if out.encoded_size > 0xFFFFFFFF:
            raise ValueError("the response would be larger than 4 GiB")
    except Exception as exc:
        raise PredictFailed(batch_id, num_inputs) from exc
    return held


def answer(buffer, predict_batch, int expected_input_type, ShmChannel channel=None):
    """Answers one received message: decodes the PredictRequest, calls predict_batch, encodes the
    response into `channel`'s response ring (returns None) or into a new bytes (returned; also when
    the ring has no room now). Returns NotImplemented for anything but a well-formed PredictRequest
    (the caller's Python path handles it). Raises PredictFailed when predict_batch raised or its
    outputs cannot be sent."""
    cdef Py_buffer view
    cdef Message m
    cdef Py_ssize_t table = 0
    cdef int payload_type
    cdef Outputs out
    PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE)
    try:
        m.data = <const uint8_t*>view.buf
        m.size = view.len
        m.writable = not view.readonly
        payload_type = _read_message(&m, &table)
        if payload_type != _predict_request_type:
            return NotImplemented
        try:
            batch = _decode(buffer, &m, table, expected_input_type)
        except _WireFormatError:
            return NotImplemented
    finally:
        PyBuffer_Release(&view)
    batch_id, num_inputs, inputs = batch
    held = _evaluate(predict_batch, inputs, num_inputs, batch_id, &out)
    del inputs, batch  # zero-copy inputs reference the received buffer; let them go
    return _emit(batch_id, &out, channel)


cdef inline bint _asked(object server, dict state, str flag) except -1:
    """Whether `server`'s flag is set: from its instance dict when there, else as an attribute."""
    cdef PyObject* value = PyDict_GetItemWithError(state, flag) if state is not None else NULL
    if value == NULL:
        return bool(getattr(server, flag))
    return (<object>value) is True or ((<object>value) is not False and bool(<object>value))


def serve(ShmChannel channel, predict_batch, int expected_input_type, server, int wait_millis,
          int also_watch):
    """Answers the batches of `channel`'s request ring in C, one after another (predict_batch is the
    only Python a batch runs; the answers go into the response ring), until the Python loop is needed:

    - None: no request came within `wait_millis` (0: the ring is empty now), `also_watch` (the ZeroMQ
      socket's descriptor) turned readable, a signal interrupted the wait, or `server` asked to stop
      or to register again (its `_stop_requested` / `_register_requested`, read after each batch);
    - bytes: an answer that did not fit into the response ring (send it over ZeroMQ);
    - a memoryview: the current message is not a well-formed PredictRequest (answer it in Python,
      then call channel.done()).

    Raises PredictFailed (call channel.done() after answering it) and ShmChannelError."""
    cdef Message m
    cdef Py_ssize_t table = 0
    cdef uint64_t batch_id
    cdef uint32_t num_inputs
    cdef Outputs out
    # The server's flags, read after each batch from its instance dict: a third of the cost of two
    # attribute lookups. The dict is where plain attribute writes (stop(), the heartbeat thread) go.
    state = getattr(server, "__dict__", None)
    if type(state) is not dict:
        state = None
    while True:
        if not channel.next_request(wait_millis, also_watch):
            return None
        m.data = channel.payload
        m.size = <Py_ssize_t>channel.size
        m.writable = False  # the ring's view is read-only
        if _read_message(&m, &table) != _predict_request_type:
            return memoryview(channel.message())
        batch_id = 0
        num_inputs = 0
        try:
            # The numeric inputs' base is the channel itself, which holds the mapping (a view
            # object per batch would cost more than the rest of the decoding).
            inputs = _decode_inputs(channel, &m, table, expected_input_type, &batch_id,
                                    &num_inputs)
        except _WireFormatError:
            return memoryview(channel.message())
        out.confidences.clear()
        held = _evaluate(predict_batch, inputs, num_inputs, batch_id, &out)
        del inputs  # zero-copy inputs reference the ring; let them go
        # The request's room goes back before its answer is published: a frontend woken by the answer
        # writes the requests that found its ring full (rpc/shm_transport) and must find the room.
        channel.release_request()
        reply = _emit(batch_id, &out, channel)
        if reply is not None:
            return reply
        if _asked(server, state, "_stop_requested") or _asked(server, state, "_register_requested"):
            return None
