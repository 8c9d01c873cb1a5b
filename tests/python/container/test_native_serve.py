"""The replica's ring loop in C (clipper.container._native_codec.serve) against a stand-in frontend in
this process: a real memfd mapping and eventfd doorbells, requests built with the official
flatbuffers Builder, answers read back from the response ring with the generated accessors. What is
checked: batches are answered in order into the response ring with no Python but predict_batch, the
loop hands back what it must (other messages, failures, answers too large for the ring, a stop or
re-registration asked for, an empty ring), and a corrupt ring raises instead of being read."""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time

import numpy as np
import pytest

from clipper.container import shm_client
from clipper.container.codec import InputType, native

from .wire_frontend import build_heartbeat_ack, build_predict_request, decode_replica_message

pytestmark = pytest.mark.skipif(
    not shm_client.available() or native is None,
    reason="the container SDK's Cython extensions are not built (pip install . builds them)",
)

HEADER_BYTES = 4096
MAGIC, LAYOUT_VERSION = 0x314D48535050494C, 1
# ChannelHeader, then one RingControl per ring (tail, head, consumer_sleeping on their own lines).
REQUEST_TAIL, REQUEST_HEAD = 64, 128
RESPONSE_TAIL, RESPONSE_HEAD, RESPONSE_SLEEPING = 256, 320, 384


class StandInFrontend:
    """Both rings' frontend side: publishes requests, reads answers."""

    def __init__(self, request_capacity=1 << 16, response_capacity=1 << 16):
        from clipper.container._shm_ring import ShmChannel

        self.request_capacity, self.response_capacity = request_capacity, response_capacity
        size = HEADER_BYTES + request_capacity + response_capacity
        memfd = os.memfd_create("native-serve-test")
        os.ftruncate(memfd, size)
        self.mapping = mmap.mmap(memfd, size)
        struct.pack_into(
            "<QIIQQ", self.mapping, 0, MAGIC, LAYOUT_VERSION, 0, request_capacity, response_capacity
        )
        self.request_doorbell = os.eventfd(0, os.EFD_NONBLOCK)
        self.response_doorbell = os.eventfd(0, os.EFD_NONBLOCK)
        self.tail = 0
        self.response_head = 0
        self.channel = ShmChannel(
            None,
            memfd,
            os.dup(self.request_doorbell),
            os.dup(self.response_doorbell),
            request_capacity,
            response_capacity,
            0,
        )

    def publish(self, payload: bytes) -> None:
        position = self.tail % self.request_capacity
        struct.pack_into("<I", self.mapping, HEADER_BYTES + position, len(payload))
        start = HEADER_BYTES + position + 16
        self.mapping[start : start + len(payload)] = payload
        self.tail += (16 + len(payload) + 63) // 64 * 64
        struct.pack_into("<Q", self.mapping, REQUEST_TAIL, self.tail)
        if struct.unpack_from("<I", self.mapping, REQUEST_TAIL + 128)[0]:
            os.eventfd_write(self.request_doorbell, 1)

    def answers(self):
        """Every answer written since the last call, decoded."""
        tail = struct.unpack_from("<Q", self.mapping, RESPONSE_TAIL)[0]
        base = HEADER_BYTES + self.request_capacity
        found = []
        while self.response_head < tail:
            position = self.response_head % self.response_capacity
            (length,) = struct.unpack_from("<I", self.mapping, base + position)
            start = base + position + 16
            found.append(decode_replica_message(b"", bytes(self.mapping[start : start + length])))
            self.response_head += (16 + length + 63) // 64 * 64
        struct.pack_into("<Q", self.mapping, RESPONSE_HEAD, self.response_head)
        return found

    def close(self):
        self.channel.close()
        os.close(self.request_doorbell)
        os.close(self.response_doorbell)


class Flags:
    """What serve() reads of the server after each batch."""

    _stop_requested = False
    _register_requested = False


@pytest.fixture
def frontend():
    stand_in = StandInFrontend()
    yield stand_in
    stand_in.close()


def serve(frontend, predict, flags=None, wait_millis=0, also_watch=-1):
    return native.serve(
        frontend.channel, predict, InputType.DOUBLES, flags or Flags(), wait_millis, also_watch
    )


def test_batches_are_answered_in_order_into_the_response_ring(frontend):
    seen = []

    def predict(inputs):
        seen.append(np.array(inputs))
        return [f"{row.sum():g}" for row in inputs]

    for batch_id in range(5):
        rows = np.arange(batch_id + 1, dtype=float).reshape(-1, 1) + np.zeros((1, 3))
        frontend.publish(build_predict_request(100 + batch_id, "doubles", rows))
    assert serve(frontend, predict) is None  # the ring ran empty
    answers = frontend.answers()
    assert [answer.fields["batch_id"] for answer in answers] == [100, 101, 102, 103, 104]
    assert answers[2].fields["outputs"] == ["0", "3", "6"]
    assert [len(rows) for rows in seen] == [1, 2, 3, 4, 5]
    # The ring's room was given back: everything published is consumed.
    assert struct.unpack_from("<Q", frontend.mapping, REQUEST_HEAD)[0] == frontend.tail


def test_a_request_gives_its_room_back_before_its_answer_is_published(frontend):
    """A request that finds the ring full waits in the frontend, which writes it once an answer wakes
    it (rpc/shm_transport): by then the answered request's room must be back. Given back only at
    the next look at the ring, after the answer, a frontend woken by it could find no room, go to
    sleep, and leave the waiting request there while the replica slept on an empty ring."""
    seen = []

    class Watching:
        """Records the rings as serve() reads the stop flag, after each answer is published."""

        _register_requested = False

        @property
        def _stop_requested(self):
            answered = struct.unpack_from("<Q", frontend.mapping, RESPONSE_TAIL)[0]
            seen.append((answered > 0, struct.unpack_from("<Q", frontend.mapping, REQUEST_HEAD)[0]))
            return False

    frontend.publish(build_predict_request(1, "doubles", np.ones((1, 2))))
    assert serve(frontend, lambda inputs: ["0"], Watching()) is None
    assert seen == [(True, frontend.tail)], "answered, and the request's room given back first"


