"""Accounts of one writer found as wholes (`cv.accounts`), against slip-level clustering.

Each labelled folder's writers get customer accounts: every writer's usable slips are dealt,
in a seeded random order, into accounts of ``--sizes`` slips (as many as the slips fill; a
range such as ``6-8`` draws each account's size), so
two accounts of one writer are the same person behind two names.  Then:

- ``ratio``: `cv.accounts.account_links` (the shipped rule, each pair at its smaller
  account's size class, when every account holds 6+ slips; and every ``--thresholds``
  value): account pairs linked, right, and the recall of the true account pairs;
- ``clusters``: what slip-level batch clustering (`cv.cluster.cluster_calibrated`, accounts
  given) links: two accounts are linked when one cluster holds slips of both;
- ``slips`` (with ``--slips``): one slip against the accounts (`cv.accounts.likely_accounts`,
  GET /slips/{id}/accounts): half the writers, drawn, keep an account of the first size's
  slips; every other slip is a query.  How often the writer's account ranks in the top 1 /
  3 / 5 / 10, and how many slips one best score could attribute at precision 0.9-0.99;
- with ``--fit``, a size class's constants (`cv.accounts.SizeClass`, for accounts of the
  smallest of ``--sizes``): ``reference``, the lowest ratio at which the account
  pairs reach precision 0.98 pooled over ``--draws`` random halves of the writers and those
  halves' mean eligible accounts; ``impostor_tail``, the generalised Pareto tail of all the
  different-writer ratios (`cv.accounts.fit_impostor_tail`); and
  ``fitted_rule``, what the rule with those constants links on the whole set.

    PYTHONPATH=. .venv/bin/python bench/account_links.py DIR [DIR ...] [--sizes 8,8]
        [--thresholds 0.9,0.95] [--fit] [--jobs 2] [--json F] [--model M] [--cache V.npz]

Choose thresholds with ``--fit`` on fit-split writers the model was not fitted on
(``sliplink samples generate --split fit --first-writer 1001 --slips-per-writer 20``); judge
on held-out ones.  Prints JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from cv.accounts import (  # noqa: E402
    SIZE_CLASSES,
    SizeClass,
    account_links,
    eligible_accounts,
    fit_impostor_tail,
    ratio_threshold,
)

TARGET_PRECISION = 0.98


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """ "8,8" -> [(8, 8), (8, 8)]; "6-8,6-8": each account's size drawn from 6 to 8."""
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.append((int(lo), int(hi or lo)))
    return out


def deal_accounts(writers: np.ndarray, sizes: list[tuple[int, int]], seed: int) -> np.ndarray:
    """An account key per slip ("" = none): each writer's slips dealt into accounts of
    ``sizes`` slips (a size range: drawn for each account) in a random order."""
    rng = np.random.default_rng(seed)
    out = np.full(len(writers), "", dtype=object)
    for w in sorted(set(writers.tolist())):
        idx = rng.permutation(np.flatnonzero(writers == w))
        at = 0
        for k, (lo, hi) in enumerate(sizes):
            size = lo if lo == hi else int(rng.integers(lo, hi + 1))
            if at + size > len(idx):
                break
            out[idx[at : at + size]] = f"{w}#{k}"
            at += size
    return out


def tally(pairs: set[tuple[str, str]], owner: dict[str, str], true_pairs: int) -> dict:
    right = sum(owner[a] == owner[b] for a, b in pairs)
    return {
        "linked": len(pairs),
        "right": right,
        "precision": round(right / len(pairs), 4) if pairs else None,
        "recall": round(right / true_pairs, 4) if true_pairs else None,
    }


def cluster_pairs(x: np.ndarray, accounts: np.ndarray, calibration) -> set[tuple[str, str]]:
    """Account pairs that share a batch cluster."""
    from cv.cluster import cluster_calibrated

    keyed = np.array([a if a else None for a in accounts.tolist()], dtype=object)
    labels, _ = cluster_calibrated(x, calibration, accounts=keyed)
    by_cluster: dict[int, set[str]] = {}
    for lab, acc in zip(labels.tolist(), accounts.tolist(), strict=True):
        if lab >= 0 and acc:
            by_cluster.setdefault(lab, set()).add(acc)
    out = set()
    for accs in by_cluster.values():
        ordered = sorted(accs)
        out |= {(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :]}
    return out


