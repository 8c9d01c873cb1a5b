// clipper_native._wire: the container SDK's response encoder in C, the one step of a replica's
// serving loop that costs more than a few microseconds in Python (building a [string] vector is a
// Python-level step per output). Depends on nothing but CPython, so a replica process loads no
// engine libraries. The message layout stays defined in clipper/container/codec.py: the caller
// passes the packed header (which ends with the [float] confidences vector when the model reported
// any) and this only appends the [string] vector body the same way codec.py does, so both write
// the same bytes with and without confidences.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <vector>

// Errors are raised as Python exceptions (PyErr_* then error_already_set), never as C++ exceptions,
// so no other module's exception translator can rename them.

namespace py = pybind11;

namespace {

void put_u32(char* at, uint32_t value) {
  // Flatbuffers are little-endian; so is every platform the wheel is built for.
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "little-endian only");
  std::memcpy(at, &value, sizeof value);
}

// header + [uint32 offset per string] + [uint32 length, UTF-8 bytes, NUL, zero padding to 4]*.
// Element j holds the distance from itself to string j's length field.
py::bytes encode_string_vector_message(py::bytes header, py::list outputs) {
  const Py_ssize_t count = PyList_GET_SIZE(outputs.ptr());
  std::vector<const char*> data(static_cast<std::size_t>(count));
  std::vector<Py_ssize_t> sizes(static_cast<std::size_t>(count));
  char* header_data = nullptr;
  Py_ssize_t header_size = 0;
  PyBytes_AsStringAndSize(header.ptr(), &header_data, &header_size);
  std::size_t total = static_cast<std::size_t>(header_size) + 4 * static_cast<std::size_t>(count);
  for (Py_ssize_t i = 0; i < count; ++i) {
    PyObject* item = PyList_GET_ITEM(outputs.ptr(), i);
    if (!PyUnicode_Check(item)) {
      PyErr_Format(PyExc_TypeError, "output %zd is a %s, not str", i, Py_TYPE(item)->tp_name);
      throw py::error_already_set();
    }
    // Borrowed UTF-8 view; for ASCII strings it is the string's own storage (no copy).
    const char* utf8 = PyUnicode_AsUTF8AndSize(item, &sizes[i]);
    if (utf8 == nullptr) throw py::error_already_set();  // e.g. a lone surrogate
    if (static_cast<uint64_t>(sizes[i]) > UINT32_MAX) {
      PyErr_SetString(PyExc_ValueError, "output longer than 4 GiB");
      throw py::error_already_set();
    }
    data[i] = utf8;
    total += (static_cast<std::size_t>(sizes[i]) + 8) & ~std::size_t{3};
  }
  if (total > UINT32_MAX) {
    PyErr_SetString(PyExc_ValueError, "response larger than 4 GiB");
    throw py::error_already_set();
  }

  PyObject* result = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(total));
  if (result == nullptr) throw py::error_already_set();
  char* out = PyBytes_AS_STRING(result);
  std::memcpy(out, header_data, static_cast<std::size_t>(header_size));
  char* elements = out + header_size;
  char* strings = elements + 4 * count;
  std::size_t start = 4 * static_cast<std::size_t>(count);  // element j: start_j + 4 (count - j)
  for (Py_ssize_t i = 0; i < count; ++i) {
    const std::size_t length = static_cast<std::size_t>(sizes[i]);
    const std::size_t slot = (length + 8) & ~std::size_t{3};
    put_u32(elements + 4 * i, static_cast<uint32_t>(start));
    put_u32(strings, static_cast<uint32_t>(length));
    std::memcpy(strings + 4, data[i], length);
    std::memset(strings + 4 + length, 0, slot - 4 - length);  // NUL terminator and padding
    strings += slot;
    start += slot - 4;
  }
  return py::reinterpret_steal<py::bytes>(result);
}

}  // namespace

PYBIND11_MODULE(_wire, module) {
  module.doc() = "Native helpers for the container SDK's wire codec (clipper.container.codec).";
  module.def("encode_string_vector_message", &encode_string_vector_message, py::arg("header"),
             py::arg("outputs"),
             "header followed by a flatbuffers [string] vector of `outputs` (a list of str), as "
             "clipper.container.codec lays it out.");
}
