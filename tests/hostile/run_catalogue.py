"""Run the hostile catalogue against a fresh local cluster and print its table:
`python tests/hostile/run_catalogue.py [-k SUBSTRING]` (exit status 1 when a case fails)."""

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))

import cloudpickle
import e2e_models
import hostile_models
from catalogue import CASES, HostileCluster, run_case, table

cloudpickle.register_pickle_by_value(e2e_models)
cloudpickle.register_pickle_by_value(hostile_models)

# 2,000 slow connections need as many descriptors here (the frontend's own are capped well below).
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft < min(_hard, 8192):
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(_hard, 8192), _hard))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-k", default="", help="run only the cases whose name contains this")
    options = parser.parse_args()
    cases = [case for case in CASES if options.k in case.name]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clipper-hostile-") as state_root:
        cluster = HostileCluster(Path(state_root))
        try:
            rows = []
            for case in cases:
                row = run_case(cluster, case)
                rows.append(row)
                print(f"{'PASS' if row.passed else 'FAIL'}  {row.seconds:5.1f} s  {case.name}",
                      file=sys.stderr)  # fmt: skip
        finally:
            cluster.stop()
    print(table(rows))
    failed = sum(not row.passed for row in rows)
    print(
        f"\n{len(rows) - failed} of {len(rows)} cases passed in {time.monotonic() - started:.0f} s"
    )
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
