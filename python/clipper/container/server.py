"""The replica's serving loop: sockets, registration, heartbeats (docs/interfaces.md, section 2).

Owns the two ZeroMQ DEALER sockets and the thread of each, and the shared-memory channel when the
frontend offers one (a replica on its host, see clipper.container.shm_client). The caller's thread runs
serve_forever(): it registers, then receives a PredictRequest (from the channel's request ring or the
data socket), calls predict_batch and sends the PredictResponse (into the response ring when attached),
one batch at a time. A background thread ("clipper-heartbeat") owns the heartbeat socket, reports liveness even
while a batch runs, and asks the main loop to register again when the frontend no longer knows us.
Message encoding and decoding live in codec.py; this module only moves bytes and handles failures.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import flatbuffers
import zmq
import zmq.utils.monitor

from clipper.container import shm_client
from clipper.container.codec import (
    InputType,
    Payload,
    WireFormatError,
    convert_outputs,
    decode_heartbeat_ack,
    decode_predict_request,
    encode_heartbeat,
    encode_predict_error,
    encode_predict_response,
    encode_register,
    native,
    parse_input_type,
    read_message,
)
from clipper.container.credentials import ReplicaCredentials
from clipper.container.model import Model
from clipper.wire import container_defaults

logger = logging.getLogger(__name__)

# From Clipper's one source of defaults (src/clipper_native/defaults.json), generated at build time.
DEFAULT_FRONTEND_ADDRESS = f"tcp://{container_defaults.BIND_ADDRESS}:{container_defaults.RPC_PORT}"
DEFAULT_HEARTBEAT_INTERVAL_S = container_defaults.HEARTBEAT_INTERVAL_MILLIS / 1000
DEFAULT_INPUT_TYPE = "doubles"  # Clipper's containers default to doubles as well

# Environment variables read when an option is not given (the names Clipper's containers use).
ENV_MODEL_NAME = "CLIPPER_MODEL_NAME"
ENV_MODEL_VERSION = "CLIPPER_MODEL_VERSION"
ENV_INPUT_TYPE = "CLIPPER_INPUT_TYPE"
ENV_FRONTEND_HOST = "CLIPPER_IP"
ENV_FRONTEND_PORT = "CLIPPER_PORT"
ENV_REPLICA_ID = "CLIPPER_REPLICA_ID"
ENV_TRANSPORT = "CLIPPER_TRANSPORT"
ENV_SHM_SPIN_MICROS = "CLIPPER_SHM_SPIN_MICROS"
# Bound of shm_spin_micros (the extension's MAX_SPIN_MICROS): longer, sleeping is cheaper.
MAX_SHM_SPIN_MICROS = 10_000
TRANSPORTS = ("auto", "zmq")

_ENDPOINT_SCHEMES = ("tcp://", "ipc://", "inproc://")


@dataclass(frozen=True)
class ContainerOptions:
    """Everything a replica needs to serve; validated once, at construction."""

    # Name and version the replica registers under; the frontend routes that model version's batches
    # to it. Required.
    model_name: str
    model_version: str
    # What the model's predict_batch receives. A name or alias ("doubles", "d", ...) is accepted and
    # stored as the InputType it names.
    input_type: InputType = InputType.DOUBLES
    # The frontend's model RPC endpoint (its ROUTER socket), as a ZeroMQ address.
    frontend_address: str = DEFAULT_FRONTEND_ADDRESS
    # Identifier chosen by the container manager, reported in the frontend's replica listing;
    # -1 lets the frontend number replicas itself.
    replica_id: int = -1
    # Time between two heartbeats. The frontend drops a replica silent for its heartbeat timeout
    # (2 s by default), so keep this well below it.
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    # Longest time the main loop waits for a batch before it looks at stop and re-register requests:
    # bounds how long stop() and a frontend restart take to be noticed when no batch arrives.
    receive_timeout_s: float = 0.1
    # Longest time sending one response may block (the frontend stopped reading); the response is
    # then dropped and logged, since the frontend re-queues or defaults that batch by itself.
    send_timeout_s: float = 1.0
    # CURVE keys for the frontend's RPC port (clipper.container.credentials); None connects without
    # authentication, which only a frontend started with allow_unauthenticated_replicas accepts.
    credentials: ReplicaCredentials | None = None
    # "auto": ask the frontend for shared-memory rings (granted to replicas on its host, when this
    # installation has the extension); "zmq": ZeroMQ only.
    transport: str = "auto"
    # Over shared memory: microseconds the replica polls its request ring before it sleeps. A request
    # arriving meanwhile costs no doorbell and no wake-up (~25 us each on a VM); the price is a CPU
    # kept busy for that long after every batch. 0 (the default) sleeps at once.
    shm_spin_micros: int = 0

    def __post_init__(self) -> None:
        for field in ("model_name", "model_version"):
            value = getattr(self, field)
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
                object.__setattr__(self, field, value)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(
                    f"ContainerOptions.{field} must be a non-empty string, got {value!r}"
                )
        try:
            object.__setattr__(self, "input_type", parse_input_type(self.input_type))
        except ValueError as exc:
            raise ValueError(f"ContainerOptions.input_type: {exc}") from None
        if not isinstance(self.frontend_address, str) or not self.frontend_address.startswith(
            _ENDPOINT_SCHEMES
        ):
            raise ValueError(
                f"ContainerOptions.frontend_address must be a ZeroMQ endpoint such as "
                f"{DEFAULT_FRONTEND_ADDRESS!r}, got {self.frontend_address!r}"
            )
        if isinstance(self.replica_id, bool) or not isinstance(self.replica_id, int):
            raise TypeError(f"ContainerOptions.replica_id must be an int, got {self.replica_id!r}")
        if self.replica_id < -1:
            raise ValueError(
                f"ContainerOptions.replica_id must be -1 (frontend picks) or >= 0, got {self.replica_id}"
            )
        if self.transport not in TRANSPORTS:
            raise ValueError(
                f"ContainerOptions.transport must be one of {', '.join(TRANSPORTS)}, "
                f"got {self.transport!r}"
            )
        if (
            isinstance(self.shm_spin_micros, bool)
            or not isinstance(self.shm_spin_micros, int)
            or not 0 <= self.shm_spin_micros <= MAX_SHM_SPIN_MICROS
        ):
            raise ValueError(
                f"ContainerOptions.shm_spin_micros must be an int from 0 to {MAX_SHM_SPIN_MICROS}, "
                f"got {self.shm_spin_micros!r}"
            )
        for field in ("heartbeat_interval_s", "receive_timeout_s", "send_timeout_s"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(
                    f"ContainerOptions.{field} must be a positive number of seconds, got {value!r}"
                )
        if self.credentials is not None and not isinstance(self.credentials, ReplicaCredentials):
            raise TypeError("ContainerOptions.credentials must be a ReplicaCredentials or None")

    @classmethod
    def from_environment(
        cls,
        *,
        model_name: str | None = None,
        model_version: str | int | None = None,
        input_type: str | InputType | None = None,
        frontend_address: str | None = None,
        replica_id: int | None = None,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        environ: Any = None,
        credentials: ReplicaCredentials | None = None,
        transport: str | None = None,
        shm_spin_micros: int | None = None,
    ) -> ContainerOptions:
        """Options from the arguments given, falling back for each one left None to the environment
        (CLIPPER_MODEL_NAME, CLIPPER_MODEL_VERSION, CLIPPER_INPUT_TYPE, CLIPPER_IP and CLIPPER_PORT,
        CLIPPER_REPLICA_ID, CLIPPER_RPC_CREDENTIALS or CLIPPER_RPC_CREDENTIALS_FILE,
        CLIPPER_TRANSPORT, CLIPPER_SHM_SPIN_MICROS), then to the defaults. Raises ValueError naming
        what is missing."""
        env = os.environ if environ is None else environ
        if credentials is None:
            credentials = ReplicaCredentials.from_environment(env)
        model_name = model_name if model_name is not None else env.get(ENV_MODEL_NAME)
        model_version = model_version if model_version is not None else env.get(ENV_MODEL_VERSION)
        missing = [
            f"{option} (or {variable})"
            for option, variable, value in (
                ("model_name", ENV_MODEL_NAME, model_name),
                ("model_version", ENV_MODEL_VERSION, model_version),
            )
            if value in (None, "")
        ]
        if missing or model_name is None:
            raise ValueError(f"a model container needs {' and '.join(missing)}")
        if input_type is None:
            input_type = env.get(ENV_INPUT_TYPE) or DEFAULT_INPUT_TYPE
        try:
            parsed_input_type = parse_input_type(input_type)
        except ValueError as exc:
            raise ValueError(f"input_type (or {ENV_INPUT_TYPE}): {exc}") from None
        if frontend_address is None:
            frontend_address = _address_from_environment(env)
        if replica_id is None:
            text = env.get(ENV_REPLICA_ID, "").strip()
            try:
                replica_id = int(text) if text else -1
            except ValueError:
                raise ValueError(f"{ENV_REPLICA_ID} must be an integer, got {text!r}") from None
        if transport is None:
            transport = env.get(ENV_TRANSPORT, "").strip() or "auto"
        if shm_spin_micros is None:
            text = env.get(ENV_SHM_SPIN_MICROS, "").strip()
            try:
                shm_spin_micros = int(text) if text else 0
            except ValueError:
                raise ValueError(
                    f"{ENV_SHM_SPIN_MICROS} must be an integer, got {text!r}"
                ) from None
        return cls(
            model_name=model_name,
            model_version=str(model_version),
            input_type=parsed_input_type,
            frontend_address=frontend_address,
            replica_id=replica_id,
            heartbeat_interval_s=heartbeat_interval_s,
            credentials=credentials,
            transport=transport,
            shm_spin_micros=shm_spin_micros,
        )


def _address_from_environment(env: Any) -> str:
    host = env.get(ENV_FRONTEND_HOST, "").strip()
    port = env.get(ENV_FRONTEND_PORT, "").strip()
    if not host and not port:
        return DEFAULT_FRONTEND_ADDRESS
    host = host or container_defaults.BIND_ADDRESS
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"tcp://{host}:{port or container_defaults.RPC_PORT}"


def _quote(text: str) -> str:
    """A log field value on one line, quoted when it has spaces."""
    return json.dumps(text) if any(c.isspace() or c == '"' for c in text) else text


class ModelServer:
    """Serves one model to one frontend until stop() is called.

    `serve_forever()` runs on the caller's thread and returns after `stop()`; a ModelServer serves
    once (create another to serve again). Use `run()` for a process that should also stop on SIGTERM
    and SIGINT.
    """

    def __init__(self, model: Model, options: ContainerOptions) -> None:
        if not callable(getattr(model, "predict_batch", None)):
            raise TypeError(
                f"{type(model).__name__} has no predict_batch method: subclass "
                "clipper.container.Model and implement predict_batch(self, inputs)"
            )
        self.model = model
        self.options = options
        # Bound once: each batch calls it (a bound method built per batch costs an allocation).
        self._predict = model.predict_batch
        # The data socket's routing id; the heartbeat names it so the frontend can tell who is alive.
        self.replica_key = f"replica-{uuid.uuid4().hex}"
        self._stop_requested = False
        self._register_requested = False
        self._heartbeat_error: BaseException | None = None
        self._serving = threading.Event()
        self._started = False
        self._builder = flatbuffers.Builder(1024)  # the main thread's, for registers and errors
        # Shared memory: asked for while the extension is there and no offer failed; the channel
        # while attached (main thread only).
        self._wants_shared_memory = options.transport == "auto" and shm_client.available()
        self._channel: Any = None
        self._log_fields = (
            f"model={_quote(options.model_name)} version={_quote(options.model_version)}"
        )

    def stop(self) -> None:
        """Asks serve_forever() to return once the current batch is answered. Any thread, and signal
        handlers, may call it (it only sets a flag)."""
        self._stop_requested = True

    def wait_until_serving(self, timeout_s: float | None = None) -> bool:
        """True once serve_forever() has connected and sent its registration."""
        return self._serving.wait(timeout_s)

    def serve_forever(self) -> None:
        """Registers and answers batches on the calling thread until stop(). Raises RuntimeError when
        called twice, or when the heartbeat thread failed (the frontend would have dropped us)."""
        if self._started:
            raise RuntimeError("this ModelServer already served; create a new one to serve again")
        self._started = True
        options = self.options
        # A context of our own: terminating it can never wait on sockets someone else opened.
        context = zmq.Context()
        data_socket = context.socket(zmq.DEALER)
        heartbeat_thread: threading.Thread | None = None
        try:
            data_socket.setsockopt(zmq.ROUTING_ID, self.replica_key.encode())
            data_socket.setsockopt(zmq.LINGER, 0)
            data_socket.setsockopt(zmq.RCVTIMEO, max(1, round(options.receive_timeout_s * 1000)))
            data_socket.setsockopt(zmq.SNDTIMEO, max(1, round(options.send_timeout_s * 1000)))
            _configure_security(data_socket, options)
            data_socket.connect(options.frontend_address)
            data_socket.send(self._register_message())
            logger.info(
                "event=registering %s input_type=%s replica=%d frontend=%s replica_key=%s auth=%s "
                "shared_memory=%s",
                self._log_fields,
                options.input_type.wire_name,
                options.replica_id,
                options.frontend_address,
                self.replica_key,
                "none" if options.credentials is None else "curve",
                "asked" if self._wants_shared_memory else "no",
            )
            heartbeat_thread = threading.Thread(
                target=self._heartbeat_loop, args=(context,), name="clipper-heartbeat", daemon=True
            )
            heartbeat_thread.start()
            # The model and the modules loaded so far live as long as the replica: take them out of
            # the collector's view, so collections during serving stay short.
            gc.collect()
            gc.freeze()
            self._serving.set()
            self._serve(data_socket)
        finally:
            self._stop_requested = True
            self._detach()
            if heartbeat_thread is not None:
                heartbeat_thread.join(timeout=5.0)
            data_socket.close(linger=0)
            if heartbeat_thread is None or not heartbeat_thread.is_alive():
                context.term()
            self._serving.clear()
            logger.info("event=stopped %s", self._log_fields)
        if self._heartbeat_error is not None:
            raise RuntimeError(
                f"model {self.options.model_name!r} stopped serving: its heartbeat thread failed "
                f"({type(self._heartbeat_error).__name__}: {self._heartbeat_error})"
            ) from self._heartbeat_error

    def _register_message(self) -> bytes:
        options = self.options
        return bytes(
            encode_register(
                self._builder,
                options.model_name,
                options.model_version,
                options.input_type,
                options.replica_id,
                shared_memory=self._wants_shared_memory,
            )
        )

    def _serve(self, data_socket: zmq.Socket) -> None:
        receive = data_socket.recv
        send = data_socket.send
        zmq_descriptor = data_socket.getsockopt(zmq.FD)
        wait_millis = max(1, round(self.options.receive_timeout_s * 1000))
        # The socket had nothing at the last look (ZMQ_EVENTS, which costs ZeroMQ a poll() and a
        # getpid() each time) and since then neither did its descriptor fire nor did we send on it:
        # it has nothing now either, so a batch from the ring costs no look at the socket.
        socket_quiet = False
        while not self._stop_requested:
            if self._register_requested:
                self._register_requested = False
                self._detach()  # a frontend that forgot us also forgot our channel
                send(self._register_message())
                socket_quiet = False
                logger.info("event=registering_again %s", self._log_fields)
            channel = self._channel
            if channel is not None:
                # Attached: requests come from the ring, and over the socket when a batch did not fit.
                try:
                    reply = self._serve_ring(
                        channel, wait_millis if socket_quiet else 0, zmq_descriptor
                    )
                except shm_client.ShmChannelError as exc:
                    logger.error(
                        "event=shm_channel_failed %s error=%s", self._log_fields, _quote(str(exc))
                    )
                    self._detach()
                    self._register_requested = True
                    continue
                if reply is not None:
                    self._send_reply(send, reply)  # larger than the ring's room: the socket
                    socket_quiet = False
                    continue
                if socket_quiet:
                    # The wait ended without a request: its timeout, or the socket's descriptor fired.
                    socket_quiet = False
                    continue
                socket_quiet = not data_socket.getsockopt(zmq.EVENTS) & zmq.POLLIN
                if socket_quiet:
                    continue
                try:
                    frame = receive(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    continue
            else:
                try:
                    frame = receive(copy=False)
                except zmq.Again:
                    continue
            reply = self._answer(frame.buffer)
            del frame  # a zero-copy input keeps its frame alive; let it go unless the model kept it
            if reply is not None:
                self._send_reply(send, reply)

    def _serve_ring(self, channel: Any, wait_millis: int, zmq_descriptor: int) -> bytes | None:
        """Answers the ring's batches until it is empty (waiting up to `wait_millis` for one), the
        socket's descriptor fires, or a stop or registration is asked for. Returns what must go over
        the socket instead (an answer larger than the ring's room), else None."""
        if native is None:  # the pure-Python codec: one batch per call
            view = channel.receive(wait_millis, zmq_descriptor)
            if view is None:
                return None
            reply = self._answer_in_python(view)
            channel.done()
            return None if reply is None or channel.reply(reply) else reply
        while True:
            try:
                outcome = native.serve(
                    channel,
                    self._predict,
                    self.options.input_type,
                    self,
                    wait_millis,
                    zmq_descriptor,
                )
            except native.PredictFailed as failed:
                reply = self._predict_failed(failed.batch_id, failed.num_inputs, failed.__cause__)
            else:
                if outcome is None or isinstance(outcome, bytes):
                    return outcome
                reply = self._answer_in_python(outcome)  # not a PredictRequest we answer natively
            channel.done()
            if reply is not None and not channel.reply(reply):
                return reply
            if self._stop_requested or self._register_requested:
                return None

    def _send_reply(self, send: Any, reply: bytes) -> None:
        try:
            send(reply, copy=False)
        except zmq.Again:
            logger.warning(
                "event=response_dropped %s reason=frontend_not_reading", self._log_fields
            )

    def _take_offer(self, buffer: Any, table: int) -> None:
        """Attaches to the channel a SharedMemoryOffer names; else registers again without asking."""
        try:
            socket_path, token = shm_client.decode_offer(buffer, table)
            self._detach()
            self._channel = shm_client.attach(socket_path, token, self.options.shm_spin_micros)
        except (OSError, shm_client.ShmChannelError, WireFormatError) as exc:
            logger.warning(
                "event=shm_unavailable %s error=%s fallback=zmq", self._log_fields, _quote(str(exc))
            )
            self._wants_shared_memory = False
            self._register_requested = True
            return
        logger.info(
            "event=shm_attached %s socket=%s spin_micros=%d",
            self._log_fields,
            socket_path,
            self.options.shm_spin_micros,
        )

    def _detach(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def _answer(self, buffer: Any, channel: Any = None) -> bytes | None:
        """The response to one received message, or None when it warrants none or was written into
        `channel`'s response ring. A well-formed PredictRequest takes the native path when the
        extension is built (decode, predict_batch, encode in one call: predict_batch is the only
        Python it runs); everything else, and every batch without the extension, the Python one."""
        if native is not None:
            try:
                reply = native.answer(buffer, self._predict, self.options.input_type, channel)
            except native.PredictFailed as failed:
                return self._predict_failed(failed.batch_id, failed.num_inputs, failed.__cause__)
            if reply is not NotImplemented:
                return reply
        return self._answer_in_python(buffer)

    def _predict_failed(self, batch_id: int, num_inputs: int, exc: BaseException | None) -> bytes:
        """The error response for a batch whose predict_batch raised (or answered unsendably)."""
        error = f"{type(exc).__name__}: {exc}"
        logger.error(
            "event=predict_failed %s batch=%d inputs=%d error=%s",
            self._log_fields,
            batch_id,
            num_inputs,
            _quote(error),
            exc_info=exc,
        )
        return bytes(encode_predict_error(self._builder, batch_id, error))

    def _answer_in_python(self, buffer: Any) -> bytes | None:
        """_answer with the pure-Python codec (clipper.container.codec)."""
        try:
            payload_type, table = read_message(buffer)
            if payload_type == Payload.SharedMemoryOffer:
                self._take_offer(buffer, table)
                return None
            if payload_type != Payload.PredictRequest:
                logger.debug(
                    "event=message_ignored %s payload_type=%d", self._log_fields, payload_type
                )
                return None
            batch = decode_predict_request(buffer, table, self.options.input_type)
        except WireFormatError as exc:
            logger.error(
                "event=request_rejected %s batch=%s error=%s",
                self._log_fields,
                exc.batch_id,
                _quote(str(exc)),
            )
            if exc.batch_id is None:
                return None
            return bytes(
                encode_predict_error(self._builder, exc.batch_id, f"WireFormatError: {exc}")
            )
        try:
            outputs, confidences = (
                convert_outputs(self.model.predict_batch(batch.inputs), batch.num_inputs)
                if batch.num_inputs
                else ([], None)
            )
        except Exception as exc:  # noqa: BLE001 - the model's failure fails this batch only
            return self._predict_failed(batch.batch_id, batch.num_inputs, exc)
        return encode_predict_response(batch.batch_id, outputs, confidences)

    def _heartbeat_loop(self, context: zmq.Context) -> None:
        """The heartbeat thread's body; it owns `socket` from creation to close."""
        options = self.options
        socket = context.socket(zmq.DEALER)
        refusals: zmq.Socket | None = None
        try:
            socket.setsockopt(zmq.LINGER, 0)
            # Queue nothing while disconnected: stale heartbeats are worthless to a restarted frontend.
            socket.setsockopt(zmq.IMMEDIATE, 1)
            _configure_security(socket, options)
            refusals = socket.get_monitor_socket(_REFUSED_HANDSHAKES)
            socket.connect(options.frontend_address)
            heartbeat = bytes(encode_heartbeat(flatbuffers.Builder(128), self.replica_key))
            next_refusal_log = 0.0
            poll_cap_s = min(options.receive_timeout_s, options.heartbeat_interval_s)
            # The first beat waits one interval, so the registration (other socket) usually lands first.
            next_beat = time.monotonic() + options.heartbeat_interval_s
            while not self._stop_requested:
                now = time.monotonic()
                if now >= next_beat:
                    with contextlib.suppress(zmq.Again):  # not connected: nobody to tell
                        socket.send(heartbeat, zmq.NOBLOCK)
                    next_beat = now + options.heartbeat_interval_s
                    if refusals.poll(0) and now >= next_refusal_log:
                        self._log_refusal(refusals)
                        next_refusal_log = now + _REFUSAL_LOG_INTERVAL_S
                wait_s = min(max(next_beat - now, 0.0), poll_cap_s)
                if socket.poll(round(wait_s * 1000), zmq.POLLIN):
                    self._read_acknowledgements(socket)
        except Exception as exc:
            if not self._stop_requested:
                # Without heartbeats the frontend drops this replica: stop, so its manager restarts it.
                logger.exception("event=heartbeat_failed %s", self._log_fields)
                self._heartbeat_error = exc
                self._stop_requested = True
        finally:
            if refusals is not None:
                with contextlib.suppress(zmq.ZMQError):
                    socket.disable_monitor()
                refusals.close(linger=0)
            socket.close(linger=0)

    def _log_refusal(self, refusals: zmq.Socket) -> None:
        """The frontend refused the handshake (it never sees this replica): say why, once in a while."""
        refused = 0
        while refusals.poll(0):
            zmq.utils.monitor.recv_monitor_message(refusals)
            refused += 1
        if self.options.credentials is None:
            advice = (
                "the frontend requires replica credentials: pass --rpc-credentials-file "
                "<state_dir>/replica_credentials.json or set CLIPPER_RPC_CREDENTIALS"
            )
        else:
            advice = (
                "the frontend did not admit this replica's key (use the cluster's "
                "replica_credentials.json), or it admits replicas without keys only"
            )
        logger.error(
            "event=frontend_refused_replica %s handshakes_refused=%d advice=%s",
            self._log_fields,
            refused,
            _quote(advice),
        )

    def _read_acknowledgements(self, socket: zmq.Socket) -> None:
        while True:
            try:
                frame = socket.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                payload_type, table = read_message(frame.buffer)
                if payload_type != Payload.HeartbeatAck:
                    continue
                registered = decode_heartbeat_ack(frame.buffer, table)
            except WireFormatError as exc:
                logger.warning(
                    "event=heartbeat_ack_rejected %s error=%s", self._log_fields, _quote(str(exc))
                )
                continue
            if not registered and not self._register_requested:
                logger.info("event=frontend_forgot_replica %s", self._log_fields)
                self._register_requested = True


# The heartbeat socket's handshake failures: the frontend refused our keys (or our lack of them).
_REFUSED_HANDSHAKES = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
_REFUSAL_LOG_INTERVAL_S = 10.0


def _configure_security(socket: zmq.Socket, options: ContainerOptions) -> None:
    """IPv6 for an IPv6 literal, and the CURVE keys when the replica has credentials."""
    if options.frontend_address.startswith("tcp://["):
        socket.setsockopt(zmq.IPV6, 1)
    if options.credentials is not None:
        options.credentials.apply(socket)


@contextlib.contextmanager
def _stop_on_signals(server: ModelServer) -> Iterator[None]:
    """SIGTERM and SIGINT stop `server`; a second one ends the process at once. Installed only on the
    main thread (the only one Python lets handle signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handle(signum: int, _frame: Any) -> None:
        if received:
            raise SystemExit(128 + signum)
        received.append(signum)
        server.stop()

    previous = {number: signal.signal(number, handle) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if received:
            logger.info("event=signal_received signal=%s", signal.Signals(received[0]).name)


def run(
    model: Model,
    *,
    model_name: str | None = None,
    model_version: str | int | None = None,
    input_type: str | None = None,
    frontend_address: str | None = None,
    replica_id: int | None = None,
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
) -> None:
    """Serves `model` until SIGTERM or SIGINT: connects to the frontend's model RPC port, registers the
    model name, version and input type, and answers batches.

    Each option left None falls back to the environment (CLIPPER_MODEL_NAME, CLIPPER_MODEL_VERSION,
    CLIPPER_INPUT_TYPE, CLIPPER_IP and CLIPPER_PORT, CLIPPER_REPLICA_ID), then to its default:
    input type "doubles", frontend DEFAULT_FRONTEND_ADDRESS (the default RPC port on this machine),
    replica id -1 (the frontend numbers it).
    Raises ValueError when an option is missing or invalid.
    """
    options = ContainerOptions.from_environment(
        model_name=model_name,
        model_version=model_version,
        input_type=input_type,
        frontend_address=frontend_address,
        replica_id=replica_id,
        heartbeat_interval_s=heartbeat_interval_s,
    )
    serve_until_signalled(model, options)


def serve_until_signalled(model: Model, options: ContainerOptions) -> None:
    """Serves `model` with `options` until SIGTERM or SIGINT (or ModelServer.stop())."""
    server = ModelServer(model, options)
    with _stop_on_signals(server):
        server.serve_forever()
