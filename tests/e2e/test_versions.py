"""Versions without downtime: while clients query without pause, a new version is deployed, traffic is
rolled back to the old one, forward again, and the inactive version is stopped (its replicas drain).
Not one query fails or gets the default, and every query sent after a switch returned is answered by
the version switched to."""

import http.client
import json
import threading
import time

import e2e_models
from e2e_support import model_answer

from clipper.deployers.python import deploy_python_closure

CLIENTS = 4
SLO_MICROS = 2_000_000  # bounded: a query the switch lost would come back as a default, not hang
PHASE_S = 0.6


class Clients:
    """Threads querying one app continuously on keep-alive connections; each records (sent_at,
    status, answer, expected sum) or the exception it got."""

    def __init__(self, query_addr, app):
        self.host, port = query_addr.rsplit(":", 1)
        self.port = int(port)
        self.app = app
        self.stop = threading.Event()
        self.results = []
        self.failures = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(CLIENTS)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in self.threads), "a client is stuck"

    def _run(self, worker):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        index = 0
        while not self.stop.is_set():
            index += 1
            value = float(worker * 1_000_000 + index)  # distinct inputs: no cache hits
            body = json.dumps({"input": [value, 0.5]})
            sent_at = time.monotonic()
            try:
                connection.request(
                    "POST", f"/{self.app}/predict", body, {"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                answer = json.loads(response.read())
            except Exception as error:  # noqa: BLE001 - every failure is reported by the test
                self.failures.append(repr(error))
                connection.close()
                connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
                continue
            self.results.append((sent_at, response.status, answer, value + 0.5))
        connection.close()

    def versions_after(self, moment):
        return {answer["output"]["version"] for sent_at, _, answer, _ in self.results
                if sent_at > moment and not answer["default"]}  # fmt: skip


def test_deploy_roll_back_roll_forward_and_drain_without_a_failed_or_default_query(clusters):
    conn = clusters.start("versions")
    conn.register_application("live", "doubles", "-1.0", SLO_MICROS)
    deploy_python_closure(conn, "live-model", "1", "doubles", e2e_models.tagged_sum("v1"))
    conn.link_model_to_app("live", "live-model")
    assert model_answer(conn, "live", {"input": [1.0]})["output"]["version"] == "v1"

    switches = []  # (moment the switch began, moment it returned, version expected in between)

    def switch(version, action):
        began = time.monotonic()
        action()
        switches.append((began, time.monotonic(), version))

    with Clients(conn.get_query_addr(), "live") as clients:
        time.sleep(PHASE_S)
        switch(
            "v2",
            lambda: deploy_python_closure(
                conn, "live-model", "2", "doubles", e2e_models.tagged_sum("v2")
            ),
        )
        time.sleep(PHASE_S)
        switch("v1", lambda: conn.set_model_version("live-model", "1"))  # roll back
        time.sleep(PHASE_S)
        # Forward again, scaled out first; then v1's replica drains and stops.
        switch("v2", lambda: conn.set_model_version("live-model", "2", num_replicas=2))
        time.sleep(PHASE_S)
        switch("v2", lambda: conn.stop_inactive_model_versions("live-model"))
        time.sleep(PHASE_S)

    assert clients.failures == []
    assert len(clients.results) > 100, len(clients.results)
    assert {status for _, status, _, _ in clients.results} == {200}
    defaults = [answer for _, _, answer, _ in clients.results if answer["default"]]
    assert defaults == []
    assert all(answer["output"]["sum"] == expected for _, _, answer, expected in clients.results)
    # Between one switch's return and the next one's start, only the version switched to answers.
    for index, (_, returned, version) in enumerate(switches):
        until = switches[index + 1][0] if index + 1 < len(switches) else float("inf")
        wrong = [
            (round(sent_at - returned, 4), answer["output"]["version"])
            for sent_at, _, answer, _ in clients.results
            if returned < sent_at < until and answer["output"]["version"] != version
        ]
        assert wrong == [], f"switch {index} to {version}: answered by another version after it"
        answered = [t for t, *_ in clients.results if returned < t < until]
        assert len(answered) > 10, f"too few queries after switch {index} to tell"
    assert {a["output"]["version"] for t, _, a, _ in clients.results if t < switches[0][0]} == {
        "v1"
    }
    assert conn.get_all_models() == ["live-model:2"]
    assert conn.get_num_replicas("live-model", "2") == 2
