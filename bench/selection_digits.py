"""Model selection on scikit-learn's digits: ensemble accuracy, degradation and recovery, personalization.

Owns the evidence study of the selection layer and bench/results/selection_digits.json (plus the
plots selection_digits_*.png). One local cluster (public admin API) serves four models trained on
digits, each deployed as its own Python closure that answers the predicted label as a string integer:
sklearn LogisticRegression ("logreg"), GaussianNB ("gnb"), DecisionTree ("tree") and an xgboost
classifier ("xgb"). Three parts, every query and feedback round over real HTTP on 127.0.0.1:

1. Ensemble: an `exp4` app learns from a feedback stream, then answers held-out digits; its accuracy
   against each model's, and the share of answers at or above a confidence threshold against their
   error rate (threshold swept over the returned `confidence`).
2. Degradation: a stream of queries with feedback where the best model (logreg) answers wrong labels
   while a flag file exists, then recovers; rolling accuracy of `single` (logreg), `exp3` and `exp4`.
3. Personalization: user groups whose labels follow different models (group A: logreg's answer,
   group B: gnb's); per-user `exp3` against each single model served to everyone.

    python bench/selection_digits.py                               # default, a few minutes
    python bench/selection_digits.py --degraded-rounds 1000 --feedback-rounds 600
    for s in 1 2 3 4 5; do python bench/selection_digits.py --seed $s --no-plot; done   # the spread
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import cluster
import common

MODELS = ("logreg", "gnb", "tree", "xgb")
BEST = "logreg"
SLO_MICROS = 5_000_000


def make_closure(model: Any, flag_path: str | None = None):
    """A replica function: the model's label per input, a wrong one (label + 1 mod 10) while the flag exists."""

    def predict(inputs):
        import os as _os

        import numpy as _np

        labels = model.predict(_np.asarray(inputs, dtype=float))
        wrong = flag_path is not None and _os.path.exists(flag_path)
        return [str((int(label) + 1) % 10 if wrong else int(label)) for label in labels]

    return predict


def train(seed: int):
    import numpy as np
    import xgboost
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.tree import DecisionTreeClassifier

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    x, y = digits.data[order], digits.target[order]
    # First 500: model training; next 700: feedback streams; the rest (597): held out.
    split = {
        "train": (x[:500], y[:500]),
        "stream": (x[500:1200], y[500:1200]),
        "held": (x[1200:], y[1200:]),
    }
    tx, ty = split["train"]
    models = {
        "logreg": LogisticRegression(max_iter=2000).fit(tx, ty),
        "gnb": GaussianNB().fit(tx, ty),
        "tree": DecisionTreeClassifier(max_depth=8, random_state=seed).fit(tx, ty),
        "xgb": xgboost.XGBClassifier(n_estimators=30, max_depth=3, n_jobs=1).fit(tx, ty),
    }
    return models, split


class Client:
    def __init__(self, query_addr: str) -> None:
        self.base = f"http://{query_addr}"
        self.requests = 0

    def predict(self, app: str, vector, uid: int = 0) -> dict:
        status, body = common.post_json(
            f"{self.base}/{app}/predict", {"input": list(vector), "uid": uid}
        )
        self.requests += 1
        if status != 200:
            raise RuntimeError(f"/{app}/predict answered {status}: {body!r}")
        return body

    def update(self, app: str, vector, label: int, uid: int = 0) -> None:
        body = {"input": list(vector), "label": int(label), "uid": uid}
        status, answer = common.post_json(f"{self.base}/{app}/update", body)
        self.requests += 1
        if status != 200:
            raise RuntimeError(f"/{app}/update answered {status}: {answer!r}")


def answer_label(answer: dict) -> int | None:
    if answer.get("default"):
        return None
    try:
        return int(float(answer["output"]))
    except (TypeError, ValueError):
        return None