def embed_dirs(dirs: list[Path], model, jobs: int) -> tuple[np.ndarray, np.ndarray]:
    """The usable slips' vectors of these labelled folders and their writers (folder:writer)."""
    from cv.embed import embed_files

    xs, ws = [], []
    for d in dirs:
        with (d / "labels.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        usable: list[bool] = []
        x, errors = embed_files(
            [d / r["image"] for r in rows], model=model, jobs=jobs, usable_out=usable
        )
        ok = np.array([e is None for e in errors]) & np.array(usable, dtype=bool)
        xs.append(x[ok])
        ws.append(np.array([f"{d.name}:{r['writer']}" for r in rows], dtype=object)[ok])
    return np.vstack(xs), np.concatenate(ws)


def slips_to_accounts(
    x: np.ndarray, writers: np.ndarray, size: int, seed: int
) -> dict[str, object]:
    """One slip against accounts of ``size`` slips held by half the writers (module doc)."""
    from cv.accounts import account_profiles, slip_account_scores

    rng = np.random.default_rng(seed)
    names = sorted(set(writers.tolist()))
    held = set(rng.choice(names, len(names) // 2, replace=False).tolist())
    vectors, queries = {}, []
    for w in names:
        idx = rng.permutation(np.flatnonzero(writers == w))
        if w in held and len(idx) > size:
            vectors[w] = x[idx[:size]]
            idx = idx[size:]
        queries += idx.tolist()
    profiles = account_profiles(vectors, min_slips=size)
    keys, scores = profiles.keys, slip_account_scores(x[queries], profiles)
    owner = np.asarray(keys, dtype=object)
    qw = writers[queries]
    has = np.isin(qw, owner)
    own = np.array([keys.index(w) if h else -1 for w, h in zip(qw, has, strict=True)])
    rank = (scores[has] > scores[has, own[has]][:, None]).sum(axis=1)
    best = scores.argmax(axis=1)
    right = owner[best] == qw
    order = np.argsort(-scores[np.arange(len(qw)), best], kind="stable")
    precision = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    out: dict[str, object] = {
        "accounts": len(keys),
        "queries": len(qw),
        "queries_with_account": int(has.sum()),
        **{f"top_{k}": round(float((rank < k).mean()), 4) for k in (1, 3, 5, 10)},
    }
    for target in (0.9, 0.95, 0.98, 0.99):
        ok = np.flatnonzero(precision >= target)
        found = int(right[order][: ok[-1] + 1].sum()) if len(ok) else 0
        out[f"attributed_at_p{target}"] = {
            "slips": found,
            "recall": round(found / max(int(has.sum()), 1), 4),
        }
    return out


def reference_point(every: list, owner: dict[str, str], draws: int, seed: int) -> tuple[float, int]:
    """The lowest ratio at which account pairs reach :data:`TARGET_PRECISION`, pooled over
    ``draws`` random halves of the writers, and the halves' mean number of accounts."""
    rng = np.random.default_rng(seed)
    writers = sorted(set(owner.values()))
    scores: list[float] = []
    right: list[bool] = []
    sizes = []
    for _ in range(draws):
        half = set(rng.choice(writers, len(writers) // 2, replace=False).tolist())
        sizes.append(sum(w in half for w in owner.values()))
        for lk in every:
            if owner[lk.a] in half and owner[lk.b] in half:
                scores.append(lk.ratio)
                right.append(owner[lk.a] == owner[lk.b])
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.cumsum(np.asarray(right)[order])
    precision = hits / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(precision >= TARGET_PRECISION)
    base = float(np.asarray(scores)[order][ok[-1]]) if len(ok) else float("inf")
    return base, int(round(float(np.mean(sizes))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="labelled folders (labels.csv)")
    ap.add_argument(
        "--sizes", default="8,8", help='account sizes dealt per writer ("6-8": drawn per account)'
    )
    ap.add_argument("--thresholds", default=None, help="ratios to tally besides the shipped rule")
    ap.add_argument("--fit", action="store_true", help="also fit the impostor tail")
    ap.add_argument("--draws", type=int, default=8, help="halves of the writers for --fit")
    ap.add_argument("--slips", action="store_true", help="also one slip against accounts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--model", type=Path, default=None, help="model file (default: shipped)")
    ap.add_argument(
        "--cache", type=Path, default=None, help="vectors file: read if it exists, else written"
    )
    args = ap.parse_args(argv)

    from cv.cluster import calibration_of
    from cv.embed import EmbeddingModel, load_default_model

    model = EmbeddingModel.load(args.model) if args.model else load_default_model()
    if args.cache and args.cache.exists():
        cached = np.load(args.cache)
        if str(cached["version"]) != model.version:
            ap.error(f"{args.cache} holds vectors of {cached['version']}, not {model.version}")
        x, writers = cached["x"], cached["writer"].astype(object)
    else:
        x, writers = embed_dirs(args.dirs, model, args.jobs)
        if args.cache:
            np.savez(args.cache, x=x, writer=writers.astype(str), version=model.version)
    sizes = parse_sizes(args.sizes)
    smallest = min(lo for lo, _ in sizes)
    accounts = deal_accounts(writers, sizes, args.seed)
    owner = {a: w for a, w in zip(accounts.tolist(), writers.tolist(), strict=True) if a}
    per_writer: dict[str, int] = {}
    for a in set(owner):
        per_writer[owner[a]] = per_writer.get(owner[a], 0) + 1
    true_pairs = sum(k * (k - 1) // 2 for k in per_writer.values())
    vectors = {a: x[accounts == a] for a in sorted(set(owner))}
    # the accounts as dealt are compared (the rule's ACCOUNT_MIN_SLIPS would drop smaller ones)
    eligible = len(eligible_accounts(vectors, min_slips=smallest))
    result: dict = {
        "model": model.version,
        "slips": int(len(x)),
        "writers": len(set(writers.tolist())),
        "accounts": len(vectors),
        "sizes": args.sizes,
        "true_account_pairs": true_pairs,
    }
    if smallest >= SIZE_CLASSES[0].slips:  # the shipped rule, each pair by its smaller account
        shipped = account_links(vectors, min_slips=smallest)
        result["shipped_thresholds"] = {
            c.slips: round(ratio_threshold(eligible, constants=c), 4) for c in SIZE_CLASSES
        }
        result["ratio"] = tally({(lk.a, lk.b) for lk in shipped}, owner, true_pairs)
    every = account_links(
        vectors, min_slips=smallest, threshold=-np.inf, candidates=len(vectors) - 1
    )

    def at(t: float) -> dict:
        return tally({(lk.a, lk.b) for lk in every if lk.ratio >= t}, owner, true_pairs)

    for t in [float(v) for v in args.thresholds.split(",")] if args.thresholds else []:
        result[f"ratio_at_{t}"] = at(t)
    result["clusters"] = tally(cluster_pairs(x, accounts, calibration_of(model)), owner, true_pairs)
    if args.slips:
        result["slips"] = slips_to_accounts(x, writers, sizes[0][0], args.seed)
    if args.fit:
        impostors = np.array([lk.ratio for lk in every if owner[lk.a] != owner[lk.b]])
        compared = {lk.a for lk in every} | {lk.b for lk in every}
        base, reference = reference_point(
            every, {a: owner[a] for a in compared}, args.draws, args.seed
        )
        tail = fit_impostor_tail(impostors)
        result["eligible_accounts"] = eligible
        result["impostor_pairs"] = int(impostors.size)
        result["impostor_max"] = round(float(impostors.max()), 4) if impostors.size else None
        result["reference"] = {"ratio": round(base, 4), "accounts": reference}
        if tail is not None:
            result["impostor_tail"] = {
                "start": round(tail.start, 4),
                "share": round(tail.share, 6),
                "shape": round(tail.shape, 4),
                "scale": round(tail.scale, 4),
                "end": round(tail.start - tail.scale / tail.shape, 4) if tail.shape < 0 else None,
            }
            fitted = SizeClass(smallest, base, reference, tail)
            t = ratio_threshold(eligible, constants=fitted)
            result["fitted_rule"] = {"threshold": round(t, 4), **at(t)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
