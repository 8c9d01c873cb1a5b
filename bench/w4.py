"""The W4 study: a real model, scikit-learn's digits dataset with a fitted classifier, deployed with
the closure deployer; batching off, every fixed batch size and the adaptive controller.

Owns W4's model and request bodies; the procedure, table, plots and results file are
batching_study.py's (shared with W3). Runs on the main thread; about two and a half minutes with
the defaults. Needs scikit-learn and matplotlib (`pip install scikit-learn matplotlib`).

    python bench/w4.py                         # RBF SVC (the scikit-learn digits example), SLO 20 ms
    python bench/w4.py --classifier logreg     # logistic regression: almost no cost per input

The classifier is fitted on half of the 1,797 8x8 images here, pickled with its predict function by
the closure deployer, and checked once deployed: every held-out image is sent through Clipper and the
answers are compared with the classifier's own predictions. Under load every request carries the
same held-out image (the load generator sends one body), so the prediction cache is off (the default
of these studies) and every request is evaluated by the model. Writes bench/results/w4.json and
w4_sweep.png, w4_open_loop.png, w4_adaptive_batch_size.png beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import batching_study
import common
import models


def check_answers(url: str, classifier: Any, images: Any, limit: int) -> dict[str, Any]:
    """Sends up to `limit` held-out images one by one; counts answers equal to local predictions."""
    expected = [str(int(label)) for label in classifier.predict(images[:limit])]
    agree = defaults = 0
    started = time.monotonic()
    for image, label in zip(images[:limit], expected):
        status, body = common.post_json(url, {"input": image.tolist()})
        if status == 200 and isinstance(body, dict):
            defaults += bool(body.get("default"))
            agree += str(body.get("output")) == label
    return {
        "images": len(expected),
        "agree_with_local_predict": agree,
        "default_answers": defaults,
        "seconds": round(time.monotonic() - started, 2),
    }


def workload(args: argparse.Namespace) -> batching_study.Workload:
    models.register_by_value()
    classifier, info, held_out = models.digits_classifier(args.classifier)
    body_image = held_out[0]
    return batching_study.Workload(
        key="w4",
        title=f"W4: digits, {type(classifier).__name__} ({info['support_vectors']} support vectors)"
        if args.classifier == "svc"
        else f"W4: digits, {type(classifier).__name__}",
        input_type="doubles",
        model_function=lambda: models.predict_function(classifier),
        loadgen_workload="fixed",
        body=json.dumps({"input": body_image.tolist()}, separators=(",", ":")),
        probe=lambda index: {"input": held_out[index % len(held_out)].tolist()},
        description={
            **info,
            "requests": "one held-out image (64 doubles) as the body of every request",
        },
        check_answers=lambda url: check_answers(url, classifier, held_out, args.check_images),
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    batching_study.add_arguments(parser, default_slo_micros=20_000)
    parser.add_argument("--classifier", choices=("svc", "logreg"), default="svc")
    parser.add_argument(
        "--check-images",
        type=int,
        default=899,
        help="held-out images sent through Clipper before the load (default all 899)",
    )
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR / "w4.json")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    return batching_study.run_study(workload(args), args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
