"""Quickstart: start a local Clipper cluster, deploy a Python function, query it over HTTP."""

import json
import tempfile
import urllib.request

from clipper import ClipperConnection, LocalContainerManager
from clipper.deployers.python import deploy_python_closure


def add_one(inputs):
    # One output per input: the model receives a 2-D numpy array of doubles.
    return [float(row.sum()) + 1.0 for row in inputs]


def main() -> None:
    # A state directory of its own, so the demo starts empty however often it runs.
    state_dir = tempfile.mkdtemp(prefix="clipper-quickstart-")
    connection = ClipperConnection(LocalContainerManager(cluster_name="quickstart", state_dir=state_dir))
    connection.start_clipper()
    try:
        connection.register_application(
            name="hello", input_type="doubles", default_output="-1.0", slo_micros=100000
        )
        deploy_python_closure(
            connection, name="sum-plus-one", version="1", input_type="doubles", func=add_one
        )
        connection.link_model_to_app(app_name="hello", model_name="sum-plus-one")

        url = f"http://{connection.get_query_addr()}/hello/predict"
        body = json.dumps({"input": [1.0, 2.0, 3.0]}).encode()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        print(f"POST {url} {{\"input\": [1.0, 2.0, 3.0]}} -> {json.dumps(answer)}")
    finally:
        connection.stop_all(clear_state=True)


if __name__ == "__main__":
    main()
