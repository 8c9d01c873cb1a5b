"""Writes the fuzzers' seed corpora (cpp/fuzz/corpus/<target>/) from real traffic: HTTP requests as
Python's http.client sends them (recorded off a loopback socket) with bodies from Clipper's own query
client, RPC messages from the container SDK's encoders, and Open Inference Protocol requests laid out
as KServe v2 clients write them. Run from the repository root with the
package installed: `python cpp/fuzz/make_seeds.py`. The seeds are small and checked in; rerun this only
when the formats change (the fuzzers' regression inputs live beside them and are not touched).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import struct
import threading
from pathlib import Path

import flatbuffers
from clipper.wire import HeartbeatAck as wire_heartbeat_ack
from clipper.wire import PredictRequest as wire_predict_request

from clipper import client
from clipper.container import codec

CORPUS = Path(__file__).resolve().parent / "corpus"


def write(target: str, data: bytes) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"seed-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)


def recorded(send) -> bytes:
    """The bytes `send(connection)` writes on an http.client connection to a loopback listener."""
    listener = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def accept() -> None:
        peer, _ = listener.accept()
        with peer:
            peer.settimeout(0.3)
            try:
                while chunk := peer.recv(65536):
                    received.extend(chunk)
            except TimeoutError:
                pass

    reader = threading.Thread(target=accept)
    reader.start()
    connection = http.client.HTTPConnection("127.0.0.1", listener.getsockname()[1])
    send(connection)
    reader.join()
    connection.close()
    listener.close()
    return bytes(received)


def post(target: str, body: bytes, **headers: str):
    return lambda connection: connection.request(
        "POST", target, body=body, headers={"Content-Type": "application/json", **headers}
    )


def chunked(target: str, parts: list[bytes]):
    return lambda connection: connection.request(
        "POST", target, body=iter(parts), encode_chunked=True,
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )  # fmt: skip


def query_bodies() -> list[bytes]:
    """Bodies of every kind the query API takes, for every input type, as the Python client writes them."""
    inputs = {
        "doubles": [1.5, -2.0, 3e-7],
        "ints": [1, -2, 2147483647],
        "floats": [0.25, 1e30],
        "bytes": b"\x00\xffclipper",
        "strings": "caf\u00e9 \u2603",
    }
    bodies = []
    for value in inputs.values():
        bodies.append(client._predict_body(value, None, None))
        bodies.append(client._predict_body(value, "2", 7))
        bodies.append(client._predict_batch_body([value, value], None, None))
        bodies.append(client._update_body(3, value, 1.0))
    bodies += [b'{"input_batch": [[1, 2], [3]]}', b'{"input": []}', b'{"input_batch": []}']
    return bodies


def http_seeds() -> None:
    body = client._predict_body([1.0, 2.0, 3.0], None, None)
    update = client._update_body(1, [1.0], 0.5)
    requests = [
        recorded(post("/app/predict", body)),
        recorded(post("/app/update", update)),
        recorded(lambda c: c.request("GET", "/metrics")),
        recorded(lambda c: c.request("GET", "/healthz", headers={"Connection": "close"})),
        recorded(chunked("/app/predict", [body[:5], body[5:]])),
        recorded(post("/app/predict", body, Expect="100-continue")),
    ]
    default_limits, small_limits = b"\x80\x80", b"\x04\x21"
    for index, request in enumerate(requests):
        write("request_parser", default_limits + struct.pack(">H", index) + request)
    # Pipelined: every request back to back on one connection; and with small limits (413, 431).
    write("request_parser", default_limits + b"\x01\x00" + b"".join(requests))
    write("request_parser", small_limits + b"\x02\x00" + b"".join(requests))
    # Framing that must be refused (smuggling, bad lengths, HTTP/1.0, upgrades).
    for raw in (
        b"POST /a/predict HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /a/predict HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST /a/predict HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"GET /a HTTP/1.0\r\n\r\n",
        b"GET /chat HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\nX : y\r\n\r\n",
        b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n",
        b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
    ):
        write("request_parser", default_limits + b"\x03\x00" + raw)
    # The head limit (small limits: 8192 + 528 + 256 + 8 bytes): white space no callback counts, and a
    # read of many short requests longer than the limit (each head measured where it ends).
    write("request_parser", small_limits + b"\x04\x00" + b"GET / HTTP/1.1\r\nX:" + b" " * 9000 + b"v\r\n\r\n")
    short = b"POST /p HTTP/1.1\r\nContent-Length: 60\r\n\r\n" + b"x" * 60
    write("request_parser", small_limits + b"\x05\x00" + short * 100 + b"GET / HTTP/1.1\r\n\r\n")


def rpc_seeds() -> None:
    builder = flatbuffers.Builder(256)
    write(
        "replica_messages",
        bytes(codec.encode_register(builder, "m", "1", codec.InputType.DOUBLES, 2)),
    )
    write(
        "replica_messages",
        bytes(codec.encode_register(builder, "sum", "v2", codec.InputType.STRINGS)),
    )
    write("replica_messages", bytes(codec.encode_heartbeat(builder, "replica-key-0001")))
    write(
        "replica_messages", bytes(codec.encode_predict_error(builder, 9, "ValueError: bad input"))
    )
    write("replica_messages", codec.encode_predict_response(5, ["0.5", '{"label": 1}', "text", ""]))
    write("replica_messages", codec.encode_predict_response(6, ["1", "2"], [0.25, 1.0]))
    # What only the frontend sends: a replica sending it is dropped.
    builder.Clear()
    wire_heartbeat_ack.Start(builder)
    wire_heartbeat_ack.AddRegistered(builder, True)
    write("replica_messages", bytes(codec._finish_message(
        builder, codec.Payload.HeartbeatAck, wire_heartbeat_ack.End(builder))))  # fmt: skip
    builder.Clear()
    data = builder.CreateByteVector(struct.pack("<2d", 1.0, 2.0))
    wire_predict_request.Start(builder)
    wire_predict_request.AddBatchId(builder, 1)
    wire_predict_request.AddInputType(builder, codec.InputType.DOUBLES)
    wire_predict_request.AddNumInputs(builder, 1)
    wire_predict_request.AddRowLength(builder, 2)
    wire_predict_request.AddData(builder, data)
    write("replica_messages", bytes(codec._finish_message(
        builder, codec.Payload.PredictRequest, wire_predict_request.End(builder))))  # fmt: skip


def oip_seeds() -> None:
    """Infer requests as KServe v2 clients (tritonclient's HTTP client) write them, JSON and binary."""
    types = {"bytes": 0, "ints": 1, "floats": 2, "doubles": 3, "strings": 4}
    absent = b"\xff\xff"

    def request(inputs, outputs=None, **extra):
        body = {"inputs": inputs, **extra}
        if outputs is not None:
            body["outputs"] = outputs
        return json.dumps(body, separators=(",", ":")).encode()

    def tensor(datatype, shape, data):
        return {"name": "input", "datatype": datatype, "shape": shape, "data": data}

    json_seeds = [
        ("doubles", request([tensor("FP64", [2, 3], [1.5, 2, 3, 4, 5, 6e-3])], id="r-1")),
        ("floats", request([tensor("FP32", [1, 2], [[0.25, 1e30]])])),
        ("ints", request([tensor("INT32", [3, 1], [1, -2, 2147483647])], parameters={"uid": 4})),
        (
            "strings",
            request(
                [tensor("BYTES", [2], ["caf\u00e9", ""])], [{"name": "output"}, {"name": "default"}]
            ),
        ),
        (
            "bytes",
            request(
                [tensor("BYTES", [1], ["\u0000\u00ff"])], parameters={"binary_data_output": True}
            ),
        ),
    ]
    for name, body in json_seeds:
        write("oip_codec", bytes([types[name]]) + absent + body)
    # The binary-data extension: the JSON header, then each input's bytes.
    rows = struct.pack("<4d", 1.0, 2.0, 3.0, 4.0)
    header = request(
        [{"name": "input", "datatype": "FP64", "shape": [2, 2],
          "parameters": {"binary_data_size": len(rows)}}],
        [{"name": "output", "parameters": {"binary_data": True}}],
    )  # fmt: skip
    write("oip_codec", bytes([types["doubles"]]) + struct.pack(">H", len(header)) + header + rows)
    text = b"\x03\x00\x00\x00abc\x00\x00\x00\x00"
    header = request(
        [{"name": "input", "datatype": "BYTES", "shape": [2],
          "parameters": {"binary_data_size": len(text)}}],
    )  # fmt: skip
    write("oip_codec", bytes([types["strings"]]) + struct.pack(">H", len(header)) + header + text)
    for path in (
        b"/v2",
        b"/v2/health/ready",
        b"/v2/models/sum/versions/2/infer",
        b"/v2/models/a%2Fb/ready",
    ):
        write("oip_codec", bytes([types["doubles"]]) + absent + path)


def main() -> None:
    for body in query_bodies():
        write("query_codec", body)
    http_seeds()
    rpc_seeds()
    oip_seeds()


if __name__ == "__main__":
    main()
