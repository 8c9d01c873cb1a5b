"""The replica's ring reader (clipper.container._shm_ring) against a stand-in frontend in this process:
a real memfd mapping and real eventfd doorbells, the frontend's side of the protocol written out here
(cpp/rpc/shm_ring.h: publish the record, then look at `consumer_sleeping`, ring only a sleeper).
What is checked: the bounded spin receives a request without the doorbell, and a request published
after the spin window still wakes the (announced) sleeper."""

import mmap
import os
import struct
import threading
import time

import pytest

from clipper.container import shm_client

pytestmark = pytest.mark.skipif(not shm_client.available(), reason="the container SDK's Cython extension clipper.container._shm_ring is not built (pip install . builds it)")

HEADER_BYTES = 4096
CAPACITY = 4096
MAGIC, LAYOUT_VERSION = 0x314D48535050494C, 1
# ChannelHeader: magic, layout version, reserved, two capacities; then RingControl (tail, head,
# consumer_sleeping, each on its own cache line) for the request ring, then the response ring.
REQUEST_TAIL, REQUEST_SLEEPING = 64, 192


class StandInFrontend:
    """The producer side of a channel's request ring."""

    def __init__(self, spin_micros):
        from clipper.container._shm_ring import ShmChannel

        size = HEADER_BYTES + 2 * CAPACITY
        memfd = os.memfd_create("shm-ring-test")
        os.ftruncate(memfd, size)
        self.mapping = mmap.mmap(memfd, size)
        struct.pack_into("<QIIQQ", self.mapping, 0, MAGIC, LAYOUT_VERSION, 0, CAPACITY, CAPACITY)
        self.request_doorbell = os.eventfd(0, os.EFD_NONBLOCK)
        response_doorbell = os.eventfd(0, os.EFD_NONBLOCK)
        self.rings = 0  # doorbells rung
        self.tail = 0
        # The channel owns (closes) these descriptors: hand it duplicates of the ones kept here.
        self.channel = ShmChannel(
            None,
            memfd,
            os.dup(self.request_doorbell),
            response_doorbell,
            CAPACITY,
            CAPACITY,
            spin_micros,
        )

    def sleeping(self):
        return struct.unpack_from("<I", self.mapping, REQUEST_SLEEPING)[0] != 0

    def publish(self, payload):
        """Writes one record, publishes it; rings the doorbell when the replica sleeps. Returns
        whether it did."""
        position = self.tail % CAPACITY
        struct.pack_into("<I", self.mapping, HEADER_BYTES + position, len(payload))
        start = HEADER_BYTES + position + 16
        self.mapping[start : start + len(payload)] = payload
        self.tail += (16 + len(payload) + 63) // 64 * 64
        struct.pack_into("<Q", self.mapping, REQUEST_TAIL, self.tail)
        if self.sleeping():
            os.eventfd_write(self.request_doorbell, 1)
            self.rings += 1
            return True
        return False

    def close(self):
        self.channel.close()
        os.close(self.request_doorbell)


@pytest.fixture
def frontend(request):
    stand_in = StandInFrontend(request.param)
    yield stand_in
    stand_in.close()


def publish_later(frontend, payload, when):
    """Publishes `payload` from another thread once `when()` holds; returns (thread, outcome)."""
    outcome = {}

    def run():
        deadline = time.monotonic() + 5
        while not when() and time.monotonic() < deadline:
            time.sleep(0.0002)
        outcome["at"] = time.monotonic()
        outcome["rang"] = frontend.publish(payload)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("frontend", [10_000], indirect=True)  # a 10 ms window
def test_a_request_within_the_spin_window_arrives_without_a_doorbell(frontend):
    started = time.monotonic()
    thread, outcome = publish_later(frontend, b"within", lambda: time.monotonic() > started + 0.002)
    message = frontend.channel.receive(5_000)
    thread.join()
    assert bytes(message) == b"within"
    # The replica never announced sleep: the frontend saw no sleeper and rang nothing.
    assert outcome["rang"] is False and frontend.rings == 0
    frontend.channel.done()


@pytest.mark.parametrize("frontend", [0, 1_000], indirect=True)
def test_a_request_after_the_spin_window_wakes_the_sleeping_replica(frontend):
    # Published only once the replica announced sleep (after its spin, if any): no lost wake-up.
    thread, outcome = publish_later(frontend, b"after the window", frontend.sleeping)
    started = time.monotonic()
    message = frontend.channel.receive(30_000)
    elapsed = time.monotonic() - started
    thread.join()
    assert outcome["rang"] is True and frontend.rings == 1
    assert bytes(message) == b"after the window"
    assert elapsed < 10  # woken by the doorbell, not by receive's 30 s timeout
    frontend.channel.done()
    assert not frontend.sleeping()  # awake again once it has the request


@pytest.mark.parametrize("frontend", [1_000], indirect=True)
def test_spinning_gives_up_at_the_timeout_like_sleeping(frontend):
    assert frontend.channel.receive(20) is None
    assert frontend.channel.receive(0) is None


def test_a_spin_longer_than_the_bound_is_refused():
    from clipper.container._shm_ring import MAX_SPIN_MICROS

    with pytest.raises(ValueError, match="spin_micros"):
        StandInFrontend(MAX_SPIN_MICROS + 1)


@pytest.mark.parametrize("frontend", [10_000], indirect=True)  # a 10 ms window
def test_after_a_spin_that_ran_out_the_next_sleep_goes_without_one(frontend):
    # A request later than the window: the spin runs out, the replica sleeps and is rung awake.
    thread, outcome = publish_later(frontend, b"late", frontend.sleeping)
    assert bytes(frontend.channel.receive(30_000)) == b"late"
    thread.join()
    assert outcome["rang"] is True
    # Backing off: the next wait announces sleep at once, not after a 10 ms spin.
    thread, outcome = publish_later(frontend, b"soon", frontend.sleeping)
    called = time.monotonic()
    assert bytes(frontend.channel.receive(30_000)) == b"soon"
    thread.join()
    assert outcome["rang"] is True
    assert outcome["at"] - called < 0.008, "the replica spun right after a spin that ran out"
    # The back-off was one sleep: the next wait spins again and catches a request 2 ms later.
    started = time.monotonic()
    thread, outcome = publish_later(frontend, b"caught", lambda: time.monotonic() > started + 0.002)
    assert bytes(frontend.channel.receive(30_000)) == b"caught"
    thread.join()
    assert outcome["rang"] is False and frontend.rings == 2
    frontend.channel.done()
