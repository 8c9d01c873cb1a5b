"""The management API's hostile cases: who may call it, the pickle attack, slow and abusive clients
of its HTTP server."""

from __future__ import annotations

import http.client
import json
import pickle
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hostile_cluster import Case, HostileCluster, Outcome, attacker_address, raw_exchange

from clipper import ClipperConnection
from clipper.exceptions import DeploymentError, ManagementAPIError
from clipper.management.auth import read_token

# ---- authentication --------------------------------------------------------------------------------


def no_token(cluster: HostileCluster) -> Outcome:
    body = {"name": "evil", "input_type": "doubles", "default_output": "0", "latency_slo_micros": 1}
    statuses = [
        cluster.admin("POST", "/admin/add_app", body)[0],
        cluster.admin("POST", "/admin/add_app", body, {"Authorization": "Bearer guess"})[0],
        cluster.admin("GET", "/admin/get_all_applications")[0],
    ]
    apps = cluster.conn.get_all_apps()
    return Outcome(
        f"statuses {statuses}, apps afterwards {apps}",
        statuses == [401, 401, 401] and "evil" not in apps,
    )


def token_file_permissions(cluster: HostileCluster) -> Outcome:
    token_mode = (cluster.state_dir / "management_token").stat().st_mode & 0o777
    dir_mode = cluster.state_dir.stat().st_mode & 0o777
    with_token = cluster.admin("GET", "/admin/ping", None, cluster.token_headers())[0]
    return Outcome(
        f"token file {token_mode:o}, state dir {dir_mode:o}, call with token {with_token}",
        token_mode == 0o600 and dir_mode == 0o700 and with_token == 200,
    )


