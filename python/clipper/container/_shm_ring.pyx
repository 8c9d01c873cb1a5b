# cython: language_level=3, boundscheck=False, wraparound=False
# distutils: language = c++
"""The replica's side of a shared-memory channel (cpp/rpc/shm_ring.h, compiled from the same header):
receive a request as a read-only view of the mapping, answer into the response ring, sleep on the
request doorbell only after announcing it, ring the frontend's doorbell only when it sleeps.
The doorbell is watched edge-triggered (epoll, EPOLLET) and never read back: each ring is a new edge
whatever the eventfd's count, so a sleep costs one system call (epoll_wait) instead of a poll() and
a read() to drain it.

Optionally (`spin_micros`, default 0) the replica polls the request ring for a bounded time before it
announces sleep: a request arriving within that window costs the frontend no doorbell and the replica
no wake-up (~25 us on a VM whose other vCPU slept), at the price of a CPU burnt while it polls. The
spin adapts (shm::SpinPolicy): after a spin that ran out the next 1, 3, 7 ... 63 sleeps go without
one, so requests arriving further apart than the window stop costing a spin after each.

Built with the clipper-serving wheel; the standalone container SDK may lack it, and then serves over
ZeroMQ only (clipper.container.shm_client).
"""

from cpython.buffer cimport PyBuffer_FillInfo
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.errno cimport errno, EINTR
from libcpp cimport bool as cbool
from posix.mman cimport mmap, munmap, PROT_READ, PROT_WRITE, MAP_SHARED
from posix.stat cimport fstat, struct_stat
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from posix.unistd cimport close, read, write

cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        int fd
        uint64_t u64
    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)
    int EPOLL_CLOEXEC
    int EPOLL_CTL_ADD
    int EPOLL_CTL_DEL
    uint32_t EPOLLIN
    uint32_t EPOLLET

cdef extern from "<sys/mman.h>" nogil:
    void* MAP_FAILED

# The longest spin accepted: beyond a few milliseconds sleeping is cheaper than any wake-up.
MAX_SPIN_MICROS = 10_000


cdef inline uint64_t _monotonic_nanos() noexcept nogil:
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    return <uint64_t>now.tv_sec * 1000000000ULL + <uint64_t>now.tv_nsec

# The ring's declarations and ShmChannel's fields are in _shm_ring.pxd.


class ShmChannelError(RuntimeError):
    """The channel is unusable (a bad mapping, or the frontend's ring is inconsistent)."""


cdef class _Message:
    """A read-only buffer over one request in the mapping. It holds its channel, so the mapping
    outlives every view of it; its bytes are reused once the channel moves past it (done())."""

    def __getbuffer__(self, Py_buffer* buffer, int flags):
        PyBuffer_FillInfo(buffer, self, <void*>self.data, self.size, 1, flags)

    def __releasebuffer__(self, Py_buffer* buffer):
        pass


