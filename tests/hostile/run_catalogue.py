"""Run the hostile catalogue against a fresh local cluster and print its table:
`python tests/hostile/run_catalogue.py` (exit status 1 when a case fails)."""

import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))

import cloudpickle
import e2e_models
from catalogue import CASES, HostileCluster, run_case

cloudpickle.register_pickle_by_value(e2e_models)

# 2,000 slow connections need as many descriptors here (the frontend's own are capped well below).
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft < min(_hard, 8192):
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(_hard, 8192), _hard))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="clipper-hostile-") as state_root:
        cluster = HostileCluster(Path(state_root))
        try:
            rows = []
            for case in CASES:
                row = run_case(cluster, case)
                rows.append(row)
                print(f"{'PASS' if row.passed else 'FAIL'}  {case.name}", file=sys.stderr)
        finally:
            cluster.stop()
    header = ("case", "expected", "observed", "alive", "RSS before/after (MiB)", "result")
    table = [
        (
            row.case,
            row.expected,
            row.observed,
            "yes" if row.server_alive else "NO",
            f"{row.rss_before_kib / 1024:.1f} / {row.rss_after_kib / 1024:.1f}",
            "pass" if row.passed else "FAIL",
        )
        for row in rows
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cells in table:
        print("| " + " | ".join(str(cell).replace("|", "/") for cell in cells) + " |")
    return 0 if all(row.passed for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