def test_a_message_it_does_not_answer_is_handed_back_as_a_view(frontend):
    frontend.publish(build_predict_request(1, "doubles", np.ones((1, 2))))
    frontend.publish(build_heartbeat_ack(True))
    view = serve(frontend, lambda inputs: ["x"] * len(inputs))
    assert isinstance(view, memoryview) and bytes(view) == build_heartbeat_ack(True)
    assert [answer.fields["batch_id"] for answer in frontend.answers()] == [1]
    frontend.channel.done()
    assert serve(frontend, lambda inputs: ["x"] * len(inputs)) is None


def test_a_batch_of_the_wrong_input_type_is_handed_back(frontend):
    frontend.publish(build_predict_request(4, "floats", np.ones((1, 2))))
    view = serve(frontend, lambda inputs: pytest.fail("must not be called"))
    assert isinstance(view, memoryview)


def test_a_failing_model_raises_predict_failed_with_the_batch(frontend):
    def predict(inputs):
        raise ZeroDivisionError("boom")

    frontend.publish(build_predict_request(9, "doubles", np.ones((3, 2))))
    with pytest.raises(native.PredictFailed) as failed:
        serve(frontend, predict)
    assert (failed.value.batch_id, failed.value.num_inputs) == (9, 3)
    assert isinstance(failed.value.__cause__, ZeroDivisionError)


def test_it_returns_after_the_batch_during_which_a_stop_was_asked(frontend):
    flags = Flags()

    def predict(inputs):
        flags._stop_requested = True
        return ["0"] * len(inputs)

    for batch_id in range(3):
        frontend.publish(build_predict_request(batch_id, "doubles", np.ones((1, 2))))
    assert serve(frontend, predict, flags) is None
    assert [answer.fields["batch_id"] for answer in frontend.answers()] == [0]


def test_an_answer_larger_than_the_ring_room_comes_back_as_bytes():
    frontend = StandInFrontend(response_capacity=4096)
    try:
        frontend.publish(build_predict_request(5, "doubles", np.ones((1, 2))))
        reply = serve(frontend, lambda inputs: ["y" * 5000])
        assert isinstance(reply, bytes)
        assert decode_replica_message(b"", reply).fields["outputs"] == ["y" * 5000]
        assert frontend.answers() == []
    finally:
        frontend.close()


def test_a_request_gives_its_room_back_before_an_answer_sent_over_zeromq_too():
    # The answer the caller sends on the socket wakes the frontend as well: the room must be back.
    frontend = StandInFrontend(response_capacity=4096)
    try:
        frontend.publish(build_predict_request(6, "doubles", np.ones((1, 2))))
        assert isinstance(serve(frontend, lambda inputs: ["y" * 5000]), bytes)
        assert struct.unpack_from("<Q", frontend.mapping, REQUEST_HEAD)[0] == frontend.tail
    finally:
        frontend.close()


def test_it_sleeps_until_the_doorbell_and_rings_a_sleeping_frontend(frontend):
    struct.pack_into("<I", frontend.mapping, RESPONSE_SLEEPING, 1)
    flags = Flags()

    def predict(inputs):
        flags._stop_requested = True
        return ["late"] * len(inputs)

    later = threading.Timer(
        0.05, frontend.publish, [build_predict_request(8, "doubles", np.ones((1, 2)))]
    )
    later.start()
    started = time.monotonic()
    assert serve(frontend, predict, flags, wait_millis=5000) is None
    later.join()
    assert time.monotonic() - started < 4  # woken by the doorbell, not the timeout
    assert [answer.fields["outputs"] for answer in frontend.answers()] == [["late"]]
    assert os.eventfd_read(frontend.response_doorbell) == 1


def test_it_returns_when_the_watched_descriptor_turns_readable(frontend):
    watched = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        threading.Timer(0.05, os.eventfd_write, [watched, 1]).start()
        started = time.monotonic()
        assert serve(frontend, lambda inputs: ["0"], wait_millis=5000, also_watch=watched) is None
        assert time.monotonic() - started < 4
    finally:
        os.close(watched)


def test_a_corrupt_request_ring_raises(frontend):
    struct.pack_into("<Q", frontend.mapping, REQUEST_TAIL, 3)  # not a record boundary
    with pytest.raises(shm_client.ShmChannelError):
        serve(frontend, lambda inputs: ["0"])


def test_the_model_gets_a_read_only_view_that_keeps_the_mapping_alive():
    """predict_batch's inputs view the request ring in place, cannot be written, and hold the
    mapping: a model that keeps them can read them after the channel is closed and dropped."""
    import gc

    stand_in = StandInFrontend()
    kept = []

    def predict(inputs):
        kept.append(inputs)
        return ["0"] * len(inputs)

    values = np.arange(12.0).reshape(3, 4)
    stand_in.publish(build_predict_request(9, "doubles", values))
    assert serve(stand_in, predict) is None
    (inputs,) = kept
    assert not inputs.flags.writeable and not inputs.flags.owndata
    with pytest.raises(ValueError):
        inputs[0, 0] = 1.0
    stand_in.close()
    stand_in.mapping.close()  # only the channel's mapping is left, held by the inputs
    del stand_in
    gc.collect()
    np.testing.assert_array_equal(inputs, values)