def unauthenticated_public_bind(cluster: HostileCluster) -> Outcome:
    result = subprocess.run(
        [sys.executable, "-m", "clipper.management", "--state-dir",
         str(cluster.state_dir.parent / "public"), "--bind-address", "0.0.0.0",
         "--allow-unauthenticated-management", "--query-port", "0", "--management-port", "0",
         "--rpc-port", "0", "--metrics-port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    refused = "refusing to serve the management API on 0.0.0.0 without authentication"
    return Outcome(
        f"exit {result.returncode}, refusal logged: {refused in result.stderr}",
        result.returncode == 2 and refused in result.stderr,
    )


def unauthenticated_on_loopback(cluster: HostileCluster) -> Outcome:
    """The original clipper_admin client's way: a cluster started without the token requirement."""
    cluster.conn.stop_all()
    cluster.conn.start_clipper(allow_unauthenticated_management=True)
    try:
        token_file = (cluster.state_dir / "management_token").exists()
        status = cluster.admin("POST", "/admin/get_all_applications", {})[0]
        warned = "event=management_auth_disabled" in cluster.conn.cm.frontend_log_path.read_text()
    finally:
        cluster.conn.stop_all()
        cluster.conn.start_clipper()
    again = cluster.admin("POST", "/admin/get_all_applications", {})[0]
    return Outcome(
        f"without token: {status}, token file: {token_file}, warning logged: {warned}; "
        f"restarted with auth: {again}",
        status == 200 and not token_file and warned and again == 401,
    )


def wrong_explicit_token(cluster: HostileCluster) -> Outcome:
    other = ClipperConnection(cluster.conn.cm, management_token="not-the-token")
    try:
        other.connect()
        return Outcome("connected", False)
    except ManagementAPIError as error:
        return Outcome(f"{error.status_code} at connect()", error.status_code == 401)


# ---- the pickle attack -------------------------------------------------------------------------------


class _PlantedClosure:
    """Unpickling this creates a marker file: proof that the operator ran someone else's code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).touch, ())


def planted_pickle(cluster: HostileCluster) -> Outcome:
    attacker_dir = cluster.state_dir.parent / "attacker-controlled"
    attacker_dir.mkdir(exist_ok=True)
    attacker_dir.chmod(0o777)
    marker = cluster.state_dir.parent / "PWNED"
    (attacker_dir / "func.pkl").write_bytes(pickle.dumps(_PlantedClosure(str(marker))))
    # The configuration names the attacker's directory as a model's "image" (as an unauthenticated
    # management API allowed, or anyone who can write the Redis store can still do): whatever the way
    # in, neither scaling nor the operator's next start_clipper() may unpickle it.
    cluster.admin(
        "POST",
        "/admin/add_model",
        {"model_name": "planted", "model_version": "1", "input_type": "doubles",
         "container_name": str(attacker_dir), "num_replicas": 1},
        cluster.token_headers(),
    )  # fmt: skip
    try:
        cluster.conn.set_num_replicas("planted", 1, "1")
        scaled = "started"
    except DeploymentError as error:
        scaled = "refused" if "refusing to load the model closure" in str(error) else str(error)
    cluster.conn.stop_all()
    cluster.conn.start_clipper()  # restores the configuration, and with it the planted model
    ran = marker.exists()
    replicas = cluster.conn.cm.get_num_replicas("planted", "1")
    cluster.admin(
        "POST",
        "/admin/delete_versioned_model",
        {"model_name": "planted", "model_version": "1"},
        cluster.token_headers(),
    )
    return Outcome(
        f"set_num_replicas {scaled}; after a restart: planted code ran {ran}, {replicas} replicas",
        scaled == "refused" and not ran and replicas == 0,
    )


# ---- slow and abusive clients -----------------------------------------------------------------------


def _median_admin_latency_ms(cluster: HostileCluster, calls: int = 20) -> tuple[float, list[int]]:
    headers = cluster.token_headers()
    latencies, statuses = [], []
    for _ in range(calls):
        started = time.monotonic()
        statuses.append(cluster.admin("POST", "/admin/get_all_applications", {}, headers)[0])
        latencies.append((time.monotonic() - started) * 1000)
    return statistics.median(latencies), statuses


def _slowloris(cluster: HostileCluster, connections: int, addresses: int = 40) -> Outcome:
    baseline_ms, _ = _median_admin_latency_ms(cluster)
    threads_before = cluster.threads()
    attackers = []
    deadline = time.monotonic() + 60
    try:
        for index in range(connections):
            if time.monotonic() > deadline:
                break
            sock = socket.socket()
            # From other loopback addresses, or (addresses=0) from the operator's own 127.0.0.1.
            sock.bind((attacker_address(index, addresses) if addresses else "127.0.0.1", 0))
            sock.setblocking(False)
            try:
                sock.connect(("127.0.0.1", cluster.management_port))
            except BlockingIOError:
                pass
            attackers.append(sock)
        time.sleep(0.5)
        for sock in attackers:
            try:
                sock.send(b"POST /admin/add_app HTTP/1.1\r\nHost: x\r\n")  # and never more
            except OSError:
                pass
        time.sleep(0.5)
        threads_during = cluster.threads()
        during_ms, statuses = _median_admin_latency_ms(cluster)
    finally:
        for sock in attackers:
            sock.close()
    ok = statuses.count(200) == len(statuses)
    return Outcome(
        f"{len(attackers)} slow connections: frontend threads {threads_before} -> {threads_during}; "
        f"admin call median {baseline_ms:.1f} ms -> {during_ms:.1f} ms, {statuses.count(200)}/"
        f"{len(statuses)} answered 200",
        ok and threads_during - threads_before <= 4 and during_ms < baseline_ms + 50,
    )


def slowloris_600(cluster: HostileCluster) -> Outcome:
    return _slowloris(cluster, 600)


def slowloris_2000(cluster: HostileCluster) -> Outcome:
    return _slowloris(cluster, 2000)


def slowloris_from_the_operators_address(cluster: HostileCluster) -> Outcome:
    return _slowloris(cluster, 600, addresses=0)


def partial_headers(cluster: HostileCluster) -> Outcome:
    status, _, elapsed = raw_exchange(
        cluster.management_port, b"POST /admin/add_app HTTP/1.1\r\nHost: x\r\n", timeout_s=30
    )
    return Outcome(f"{status} after {elapsed:.1f} s", status == 408 and elapsed < 10)


def silent_connection(cluster: HostileCluster) -> Outcome:
    status, _, elapsed = raw_exchange(cluster.management_port, b"", timeout_s=60)
    return Outcome(
        f"closed after {elapsed:.1f} s (status {status})", status is None and elapsed < 40
    )


def smuggling(cluster: HostileCluster) -> Outcome:
    token = read_token(cluster.state_dir)
    shapes = {
        "CL+TE": b"POST /admin/add_app HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n",
        "CL twice": b"POST /admin/add_app HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Content-Length: 2\r\n",
        "CL conflicting": b"POST /admin/add_app HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Content-Length: 3\r\n",
    }
    smuggled = (
        b"GET /admin/ping HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + token.encode()
        + b"\r\n\r\n"
    )
    statuses = {}
    for name, head in shapes.items():
        request = (
            head + b"Authorization: Bearer " + token.encode() + b"\r\n\r\n0\r\n\r\n" + smuggled
        )
        status, body, _ = raw_exchange(cluster.management_port, request)
        statuses[name] = status
        if b"PONG" in (body or b""):
            statuses[name] = "smuggled request answered"
    return Outcome(f"{statuses}", all(status == 400 for status in statuses.values()))


def other_methods(cluster: HostileCluster) -> Outcome:
    answers = {}
    for method in ("PUT", "BREW"):
        status, body, _ = raw_exchange(
            cluster.management_port,
            f"{method} /admin/add_app HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
        )
        try:
            json.loads(body or b"")
            kind = "JSON"
        except ValueError:
            kind = "not JSON"
        answers[method] = f"{status} {kind}"
    return Outcome(f"{answers}", answers == {"PUT": "405 JSON", "BREW": "501 JSON"})


def huge_headers(cluster: HostileCluster) -> Outcome:
    request = b"GET /admin/ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    status, _, _ = raw_exchange(cluster.management_port, request)
    many = b"GET /admin/ping HTTP/1.1\r\nHost: x\r\n" + b"X-A: 1\r\n" * 200 + b"\r\n"
    status_many, _, _ = raw_exchange(cluster.management_port, many)
    return Outcome(
        f"100 KB header: {status}; 200 headers: {status_many}", status == status_many == 431
    )


def deep_json(cluster: HostileCluster) -> Outcome:
    body = '{"name": ' + "[" * 100_000 + "]" * 100_000 + "}"
    connection = http.client.HTTPConnection("127.0.0.1", cluster.management_port, timeout=30)
    try:
        connection.request("POST", "/admin/add_app", body=body, headers=cluster.token_headers())
        response = connection.getresponse()
        status, answer = response.status, json.loads(response.read())
    finally:
        connection.close()
    return Outcome(f"{status}: {answer.get('cause', '')[:60]}", status in (400, 413))


CASES = [
    Case("management: call without or with a guessed token", "401, nothing changed", no_token),
    Case(
        "management: token file and state directory",
        "0600 / 0700; the token works",
        token_file_permissions,
    ),
    Case(
        "management: ClipperConnection with a wrong token", "401 at connect()", wrong_explicit_token
    ),
    Case(
        "management: unauthenticated on 0.0.0.0",
        "refused at start (exit 2, message)",
        unauthenticated_public_bind,
    ),
    Case(
        "management: start_clipper(allow_unauthenticated_management=True)",
        "no token needed on loopback, warning logged",
        unauthenticated_on_loopback,
        restarts_frontend=True,
    ),
    Case(
        "management: pickle planted via container_name",
        "refused; never unpickled at restart",
        planted_pickle,
        restarts_frontend=True,
    ),
    Case(
        "management: 600 slowloris connections",
        "no thread each; admin call not delayed",
        slowloris_600,
    ),
    Case(
        "management: 2000 slowloris connections",
        "no thread each; admin call not delayed",
        slowloris_2000,
    ),
    Case(
        "management: 600 slowloris connections from 127.0.0.1 itself",
        "admin call from 127.0.0.1 not delayed",
        slowloris_from_the_operators_address,
    ),
    Case("management: headers never finished", "408 within the header timeout", partial_headers),
    Case(
        "management: connection that sends nothing", "closed at the idle timeout", silent_connection
    ),
    Case("management: request smuggling shapes", "400, smuggled request never runs", smuggling),
    Case("management: PUT and an unknown method", "JSON 405 and 501", other_methods),
    Case("management: 100 KB header, 200 headers", "431", huge_headers),
    Case("management: JSON nested 100,000 deep", "400 or 413, no crash", deep_json),
]