cdef class ShmChannel:
    """One attached channel. `connection` is the handshake's socket: kept open while attached (the
    frontend learns from its close that the replica left)."""

    def __cinit__(self):
        self.base = NULL
        self.request_doorbell = -1
        self.response_doorbell = -1
        self.epoll = -1
        self.watching = -1
        self.closed = True
        self.spin_micros = 0

    def __init__(self, connection, int memfd, int request_doorbell, int response_doorbell,
                 uint64_t request_capacity, uint64_t response_capacity, unsigned int spin_micros=0):
        """Maps the channel; takes ownership of the three descriptors (the memfd is closed at once:
        the mapping keeps the memory). `spin_micros`: see receive()."""
        cdef struct_stat info
        self.request_doorbell = request_doorbell
        self.response_doorbell = response_doorbell
        self.connection = connection
        try:
            if spin_micros > MAX_SPIN_MICROS:
                raise ValueError(f"spin_micros must be at most {MAX_SPIN_MICROS}, got {spin_micros}")
            self.spin_micros = spin_micros
            self.spin = SpinPolicy(spin_micros)
            if fstat(memfd, &info) != 0:
                raise ShmChannelError("cannot stat the shared-memory channel")
            if <uint64_t>info.st_size != kHeaderBytes + request_capacity + response_capacity:
                raise ShmChannelError(
                    f"the channel holds {info.st_size} bytes, expected "
                    f"{kHeaderBytes + request_capacity + response_capacity}")
            self.mapped = <size_t>info.st_size
            self.base = mmap(NULL, self.mapped, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0)
            if self.base == MAP_FAILED:
                self.base = NULL
                raise ShmChannelError("cannot map the shared-memory channel")
        finally:
            close(memfd)
        cdef ChannelHeader* header = <ChannelHeader*>self.base
        if header.magic != kMagic or header.layout_version != kLayoutVersion:
            raise ShmChannelError("the shared-memory channel has an unknown layout")
        if header.request_capacity != request_capacity or header.response_capacity != response_capacity:
            raise ShmChannelError("the shared-memory channel's sizes disagree with the handshake")
        cdef epoll_event event
        self.epoll = epoll_create1(EPOLL_CLOEXEC)
        if self.epoll < 0:
            raise ShmChannelError("cannot create the channel's epoll descriptor")
        event.events = EPOLLIN | EPOLLET
        event.data.fd = request_doorbell
        if epoll_ctl(self.epoll, EPOLL_CTL_ADD, request_doorbell, &event) != 0:
            raise ShmChannelError("cannot watch the request doorbell")
        cdef uint8_t* rings = <uint8_t*>self.base + kHeaderBytes
        self.requests = RingReader(&header.request, rings, request_capacity)
        self.responses = RingWriter(&header.response, rings + request_capacity, response_capacity)
        self.closed = False

    def __dealloc__(self):
        self._close_descriptors()
        if self.base != NULL:
            munmap(self.base, self.mapped)
            self.base = NULL

    cdef void _close_descriptors(self):
        if self.epoll >= 0:
            close(self.epoll)
            self.epoll = -1
            self.watching = -1
        if self.request_doorbell >= 0:
            close(self.request_doorbell)
            self.request_doorbell = -1
        if self.response_doorbell >= 0:
            close(self.response_doorbell)
            self.response_doorbell = -1

    def close(self):
        """Detaches: the frontend sees the connection close. Views already handed out stay readable
        (the mapping goes with the last of them)."""
        if self.closed:
            return
        self.closed = True
        self._close_descriptors()
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    cdef _Message message(self):
        """A buffer over the current request (the one next_request found), valid until done()."""
        cdef _Message message = _Message.__new__(_Message)
        message.channel = self
        message.data = self.payload
        message.size = <Py_ssize_t>self.size
        return message

    def receive(self, int timeout_millis, int also_watch=-1):
        """The next request as a read-only memoryview of the mapping (valid until done()), or None
        after `timeout_millis` or once `also_watch` (another descriptor, e.g. the ZeroMQ socket's)
        turned readable. Sleeps only after telling the frontend, which then rings the doorbell; with
        `spin_micros` set, first polls the ring that long (without the GIL, not watching `also_watch`)."""
        if self.next_request(timeout_millis, also_watch):
            return memoryview(self.message())
        return None

    cdef int next_request(self, int timeout_millis, int also_watch) except -1:
        cdef const uint8_t* payload = NULL
        cdef size_t size = 0
        cdef RingStatus status
        cdef epoll_event events[2]
        cdef epoll_event event
        cdef int ready, i
        cdef bint watched_fired
        cdef cbool found
        if self.closed:
            raise ShmChannelError("the channel is closed")
        if self.holding:  # the previous request's room goes back to the frontend
            self.holding = False
            self.requests.release()
        while True:
            status = self.requests.peek(payload, size)
            if status == RingStatus.Ready:
                self.payload = payload
                self.size = size
                self.holding = True
                return 1
            if status == RingStatus.Corrupt:
                raise ShmChannelError("the request ring is inconsistent")
            if timeout_millis == 0:
                return 0
            if self.spin.should_spin():
                with nogil:
                    found = self._spin()
                self.spin.spun(found)
                if found:
                    continue
            if self.requests.prepare_to_sleep():
                self.requests.awake()
                continue
            if also_watch != self.watching:
                self._watch(also_watch)
            with nogil:
                ready = epoll_wait(self.epoll, events, 2, timeout_millis)
            self.requests.awake()
            if ready < 0 and errno == EINTR:
                PyErr_CheckSignals()  # run the handlers now (a SIGTERM asks the server to stop)
                return 0
            watched_fired = False
            for i in range(ready):
                if events[i].data.fd == also_watch:
                    watched_fired = True
            timeout_millis = 0  # one more look at the ring, then give up
            if ready > 0 and not watched_fired:
                continue

    cdef int _watch(self, int descriptor) except -1:
        """Watches `descriptor` (level-triggered, as ZeroMQ's descriptor wants) beside the doorbell
        instead of the one watched so far (-1: none)."""
        cdef epoll_event event
        if self.watching >= 0:
            epoll_ctl(self.epoll, EPOLL_CTL_DEL, self.watching, &event)
            self.watching = -1
        if descriptor >= 0:
            event.events = EPOLLIN
            event.data.fd = descriptor
            if epoll_ctl(self.epoll, EPOLL_CTL_ADD, descriptor, &event) != 0:
                raise ShmChannelError(f"cannot watch descriptor {descriptor}")
            self.watching = descriptor
        return 0

    cdef cbool _spin(self) noexcept nogil:
        """Polls the request ring for up to spin_micros; true once something waits. The frontend
        sees no sleeper meanwhile, so it rings no doorbell; sleeping afterwards still goes through
        prepare_to_sleep (announce, look again), so a request arriving after the window is not lost."""
        cdef uint64_t deadline = _monotonic_nanos() + <uint64_t>self.spin_micros * 1000
        while True:
            if self.requests.has_message():
                return True
            cpu_relax()
            if _monotonic_nanos() >= deadline:
                return False

    def done(self):
        """Gives the current request's room back to the frontend."""
        self.release_request()

    cdef void release_request(self) noexcept:
        if self.holding:
            self.holding = False
            self.requests.release()

    def reply(self, const uint8_t[::1] message not None):
        """Writes one message into the response ring; False when it does not fit now (send it over
        ZeroMQ instead)."""
        cdef cbool wake = False
        cdef uint64_t one = 1
        cdef RingStatus status
        if self.closed:
            return False
        with nogil:
            status = self.responses.write(&message[0] if message.shape[0] else <const uint8_t*>&one,
                                          <size_t>message.shape[0], wake)
        if status == RingStatus.Corrupt:
            raise ShmChannelError("the response ring is inconsistent")
        if status != RingStatus.Ready:
            return False
        if wake:
            write(self.response_doorbell, &one, sizeof(one))
        return True

    cdef uint8_t* reserve_reply(self, size_t size) except? NULL:
        cdef RingStatus status = RingStatus.Empty
        cdef uint8_t* at
        if self.closed:
            return NULL
        at = self.responses.reserve(size, status)
        if status == RingStatus.Corrupt:
            raise ShmChannelError("the response ring is inconsistent")
        return at

    cdef void commit_reply(self) noexcept:
        cdef uint64_t one = 1
        if self.responses.commit():
            write(self.response_doorbell, &one, sizeof(one))
