"""Benchmark the agreement engine on a synthetic study at paper scale.

    .venv/bin/python bench/agreement.py [--n 300000] [--nltk-units 2000] [--boot 200]
    .venv/bin/python bench/agreement.py --command [--n 300000] [--db PATH]

With --command: `annotator agreement` as a user runs it (a process, on the study
`bench/commands.py` builds), beside the floor (plain sqlite3 reading the rows it reads), with
its peak memory; the figures users wait for. Without: the library's report on frames built in
memory (the statistics alone).

Builds N conversations, 3 annotators who each skip 10% of them, value sets drawn from the
released frequencies (each value independently with its pct_convos), noisy annotator and
model copies of a hidden true label, 2 prompt versions; prints the seconds and the peak memory
of the full report, then times nltk's AnnotationTask MASI alpha against ours on a sample.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthetic import group_values  # noqa: E402 - bench/synthetic.py

from annotator.measure import agreement, shapes, value_sets  # noqa: E402

DATA = ROOT / "annotator" / "data" / "values-in-the-wild"
# Plausible response-type shares (support-heavy, many "no values"); only shape matters here.
RT_SHARES = np.array([0.25, 0.14, 0.10, 0.07, 0.03, 0.03, 0.38])


def level_maps() -> tuple[dict[int, dict[str, str]], str]:
    try:
        from annotator.taxonomy import load_taxonomy  # type: ignore[attr-defined]

        tax = load_taxonomy()
        return {lv: dict(tax.level_map(lv)) for lv in (1, 2, 3)}, "annotator.taxonomy"
    except Exception:  # noqa: BLE001 - the taxonomy module may not exist yet: build from CSV
        tree = pd.read_csv(DATA / "values_tree.csv")
        parent = dict(zip(tree["cluster_id"], tree["parent_cluster_id"], strict=True))
        leaves = tree.loc[tree["level"] == 0, "cluster_id"].tolist()
        maps: dict[int, dict[str, str]] = {1: {}, 2: {}, 3: {}}
        for leaf in leaves:
            node = leaf
            for lv in (1, 2, 3):
                node = parent[node]
                maps[lv][leaf] = node
        return maps, "values_tree.csv"


def _sets(conv: np.ndarray, val: np.ndarray, n: int, names: np.ndarray) -> np.ndarray:
    """(conversation, value id) pairs -> object array of n tuples of names."""
    out = np.empty(n, dtype=object)
    for i, values in enumerate(group_values(conv, val, n)):
        out[i] = tuple(names[values])
    return out


def _noisy(
    rng: np.random.Generator,
    conv: np.ndarray,
    val: np.ndarray,
    n: int,
    p: np.ndarray,
    keep: float,
    extra: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Drop each true value with prob 1-keep; add Poisson(extra) values drawn by frequency."""
    k = rng.random(conv.size) < keep
    n_extra = rng.poisson(extra, n)
    ec = np.repeat(np.arange(n), n_extra)
    ev = rng.choice(p.size, size=ec.size, p=p / p.sum())
    return np.concatenate([conv[k], ec]), np.concatenate([val[k], ev])


def _rt(rng: np.random.Generator, true: np.ndarray, accuracy: float) -> np.ndarray:
    """Keep the true response type with prob `accuracy`, else a neighbour or a random one."""
    out = true.copy()
    flip = rng.random(true.size) > accuracy
    near = rng.random(true.size) < 0.6
    step = rng.choice([-1, 1], true.size)
    neighbour = np.clip(true + step, 0, 5)
    rand = rng.choice(7, true.size, p=RT_SHARES)
    ordered = true < 6
    out[flip & near & ordered] = neighbour[flip & near & ordered]
    out[flip & ~(near & ordered)] = rand[flip & ~(near & ordered)]
    return out