def vector_for(x, round_number: int):
    """The digit's features with a per-round offset far below any decision margin, so the cache never answers."""
    values = [float(v) for v in x]
    values[0] += round_number * 1e-7
    return values


def register(conn, app: str, policy: str, models, **params) -> None:
    conn.register_application(app, "doubles", default_output="-1", slo_micros=SLO_MICROS)
    if policy != "single":
        conn.set_selection_policy(app, policy, **params)
    for model in models:
        conn.link_model_to_app(app, model)


def ensemble_study(conn, client, models, split, options) -> dict:
    register(conn, "ens", "exp4", MODELS)
    sx, sy = split["stream"]
    for i in range(options.feedback_rounds):
        client.update("ens", vector_for(sx[i % len(sx)], i), sy[i % len(sy)])
    hx, hy = split["held"]
    hx, hy = hx[: options.held_out], hy[: options.held_out]
    answers = [client.predict("ens", vector_for(x, 10_000_000 + i)) for i, x in enumerate(hx)]
    labels = [answer_label(a) for a in answers]
    confidences = [float(a.get("confidence", 0.0)) for a in answers]
    correct = [label == int(y) for label, y in zip(labels, hy)]
    singles = {m: float((models[m].predict(hx) == hy).mean()) for m in MODELS}
    sweep = []
    for threshold in (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
        kept = [c for c, conf in zip(correct, confidences) if conf >= threshold - 1e-9]
        sweep.append(
            {
                "threshold": threshold,
                "share_answered": len(kept) / len(correct),
                "error_rate": (1 - sum(kept) / len(kept)) if kept else None,
            }
        )
    state = conn.get_selection_state("ens", uid=0)
    return {
        "feedback_rounds": options.feedback_rounds,
        "held_out": len(hy),
        "exp4_accuracy": sum(correct) / len(correct),
        "single_accuracy": singles,
        "best_single": max(singles, key=singles.get),
        "best_single_accuracy": max(singles.values()),
        "weights": {m: state["models"][m]["weight"] for m in MODELS},
        "confidence_sweep": sweep,
        "note": "single accuracies: the same fitted models evaluated in this process on the same held-out digits",
    }


def degradation_study(conn, client, split, flag_path: str, options) -> dict:
    register(conn, "deg-single", "single", ["logreg_flag"])
    register(conn, "deg-exp3", "exp3", ["logreg_flag", "gnb", "tree", "xgb"])
    register(conn, "deg-exp4", "exp4", ["logreg_flag", "gnb", "tree", "xgb"])
    sx, sy = split["stream"]
    start = options.before_rounds
    end = start + options.degraded_rounds
    total = end + options.after_rounds
    hits: dict[str, list[int]] = {k: [] for k in ("single", "exp3", "exp4")}
    began = time.monotonic()
    for i in range(total):
        if i == start:
            Path(flag_path).write_text("degraded\n")
        if i == end:
            Path(flag_path).unlink()
        x, y = sx[i % len(sx)], int(sy[i % len(sy)])
        vector = vector_for(x, 20_000_000 + i)
        for key, series in hits.items():
            series.append(int(answer_label(client.predict(f"deg-{key}", vector)) == y))
        client.update("deg-exp3", vector, y)
        client.update("deg-exp4", vector, y)
        if time.monotonic() - began > options.max_seconds:
            raise RuntimeError(
                f"degradation stream exceeded {options.max_seconds} s at round {i}; use fewer rounds"
            )
    return {
        "before": start,
        "degraded": options.degraded_rounds,
        "after": options.after_rounds,
        "hits": hits,
    }


def rolling(values: list[int], window: int) -> list[float]:
    out, running = [], 0
    for i, v in enumerate(values):
        running += v
        if i >= window:
            running -= values[i - window]
        out.append(running / min(i + 1, window))
    return out


def summarize_degradation(deg: dict, models, split, window: int, probe_window: int) -> dict:
    sx, sy = split["stream"]
    total = deg["before"] + deg["degraded"] + deg["after"]
    xs = [sx[i % len(sx)] for i in range(total)]
    ys = [int(sy[i % len(sy)]) for i in range(total)]
    offline = {m: [int(p == y) for p, y in zip(models[m].predict(xs), ys)] for m in MODELS}
    start, end = deg["before"], deg["before"] + deg["degraded"]
    # Over the last `probe_window` rounds of the degraded stretch (ending at most 1,000 rounds after it began).
    probe_end = min(end, start + 1000)
    probe = slice(max(start, probe_end - probe_window), probe_end)
    remaining = {m: sum(offline[m][probe]) / len(offline[m][probe]) for m in MODELS if m != BEST}
    best_remaining = max(remaining, key=remaining.get)
    at_probe = {k: sum(v[probe]) / len(v[probe]) for k, v in deg["hits"].items()}
    phases = {}
    for name, sl in (
        ("before", slice(0, start)),
        ("degraded", slice(start, end)),
        ("after", slice(end, total)),
    ):
        phases[name] = {
            k: (sum(v[sl]) / len(v[sl]) if v[sl] else None) for k, v in deg["hits"].items()
        }
    return {
        "rounds": {"before": deg["before"], "degraded": deg["degraded"], "after": deg["after"]},
        "phase_accuracy": phases,
        "probe_rounds": [probe.start, probe.stop],
        "probe_accuracy": at_probe,
        "remaining_models_at_probe": remaining,
        "best_remaining": best_remaining,
        "within_one_point": {
            k: at_probe[k] >= remaining[best_remaining] - 0.01 for k in ("exp3", "exp4")
        },
        "rolling_window": window,
        "rolling": {k: rolling(v, window) for k, v in deg["hits"].items()},
        "rolling_models": {m: rolling(offline[m], window) for m in MODELS if m != BEST},
    }


def personalization_study(conn, client, models, split, options) -> dict:
    register(conn, "pers", "exp3", MODELS)
    sx, _ = split["stream"]
    hx, _ = split["held"]
    groups = {"A": "logreg", "B": "gnb"}
    uids = {uid: ("A" if uid % 2 else "B") for uid in range(1, options.users + 1)}
    stream_labels = {g: models[m].predict(sx) for g, m in groups.items()}
    held_labels = {g: models[m].predict(hx) for g, m in groups.items()}
    for i in range(options.personal_rounds):
        for uid, group in uids.items():
            j = (i * 7 + uid * 13) % len(sx)
            client.update(
                "pers", vector_for(sx[j], 30_000_000 + i), stream_labels[group][j], uid=uid
            )
    per_user = {}
    for uid, group in uids.items():
        hits = 0
        for i in range(options.personal_queries):
            j = (i * 11 + uid * 17) % len(hx)
            label = answer_label(client.predict("pers", vector_for(hx[j], 40_000_000 + i), uid=uid))
            hits += int(label == int(held_labels[group][j]))
        per_user[uid] = {"group": group, "exp3_accuracy": hits / options.personal_queries}
    singles = {}
    for m in MODELS:
        agreement = []
        for uid, group in uids.items():
            idx = [(i * 11 + uid * 17) % len(hx) for i in range(options.personal_queries)]
            agreement.append(float((models[m].predict(hx[idx]) == held_labels[group][idx]).mean()))
        singles[m] = sum(agreement) / len(agreement)
    exp3 = sum(u["exp3_accuracy"] for u in per_user.values()) / len(per_user)
    return {
        "groups": groups,
        "feedback_rounds_per_user": options.personal_rounds,
        "queries_per_user": options.personal_queries,
        "per_user": per_user,
        "exp3_mean_accuracy": exp3,
        "single_for_everyone": singles,
        "exp3_beats_every_single": all(exp3 > v for v in singles.values()),
    }


def plot(results: dict, name: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    ens = results["ensemble"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(ens["single_accuracy"]) + ["exp4"]
    values = list(ens["single_accuracy"].values()) + [ens["exp4_accuracy"]]
    left.bar(names, values, color=["#999"] * (len(names) - 1) + ["#c33"])
    left.set_ylim(min(values) - 0.05, 1.0)
    left.set_ylabel("held-out accuracy")
    left.set_title("exp4 ensemble vs single models (digits)")
    sweep = [s for s in ens["confidence_sweep"] if s["error_rate"] is not None]
    right.plot(
        [s["threshold"] for s in sweep],
        [s["share_answered"] for s in sweep],
        "o-",
        label="share at/above threshold",
    )
    right.plot(
        [s["threshold"] for s in sweep],
        [s["error_rate"] for s in sweep],
        "s-",
        label="their error rate",
    )
    right.set_xlabel("confidence threshold")
    right.legend()
    right.set_title("confident answers vs error rate")
    fig.tight_layout()
    paths.append(common.RESULTS_DIR / f"{name}_ensemble.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    deg = results["degradation"]
    fig, ax = plt.subplots(figsize=(10, 4))
    for key, style in (("single", "-"), ("exp3", "-"), ("exp4", "-")):
        ax.plot(deg["rolling"][key], style, label=f"{key} (served)")
    for model, series in deg["rolling_models"].items():
        ax.plot(series, ":", label=f"{model} alone", alpha=0.7)
    r = deg["rounds"]
    ax.axvspan(r["before"], r["before"] + r["degraded"], color="#fdd", label="logreg answers wrong")
    ax.set_xlabel("feedback round")
    ax.set_ylabel(f"rolling accuracy ({deg['rolling_window']} rounds)")
    ax.set_title("degradation and recovery of the best model")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    paths.append(common.RESULTS_DIR / f"{name}_degradation.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    pers = results["personalization"]
    fig, ax = plt.subplots(figsize=(7, 4))
    names = [f"{m} for all" for m in pers["single_for_everyone"]] + ["exp3 per user"]
    values = list(pers["single_for_everyone"].values()) + [pers["exp3_mean_accuracy"]]
    ax.bar(names, values, color=["#999"] * (len(names) - 1) + ["#36c"])
    ax.set_ylim(min(values) - 0.05, 1.0)
    ax.set_ylabel("accuracy against each user's labels")
    ax.set_title("personalization: groups follow logreg or gnb")
    fig.tight_layout()
    paths.append(common.RESULTS_DIR / f"{name}_personalization.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seed", type=int, default=0, help="the data split (and the decision tree's seed)"
    )
    parser.add_argument(
        "--name",
        default=None,
        help="results name (default selection_digits, or selection_digits_seed<N> for seed N != 0)",
    )
    parser.add_argument("--feedback-rounds", type=int, default=400, help="exp4 training stream")
    parser.add_argument(
        "--held-out", type=int, default=500, help="held-out queries for the ensemble"
    )
    parser.add_argument("--before-rounds", type=int, default=200)
    parser.add_argument("--degraded-rounds", type=int, default=1000)
    parser.add_argument("--after-rounds", type=int, default=300)
    parser.add_argument("--window", type=int, default=100, help="rolling accuracy window")
    parser.add_argument(
        "--probe-window",
        type=int,
        default=300,
        help="rounds (ending 1,000 after the degradation) compared with the best remaining model",
    )
    parser.add_argument(
        "--no-plot", action="store_true", help="JSON only (further seeds of a spread)"
    )
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--personal-rounds", type=int, default=200)
    parser.add_argument("--personal-queries", type=int, default=100)
    parser.add_argument(
        "--max-seconds", type=float, default=300.0, help="bound on the degradation stream"
    )
    options = parser.parse_args(argv)

    import cloudpickle

    from clipper.deployers.python import deploy_python_closure

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    began = time.monotonic()
    models, split = train(options.seed)
    flag_dir = tempfile.mkdtemp(prefix="selection-digits-")
    flag_path = os.path.join(flag_dir, "degraded")
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, flag_dir, True)
        running = cluster.start_local_cluster(stack, "digits", cache_size_bytes=8 * 1024 * 1024)
        conn = running.connection
        for name in MODELS:
            deploy_python_closure(
                conn, name=name, version="1", input_type="doubles", func=make_closure(models[name])
            )
        deploy_python_closure(
            conn,
            name="logreg_flag",
            version="1",
            input_type="doubles",
            func=make_closure(models["logreg"], flag_path),
        )
        conn.register_application("warm", "doubles", default_output="-1", slo_micros=SLO_MICROS)
        conn.set_selection_policy("warm", "exp4")
        for name in (*MODELS, "logreg_flag"):
            conn.link_model_to_app("warm", name)
        hx = split["held"][0]
        cluster.wait_for_model_answer(
            running.url("warm"), lambda i: {"input": vector_for(hx[0], i)}, 120.0
        )
        client = Client(running.query_addr)
        t0 = time.monotonic()
        ensemble = ensemble_study(conn, client, models, split, options)
        t1 = time.monotonic()
        degradation = degradation_study(conn, client, split, flag_path, options)
        t2 = time.monotonic()
        personalization = personalization_study(conn, client, models, split, options)
        t3 = time.monotonic()
    results = {
        "machine": common.machine_info(),
        "source": cluster.source_revision(),
        "options": vars(options),
        "ensemble": ensemble,
        "degradation": summarize_degradation(
            degradation, models, split, options.window, options.probe_window
        ),
        "personalization": personalization,
        "seconds": {
            "ensemble": t1 - t0,
            "degradation": t2 - t1,
            "personalization": t3 - t2,
            "total": time.monotonic() - began,
        },
        "http_requests": client.requests,
    }
    name = options.name or (
        "selection_digits" if options.seed == 0 else f"selection_digits_seed{options.seed}"
    )
    path = common.write_results(name, results)
    plots = [] if options.no_plot else plot(results, name)
    fmt = lambda v: f"{100 * v:5.1f}%"
    print(
        f"Ensemble ({ensemble['feedback_rounds']} feedback rounds, {ensemble['held_out']} held-out digits):"
    )
    for m, v in ensemble["single_accuracy"].items():
        print(f"  {m:<8} {fmt(v)}")
    print(f"  exp4     {fmt(ensemble['exp4_accuracy'])}   (best single: {ensemble['best_single']})")
    print("  threshold  answered  error")
    for s in ensemble["confidence_sweep"]:
        err = "   -  " if s["error_rate"] is None else fmt(s["error_rate"])
        print(f"  {s['threshold']:9.2f}  {fmt(s['share_answered'])}  {err}")
    d = results["degradation"]
    print(
        f"Degradation (logreg wrong for rounds {d['rounds']['before']}..{d['rounds']['before'] + d['rounds']['degraded']}):"
    )
    for phase, acc in d["phase_accuracy"].items():
        print(
            f"  {phase:<9} " + "  ".join(f"{k} {fmt(v)}" for k, v in acc.items() if v is not None)
        )
    print(
        f"  probe rounds {d['probe_rounds']}: "
        + "  ".join(f"{k} {fmt(v)}" for k, v in d["probe_accuracy"].items())
        + f"; best remaining {d['best_remaining']} {fmt(d['remaining_models_at_probe'][d['best_remaining']])}"
        + f"; within 1 point: {d['within_one_point']}"
    )
    p = personalization
    print(f"Personalization ({len(p['per_user'])} users, groups {p['groups']}):")
    print(
        "  "
        + "  ".join(f"{m} {fmt(v)}" for m, v in p["single_for_everyone"].items())
        + f"  exp3 per user {fmt(p['exp3_mean_accuracy'])}"
    )
    print(f"seconds {results['seconds']}; results: {path}; plots: {[str(x) for x in plots]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
