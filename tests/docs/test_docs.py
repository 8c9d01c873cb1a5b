"""The user documentation (mkdocs.yml, docs/, README.md): the site builds with `mkdocs build --strict`,
every relative link resolves, nothing points outside the repository, the metrics the operations page
lists are the ones a running frontend exports, and every code sample marked runnable runs.

Marking a sample runnable: the line before its ```python fence is an HTML comment (invisible on the
site), either `<!-- docs-test: run -->` (runs on its own, in a fresh interpreter) or
`<!-- docs-test: cluster -->` (runs with `conn`, a connected ClipperConnection of a real local cluster
on free ports; the cluster samples of one page run in order in one interpreter, as a reader runs them).
"""

import os
import re
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
DOCS = REPOSITORY / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
SAMPLE = re.compile(r"<!-- docs-test: (run|cluster) -->\n```python\n(.*?)\n```", re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
GENERATED = {DOCS / "openapi.json"}  # published by docs/_hooks/openapi.py

sys.path.insert(0, str(REPOSITORY / "tests" / "e2e"))
from e2e_support import start_cluster


def samples(page, kind):
    return [code for marker, code in SAMPLE.findall(page.read_text()) if marker == kind]


def test_the_site_builds_strictly(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    site = tmp_path / "site"
    assert (site / "openapi.json").is_file()
    management = (site / "management-api" / "index.html").read_text()
    assert "/admin/add_app" in management and "<!-- openapi-operations -->" not in management


@pytest.mark.parametrize("page", [REPOSITORY / "README.md", *PAGES], ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.exists() or path in GENERATED, f"{page.name} links to missing {target}"
        assert REPOSITORY in path.parents, f"{page.name} links outside the repository: {target}"


def test_no_page_names_a_path_outside_the_repository():
    for page in [REPOSITORY / "README.md", REPOSITORY / "mkdocs.yml", *PAGES]:
        text = page.read_text()
        assert "../shared" not in text and "/work/" not in text, page


def test_every_page_is_in_the_navigation():
    config = (REPOSITORY / "mkdocs.yml").read_text()
    for page in PAGES:
        assert str(page.relative_to(DOCS)) in config, f"{page} is missing from mkdocs.yml's nav"


def test_every_marker_is_followed_by_a_python_sample():
    for page in PAGES:
        text = page.read_text()
        found = len(SAMPLE.findall(text))
        assert text.count("<!-- docs-test:") == found, f"{page.name}: a marker that runs nothing"


def test_the_marked_samples_exist():
    marked = {page.name for page in PAGES if samples(page, "cluster") or samples(page, "run")}
    for name in ("quickstart.md", "client.md", "python.md", "sklearn.md", "xgboost.md", "pytorch.md",
                 "onnx.md"):  # fmt: skip
        assert name in marked


@pytest.mark.parametrize("page", [p for p in PAGES if samples(p, "run")], ids=lambda p: p.name)
def test_standalone_samples_run(page, tmp_path):
    for index, code in enumerate(samples(page, "run")):
        script = tmp_path / f"sample_{index}.py"
        script.write_text(code)
        result = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
            timeout=240, check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"{page.name} sample {index}:\n{code}\n{result.stderr}"


@pytest.fixture
def cluster(tmp_path):
    conn = start_cluster(tmp_path, "docs")
    yield conn
    conn.cm.stop_all(graceful=True)


def connect_preamble(conn):
    manager = conn.cm
    return textwrap.dedent(
        f"""
        from clipper import ClipperConnection, LocalContainerManager

        conn = ClipperConnection(LocalContainerManager(
            cluster_name={manager.cluster_name!r},
            clipper_query_port={manager.clipper_query_port},
            clipper_management_port={manager.clipper_management_port},
            clipper_rpc_port={manager.clipper_rpc_port},
            prometheus_port={manager.prometheus_port},
            state_dir={str(manager.state_dir)!r},
        ), replica_start_timeout_s=120)
        conn.connect()
        """
    )


@pytest.mark.parametrize("page", [p for p in PAGES if samples(p, "cluster")], ids=lambda p: p.name)
def test_cluster_samples_run_against_a_real_cluster(page, cluster, tmp_path):
    script = tmp_path / f"{page.stem}_samples.py"
    script.write_text("\n\n".join([connect_preamble(cluster), *samples(page, "cluster")]) + "\n")
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"{page.name}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"


def test_the_operations_page_lists_exactly_the_exported_metrics(cluster):
    from clipper.client import ClipperClient
    from clipper.deployers.python import create_endpoint

    create_endpoint(
        cluster, "metrics", "doubles", lambda rows: [1.0 for _ in rows], "0.0", slo_micros=5000000
    )
    with ClipperClient(cluster.get_query_addr()) as client:
        client.predict("metrics", [1.0])
    with urllib.request.urlopen(f"http://{cluster.get_query_addr()}/metrics", timeout=10) as answer:
        exposition = answer.read().decode()
    exported = set(re.findall(r"^# TYPE (\S+) ", exposition, re.MULTILINE))
    operations = (DOCS / "operations.md").read_text()
    metrics_section = operations.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    documented = set(
        re.findall(r"^\| `((?:clipper|process)_[a-z_]+)` \|", metrics_section, re.MULTILINE)
    )
    assert documented == exported, (
        f"undocumented: {sorted(exported - documented)}; not exported: {sorted(documented - exported)}"
    )
