"""The CI-sized fuzzing run: scripts/fuzz.sh builds the libFuzzer targets in cpp/fuzz/ (clang, ASan and
UBSan) and runs each from its corpus in the repository, the regression inputs of every bug they found
included. Fails on any crash, sanitizer report or broken check. Seconds per target:
CLIPPER_FUZZ_SECONDS (default 20); longer runs: docs/fuzzing.md."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("request_parser", "query_codec", "replica_messages", "oip_codec")


@pytest.fixture(scope="module")
def fuzz_run():
    if shutil.which("clang++") is None:
        pytest.skip(
            "needs clang with libFuzzer (Debian: clang libclang-rt-14-dev; scripts/setup.sh)"
        )
    seconds = os.environ.get("CLIPPER_FUZZ_SECONDS", "20")
    completed = subprocess.run(
        ["bash", "scripts/fuzz.sh", seconds],
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(completed.stdout)
    print(completed.stderr[-20000:], file=sys.stderr)
    return completed


@pytest.mark.timeout(960)
def test_every_target_runs_clean_from_its_corpus(fuzz_run):
    assert fuzz_run.returncode == 0, fuzz_run.stderr[-4000:]
    for target in TARGETS:
        row = re.search(
            rf"^{target}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+ok$", fuzz_run.stdout, re.MULTILINE
        )
        assert row, f"no result row for {target}:\n{fuzz_run.stdout}"
        executions, coverage, _features, corpus = map(int, row.groups())
        seeds = len(list((ROOT / "cpp/fuzz/corpus" / target).iterdir()))
        # It ran well past the seeds, reached code beyond the entry point, and kept inputs.
        assert executions > 10 * seeds and coverage > 100 and corpus > 0, row.group(0)


@pytest.mark.timeout(960)
def test_the_targets_are_built_with_the_sanitizers(fuzz_run):
    for target in TARGETS:
        binary = ROOT / "build/fuzz/cpp/fuzz" / f"{target}_fuzzer"
        nm = subprocess.run(["nm", str(binary)], check=True, capture_output=True, text=True)
        symbols = nm.stdout
        assert "__asan_init" in symbols, target
        assert "__ubsan_handle_" in symbols, target
        assert "LLVMFuzzerTestOneInput" in symbols, target