def synthetic_study(n: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    freq = pd.read_csv(DATA / "values_frequencies.csv")
    names = freq["value"].to_numpy(dtype=object)
    p = freq["pct_convos"].to_numpy(float) / 100.0
    # each value v appears in Binomial(n, p_v) conversations, chosen uniformly
    k = rng.binomial(n, p)
    val = np.repeat(np.arange(p.size), k)
    conv = rng.integers(0, n, val.size)
    ids = np.array([f"c{i:07d}" for i in range(n)], dtype=object)
    labels = np.array(shapes.RESPONSE_TYPE_LABELS, dtype=object)
    true_rt = rng.choice(7, n, p=RT_SHARES)

    rows = []
    for a in range(3):
        present = rng.random(n) >= 0.10  # 10% missing per annotator
        c, v = _noisy(rng, conv, val, n, p, keep=0.85, extra=0.4)
        sets = _sets(c, v, n, names)
        rows.append(pd.DataFrame({
            shapes.UNIT: ids[present], shapes.RATER: f"annotator-{a + 1}",
            shapes.RESPONSE_TYPE: labels[_rt(rng, true_rt, 0.8)][present],
            "ai_values": sets[present],
        }))
    annotations = pd.concat(rows, ignore_index=True)
    gold = pd.DataFrame({shapes.UNIT: ids, shapes.RESPONSE_TYPE: labels[true_rt],
                         "ai_values": _sets(conv, val, n, names)})
    ext = []
    for prompt, (keep, extra, acc) in {"prompt-v1": (0.7, 0.8, 0.65),
                                       "prompt-v2": (0.85, 0.4, 0.8)}.items():
        c, v = _noisy(rng, conv, val, n, p, keep=keep, extra=extra)
        ext.append(pd.DataFrame({
            shapes.UNIT: ids, "prompt_id": prompt, "model": "synthetic",
            shapes.RESPONSE_TYPE: labels[_rt(rng, true_rt, acc)],
            "ai_values": _sets(c, v, n, names), "status": "ok",
        }))
    return annotations, gold, pd.concat(ext, ignore_index=True)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def nltk_comparison(annotations: pd.DataFrame, n_units: int, seed: int) -> None:
    from nltk.metrics.agreement import AnnotationTask
    from nltk.metrics.distance import masi_distance

    rng = np.random.default_rng(seed)
    units = annotations[shapes.UNIT].unique()
    pick = set(rng.choice(units, size=min(n_units, units.size), replace=False).tolist())
    sample = annotations.loc[annotations[shapes.UNIT].isin(pick)]
    triples = [(r, u, frozenset(v)) for u, r, v in
               sample[[shapes.UNIT, shapes.RATER, "ai_values"]].itertuples(index=False)]
    # use the MASI constants this nltk uses (2/3, 1/3 now; 0.67, 0.33 in older releases)
    weights = "exact" if abs(masi_distance({1, 2}, {1}) - (1 - 0.5 * 2 / 3)) < 1e-12 else "nltk"
    t0 = time.perf_counter()
    ours = value_sets.set_alpha(sample, "masi", masi_weights=weights).value
    t_ours = time.perf_counter() - t0
    def masi(a: frozenset, b: frozenset) -> float:
        # nltk divides by zero on two empty sets; ours defines their distance as 0
        return 0.0 if not a and not b else masi_distance(a, b)

    t0 = time.perf_counter()
    theirs = AnnotationTask(data=triples, distance=masi).alpha()
    t_nltk = time.perf_counter() - t0
    print(f"nltk comparison on {len(pick):,} units ({len(triples):,} ratings, "
          f"MASI weights {weights})")
    print(f"  nltk AnnotationTask.alpha  {t_nltk:8.3f} s   alpha = {theirs:.15f}")
    print(f"  annotator.agreement        {t_ours:8.3f} s   alpha = {ours:.15f}")
    print(f"  speed-up {t_nltk / t_ours:,.0f}x   largest difference {abs(ours - theirs):.2e}")


def command_bench(n: int, db: Path | None) -> None:
    """`annotator agreement --json` as a process, beside the floor, with its peak memory."""
    import commands  # bench/commands.py

    db = db or ROOT / "bench" / "out" / f"study-{n}.db"
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        commands.build_study(db, n)
    floor = commands.floor_seconds(db, commands.READS["agreement"])
    seconds, peak, _ = commands.run(["agreement", "--db", str(db), "--json"])
    print(f"{'command':<12} {'wall s':>8} {'floor s':>8} {'ratio':>7} {'peak MB':>9}")
    print(f"{'agreement':<12} {seconds:8.1f} {floor:8.1f} {seconds / floor:7.1f} {peak:9,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300_000, help="conversations")
    parser.add_argument("--boot", type=int, default=200, help="bootstrap resamples")
    parser.add_argument("--nltk-units", type=int, default=2_000, help="0 skips nltk")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--command", action="store_true",
                        help="time `annotator agreement` as a process on a study file")
    parser.add_argument("--db", type=Path, default=None, help="with --command: the study")
    args = parser.parse_args()
    if args.command:
        command_bench(args.n, args.db)
        return

    t0 = time.perf_counter()
    annotations, gold, extractions = synthetic_study(args.n, args.seed)
    maps, source = level_maps()
    print(f"synthetic study: {args.n:,} conversations, {len(annotations):,} annotations, "
          f"{len(extractions):,} extractions ({time.perf_counter() - t0:.1f} s to build; "
          f"level maps from {source})")
    base = peak_mb()

    t0, c0 = time.perf_counter(), time.process_time()
    report = agreement.agreement_report(
        annotations, gold, extractions, maps,
        value_fields=("ai_values",), distances=("masi",), top_k=50, n_boot=args.boot,
        seed=args.seed, per_annotator=False,
    )
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    frame = report.to_frame()
    # CPU seconds too: on a shared machine wall time also counts other people's jobs
    print(f"full report: {seconds:.2f} s wall, {cpu:.2f} s CPU, {len(frame):,} rows; "
          f"peak RSS {peak_mb():,.0f} MB (before the report {base:,.0f} MB)")
    show = frame.loc[
        frame["metric"].isin(["krippendorff_alpha_nominal", "krippendorff_alpha_ordinal",
                              "krippendorff_alpha_masi", "fleiss_kappa", "gwet_ac1",
                              "accuracy", "cohen_kappa", "micro_f1", "macro_f1", "mean_jaccard"])
        & ~frame["scope"].str.contains("~")
    ]
    with pd.option_context("display.width", 160, "display.max_colwidth", 60,
                           "display.max_rows", 80):
        print(show[["scope", "metric", "level", "value", "low", "high", "n_units", "note"]]
              .to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    if args.nltk_units:
        nltk_comparison(annotations, args.nltk_units, args.seed)


if __name__ == "__main__":
    main()
