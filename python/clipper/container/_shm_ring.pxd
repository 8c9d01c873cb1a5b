# cython: language_level=3
# distutils: language = c++
# The shared-memory channel's C-level interface, so that clipper.container._native_codec can encode a
# response directly into the response ring (reserve, write in place, commit) without a copy.

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libcpp cimport bool as cbool

cdef extern from "rpc/shm_ring.h" namespace "clipper::shm" nogil:
    cdef enum class RingStatus "clipper::shm::RingStatus":
        Ready
        Empty
        Corrupt
    cdef cppclass RingControl:
        pass
    cdef cppclass ChannelHeader:
        uint64_t magic
        uint32_t layout_version
        uint64_t request_capacity
        uint64_t response_capacity
        RingControl request
        RingControl response
    cdef cppclass RingWriter:
        RingWriter()
        RingWriter(RingControl* control, uint8_t* data, size_t capacity)
        cbool fits(size_t size)
        uint8_t* reserve(size_t size, RingStatus& status)
        cbool commit()
        RingStatus write(const uint8_t* payload, size_t size, cbool& wake)
    cdef cppclass RingReader:
        RingReader()
        RingReader(RingControl* control, const uint8_t* data, size_t capacity)
        RingStatus peek(const uint8_t*& payload, size_t& size)
        void release()
        cbool prepare_to_sleep()
        void awake()
        cbool has_message()
    cdef cppclass SpinPolicy:
        SpinPolicy()
        SpinPolicy(uint32_t micros)
        uint32_t micros()
        cbool should_spin()
        void spun(cbool found)
    void cpu_relax()
    size_t kHeaderBytes
    uint64_t kMagic
    uint32_t kLayoutVersion


cdef class _Message:
    cdef ShmChannel channel
    cdef const uint8_t* data
    cdef Py_ssize_t size


cdef class ShmChannel:
    cdef object connection
    cdef int request_doorbell
    # Watches the request doorbell (edge-triggered) and the caller's other descriptor (`watching`).
    cdef int epoll
    cdef int watching
    cdef int response_doorbell
    cdef void* base
    cdef size_t mapped
    cdef RingReader requests
    cdef RingWriter responses
    cdef bint holding
    cdef readonly bint closed
    # Microseconds receive() polls the request ring before it announces sleep (0: sleeps at once).
    cdef readonly unsigned int spin_micros
    # Whether to spin this time, backing off while spins run out (see shm::SpinPolicy).
    cdef SpinPolicy spin

    # The current request (next_request found it; its room is released by done() or the next call).
    cdef const uint8_t* payload
    cdef size_t size

    cdef void _close_descriptors(self)
    cdef int _watch(self, int descriptor) except -1
    # Makes the next request current: 1 once one is, 0 when none came within `timeout_millis` (0: do
    # not wait), or `also_watch` turned readable, or a signal interrupted the wait (its handler ran).
    # Raises ShmChannelError when the channel is closed or the frontend corrupted the ring.
    cdef int next_request(self, int timeout_millis, int also_watch) except -1
    # A buffer over the current request, valid until done() (it keeps the mapping alive).
    cdef _Message message(self)
    # done() for C callers: gives the current request's room back to the frontend.
    cdef void release_request(self) noexcept
    cdef cbool _spin(self) noexcept nogil

    # Room for a response of `size` bytes in the response ring, or NULL when there is none now (the
    # caller then sends it over ZeroMQ). Raises ShmChannelError when the frontend corrupted the ring.
    cdef uint8_t* reserve_reply(self, size_t size) except? NULL
    # Publishes the reserved response and rings the frontend's doorbell when it sleeps.
    cdef void commit_reply(self) noexcept
