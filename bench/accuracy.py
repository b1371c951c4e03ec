"""Accuracy table per feature family and for the fusion, on writers never used for fitting.

Reproduces bench/ACCURACY.md:

    PYTHONPATH=. .venv/bin/python bench/accuracy.py --jobs 2 --json bench/accuracy.json \
        --markdown bench/ACCURACY.md

1. generated slips: a fit set (``split="fit"``: fit fonts, fit designs, fit writer ids) and
   a held-out set (held-out fonts, all designs incl. never-seen ones, held-out writers);
2. real handwriting ``../shared/data/unipen-dev``, split by writer with
   :func:`sample_slips.splits.unipen_split`;
3. every method is fitted on generated-fit + UNIPEN-fit writers only and scored
   leave-one-out on each held-out set: mAP, top-1, top-5, top-1 template share (and chance)
   and single-core slips/s (decode + preprocessing + that method's features).

Raw features are extracted once (all families) and cached in ``--work``.

``--validation`` scores the same methods on validation writers instead, for choosing between
variants without looking at the held-out sets (which it never reads): the generated fit
writers whose handwriting font is one of a quarter of the fit fonts (`validation_fonts`),
and a third of the UNIPEN fit writers; the methods are fitted on the other fonts' writers
and the other UNIPEN fit writers.  Holding out fonts, not just writers, matters: measured
2026-12-05, fitting on 800 instead of 200 generated writers raised validation writers that
shared the fit fonts from mAP 0.887 to 0.905, yet moved held-out writers (unseen fonts) from
0.785 to 0.785 (top-1 0.889 -> 0.875); font-specific gains do not carry to new hands.

    PYTHONPATH=. .venv/bin/python bench/accuracy.py --validation --json /tmp/validation.json

The default method is also clustered at its calibrated point (``cluster_calibrated``, as the
product re-clusters): pairwise precision / recall / F1, ARI and B-cubed F1 under
``clustering``, and with ``--validation`` on a third set, the validation writers with 30 slips
each (regular customers).  2026-12-06, validation: generated P / R 0.985 / 0.253, UNIPEN
0.981 / 0.124, 30 slips a writer 0.947 / 0.003.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from cv.cluster import (  # noqa: E402
    calibration_of,
    cluster_calibrated,
    ranking_scores,
    replayed_pair_counts,
)
from cv.design import DESIGN_PENALTY, design_penalised, signature_rows  # noqa: E402
from cv.embed import (  # noqa: E402
    DEFAULT_POOL_SCALES,
    DEFAULT_STROKE_WIDTH,
    DESCRIPTOR_INKS,
    FAMILIES,
    HANDCRAFTED_FAMILIES,
    POOLED_FAMILIES,
    EmbeddingModel,
    RawFeatures,
    extract_files,
)
from cv.metrics import (  # noqa: E402
    clustering_scores,
    pair_counts,
    retrieval_by_kind,
    retrieval_scores,
    top1_attribute_rate,
)

UNIPEN = REPO_ROOT.parent / "shared" / "data" / "unipen-dev"

# name -> EmbeddingModel parameters; "families" decides which raw features it reads
METHODS: dict[str, dict] = {
    "contour hinge f1+f2+f3 (Bulacu 2007)": dict(families=("hinge",)),
    "run lengths (Bulacu 2007 f5)": dict(families=("runlength",)),
    "LBP 3 radii": dict(families=("lbp",)),
    "dense RootSIFT + VLAD-64 (one vocabulary, before 2026-12-06)": dict(
        families=("vlad",), vlad_vocabularies=1, vlad_components=0
    ),
    "dense RootSIFT + VLAD-64 x 3 vocabularies, each PCA-whitened to 256": dict(families=("vlad",)),
    "fusion hinge+LBP+VLAD, PCA only (no writer supervision)": dict(
        families=("hinge", "lbp", "vlad"), shrinkage=1.0
    ),
    "fusion hinge+runlength+LBP+VLAD, PCA + WCCN": dict(
        families=("hinge", "runlength", "lbp", "vlad")
    ),
    "fusion hinge+LBP+VLAD, PCA + WCCN": dict(families=("hinge", "lbp", "vlad")),
    "fusion hinge+LBP+VLAD+style/2, PCA + WCCN": dict(
        families=("hinge", "lbp", "vlad", "style"), family_weights=(1.0, 1.0, 1.0, 0.5)
    ),
    "fusion hinge+LBP+VLAD+style, PCA + WCCN": dict(
        families=("hinge", "lbp", "vlad", "style"), family_weights=(1.0, 1.0, 1.0, 1.0)
    ),
    "fusion hinge+LBP+VLAD+style, PCA + WCCN, one raw VLAD-64 (before 2026-12-06)": dict(
        families=("hinge", "lbp", "vlad", "style"), vlad_vocabularies=1, vlad_components=0
    ),
    "fusion hinge+LBP+VLAD, PCA + WCCN + template NAP-3": dict(
        families=("hinge", "lbp", "vlad"), nuisance_directions=3
    ),
    "COLD (He 2017)": dict(families=("cold",)),
    "chain codes 1-3 (Siddiqi 2010)": dict(families=("chaincode",)),
    "fusion hinge+LBP+VLAD+style+COLD/2, PCA + WCCN": dict(
        families=("hinge", "lbp", "vlad", "style", "cold"),
        family_weights=(1.0, 1.0, 1.0, 1.0, 0.5),
    ),
    "fusion hinge+LBP+VLAD+style+chain codes, PCA + WCCN": dict(
        families=("hinge", "lbp", "vlad", "style", "chaincode")
    ),
    "oBIF columns (Newell 2014)": dict(families=("obif",)),
    "fusion hinge+LBP+VLAD+style+oBIF, PCA + WCCN": dict(
        families=("hinge", "lbp", "vlad", "style", "obif"),
        family_weights=(1.0, 1.0, 1.0, 1.0, 1.0),
    ),
    # these need --learned-net (the network of the learned family, trained on fit writers)
    "learned family (small CNN, cv.features.learned)": dict(families=("learned",)),
    "fusion hinge+LBP+VLAD+style+learned x1.5, PCA + WCCN": dict(
        families=("hinge", "lbp", "vlad", "style", "learned")
    ),
}


# the row whose parameters are the EmbeddingModel / `sliplink train` defaults
DEFAULT_METHOD = "fusion hinge+LBP+VLAD+style, PCA + WCCN"


def derived_rows(method: str) -> tuple[str, str, str]:
    """The rows scored from a fused method's vectors besides its own: ranked on normalised
    scores (cv.cluster.ranking_scores); pairs of one printed design (recognised without
    labels, cv.design) less DESIGN_PENALTY on raw cosine; and both, which is how
    `sliplink similar` ranks."""
    shipped = " (shipped)" if method == DEFAULT_METHOD else ""
    return (
        f"{method}, ranked (augmented, less offsets)",
        f"{method}, same-design pairs less {DESIGN_PENALTY:g} (cv.design)",
        f"{method}, ranked and same-design pairs less {DESIGN_PENALTY:g},"
        f" as sliplink similar ranks{shipped}",
    )


# candidate defaults: scored ranked, design-penalised and clustered like the default
RANKED_METHODS = (
    DEFAULT_METHOD,
    "fusion hinge+LBP+VLAD+style+COLD/2, PCA + WCCN",
    "fusion hinge+LBP+VLAD+style+oBIF, PCA + WCCN",
    "fusion hinge+LBP+VLAD+style+learned x1.5, PCA + WCCN",
)


def _method_of(row: str) -> str:
    """The METHODS entry a result row belongs to (a ranked row names its method first)."""
    if row in METHODS:
        return row
    return max((m for m in RANKED_METHODS if row.startswith(m)), key=len)


def _generate(out: Path, *, writers: int, per: int, seed: int, split: str, jobs: int) -> Path:
    from sample_slips.generate import generate

    if not (out / "labels.csv").is_file():
        print(f"generating {out} ({writers} x {per}, {split})", file=sys.stderr)
        generate(out, writers=writers, slips_per_writer=per, seed=seed, split=split, jobs=jobs)
    return out


def _heldout_set(args: argparse.Namespace, per: int) -> Path:
    """The held-out generated set (held-out fonts, writers and designs), made if missing."""
    return _generate(
        args.work / "gen_heldout",
        writers=args.heldout_writers,
        per=per,
        seed=12,
        split="heldout",
        jobs=args.jobs,
    )


def validation_fonts(fonts: set[str], share: float = 0.25, fold: int = 0) -> set[str]:
    """The fit fonts whose writers validate (``share`` of them, at least one), chosen by a
    hash of the name: the same fonts whatever else is in the set.  ``fold`` k takes the k-th
    such share of the hash order instead of the first."""
    import hashlib

    ranked = sorted(fonts, key=lambda f: hashlib.sha256(f"validation-font:{f}".encode()).digest())
    n = max(1, round(share * len(ranked)))
    return set(ranked[fold * n : (fold + 1) * n])


def unipen_validates(writer: str, fold: int = 0) -> bool:
    """A third of the UNIPEN fit writers validate (hash of the id); ``fold`` 0-2 picks which."""
    import hashlib

    return hashlib.sha256(f"validation-writer:{writer}".encode()).digest()[0] % 3 == fold % 3


def _rows(labels: Path) -> list[dict[str, str]]:
    with labels.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _save_raws(path: Path, raws: list[RawFeatures]) -> None:
    arrays = {f"hist_{f}": np.stack([r.hist[f] for r in raws]) for f in raws[0].hist}
    arrays["desc"] = np.concatenate([r.descriptors for r in raws])
    arrays["desc_count"] = np.array([len(r.descriptors) for r in raws])
    arrays["ok"] = np.array([r.ok for r in raws])
    arrays["design"] = signature_rows([r.design for r in raws])
    np.savez(path, **arrays)


def _load_raws(path: Path) -> list[RawFeatures]:
    with np.load(path) as d:
        hists = {k[5:]: d[k] for k in d.files if k.startswith("hist_")}
        ends = np.cumsum(d["desc_count"])
        desc = np.split(d["desc"], ends[:-1])
        ok = d["ok"]
        design = d["design"]
    return [
        RawFeatures(
            hist={f: h[i] for f, h in hists.items()},
            descriptors=desc[i],
            ok=bool(ok[i]),
            design=design[i] if np.isfinite(design[i]).all() else None,
        )
        for i in range(len(ok))
    ]


def _code_hash() -> str:
    """Hash of the code that raw features depend on, so a stale cache is never reused."""
    import hashlib

    h = hashlib.sha256()
    for rel in (
        "cv/preprocess.py",
        "cv/separate.py",
        "cv/register.py",
        "cv/embed.py",
        "cv/design.py",
    ):
        p = REPO_ROOT / rel
        if p.is_file():
            h.update(p.read_bytes())
    for p in sorted((REPO_ROOT / "cv" / "features").glob("*.py")):
        h.update(p.read_bytes())
    for p in sorted((REPO_ROOT / "cv" / "models").glob("separator*")):
        h.update(p.read_bytes())
    return h.hexdigest()[:10]


def _raws(name: str, paths: list[Path], work: Path, params: dict, jobs: int) -> list[RawFeatures]:
    # keyed by the images too: a name can stand for different subsets (validation folds)
    import hashlib

    listed = hashlib.sha256("\n".join(str(p) for p in paths).encode()).hexdigest()[:8]
    cache = work / f"raw_{name}_{listed}_{_code_hash()}.npz"
    if cache.is_file():
        return _load_raws(cache)
    net = params.get("learned_net")
    model = EmbeddingModel(families=FAMILIES if net else HANDCRAFTED_FAMILIES, **params)
    t0 = time.perf_counter()
    raws, errors = extract_files(paths, model=model, jobs=jobs)
    print(f"{name}: {len(paths)} images in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    bad = [e for e in errors if e]
    if bad:
        raise SystemExit(f"unreadable benchmark images: {bad[:3]}")
    _save_raws(cache, raws)
    return raws  # type: ignore[return-value]


def _speed(paths: list[Path], params: dict, n: int = 40) -> dict[str, float]:
    """Single-process CPU ms per slip: decode + preprocess, and each family on top; and the
    shipped model's whole embedding (decode to vector, what `bench/embed.py` times).

    CPU time of this process, not wall time, so a busy machine inflates it less (contention
    for the two cores' caches still does).
    """
    from cv.embed import load_default_model
    from cv.features import chaincode, cold, hinge, inkviews, local, obif, style, texture
    from cv.features.learned import learned_family
    from cv.preprocess import load_image, preprocess, rescaled_ink

    net = params.get("learned_net")
    fam: dict[str, list[float]] = {
        f: []
        for f in (
            *(FAMILIES if net else HANDCRAFTED_FAMILIES),
            *("pool_resize", "pool_hinge", "pool_lbp", "pool_cold", "pool_chaincode"),
        )
    }
    base = []
    for p in paths[:n]:
        t0 = time.process_time()
        prep = preprocess(load_image(p.read_bytes()), target_stroke_width=params["stroke_width"])
        base.append(time.process_time() - t0)
        ink = prep.ink
        q = prep.quality
        for f, fn, args, kw in (
            ("hinge", hinge.contour_features, (ink,), {"legs": params["hinge_legs"]}),
            ("runlength", texture.run_length_histograms, (ink,), {}),
            ("cold", cold.cold_histograms, (ink,), {}),
            ("chaincode", chaincode.chaincode_histograms, (ink,), {}),
            ("lbp", texture.lbp_histograms, (ink,), {"radii": params["lbp_radii"]}),
            (
                "vlad",
                local.dense_rootsift,
                (ink,),
                {"max_points": params["max_keypoints"], "step": params["dense_step"]},
            ),
            (
                "style",
                style.style_features,
                (ink, prep.grey),
                {"stroke_width": q.stroke_width, "x_height": q.x_height, "scale": prep.scale},
            ),
            ("obif", obif.obif_columns, (prep.grey, ink), {}),
        ):
            t0 = time.process_time()
            fn(*args, **kw)
            fam[f].append(time.process_time() - t0)
        if net is not None:  # the resize to the network's stroke width, and the network
            t0 = time.process_time()
            learned_family(rescaled_ink(prep, net.stroke_width / params["stroke_width"]), net)
            fam["learned"].append(time.process_time() - t0)
        # scale pooling's extra scales: the resized ink, and hinge / LBP on it
        took = dict.fromkeys(
            ("pool_resize", "pool_hinge", "pool_lbp", "pool_cold", "pool_chaincode"), 0.0
        )
        for factor in params["pool_scales"]:
            t0 = time.process_time()
            binary = inkviews.binary(ink_s := rescaled_ink(prep, factor))
            t1 = time.process_time()
            contours_s = inkviews.contours(binary)
            hinge.contour_features(ink_s, legs=params["hinge_legs"], contours=contours_s)
            t2 = time.process_time()
            texture.lbp_histograms(ink_s, smooth=inkviews.smoothed(binary))
            t3 = time.process_time()
            # the contours are hinge's; COLD and the chain codes share them
            cold.cold_histograms(ink_s, contours=contours_s)
            t4 = time.process_time()
            chaincode.chaincode_histograms(ink_s, contours=contours_s)
            t5 = time.process_time()
            took["pool_resize"] += t1 - t0
            took["pool_hinge"] += t2 - t1
            took["pool_lbp"] += t3 - t2
            took["pool_cold"] += t4 - t3
            took["pool_chaincode"] += t5 - t4
        for f, v in took.items():
            fam[f].append(v)
    model, embed = load_default_model(), []
    try:
        for p in paths[:n]:
            t0 = time.process_time()
            model.embed(load_image(p.read_bytes()))
            embed.append(time.process_time() - t0)
    except ValueError as exc:  # a family's length changed in this code: refit the model
        print(f"shipped model not timed, its features no longer fit: {exc}", file=sys.stderr)
    out = {"base": float(np.median(base) * 1000), "slips": float(len(base))}
    out.update({f: float(np.median(v) * 1000) for f, v in fam.items()})
    out["embed_default"] = float(np.median(embed) * 1000) if embed else float("nan")
    return out


def _method_ms(speed: dict[str, float], families: Sequence[str], pooled: bool) -> float:
    """CPU ms per slip of a method: decode + preprocessing, its families and, with scale
    pooling, the extra scales of its pooled families."""
    ms = speed["base"] + sum(speed[f] for f in families)
    if pooled and any(f in POOLED_FAMILIES for f in families):
        ms += speed.get("pool_resize", 0.0)
        ms += sum(speed.get(f"pool_{f}", 0.0) for f in families if f in POOLED_FAMILIES)
    return ms


def _accounts(rows: list[dict[str, str]]) -> np.ndarray:
    """Each row's customer account ("" when anonymous), as re-clustering reads them."""
    return np.array([r.get("customer") or "" for r in rows], dtype=object)


def _clustering(
    model: EmbeddingModel,
    z: np.ndarray,
    writers: np.ndarray,
    accounts: np.ndarray | None,
    raws: Sequence[RawFeatures],
) -> dict:
    """Pairwise and B-cubed figures of batch clustering of the model's vectors ``z`` at its
    calibrated point, given the slips' customer accounts as the product gives them; slips
    without usable handwriting (``raws``' ``ok``) stay on their own, as the service leaves
    them."""
    cal = calibration_of(model)
    usable = np.array([r.ok for r in raws], dtype=bool)
    acc = None if accounts is None else accounts[usable]

    def clustered(calibration) -> np.ndarray:
        labels = np.full(len(z), -1, dtype=np.int64)
        if usable.sum() >= 2:
            labels[usable] = cluster_calibrated(z[usable], calibration, accounts=acc)[0]
        return labels

    labels = clustered(cal)
    s = clustering_scores(writers, labels)
    keys = ("pairwise_precision", "pairwise_recall", "pairwise_f1", "ari", "bcubed_f1")
    out = {k: float(s[k]) for k in keys}
    # live assignment (the model's live points): arrivals replayed one at a time, 3 orders,
    # pairs pooled (cv.cluster.replayed_pair_counts)
    out["live_precision"], out["live_recall"] = float("nan"), float("nan")
    if cal.live is not None:
        right, linked, true = replayed_pair_counts(z, writers, cal.live, usable=usable)
        out["live_precision"] = right / linked if linked else 1.0
        out["live_recall"] = right / max(true, 1)
    # the calibration aside: the best recall any merge threshold reaches at precision 0.98 on
    # these slips (an oracle), so features compare at equal precision; a calibrated point's
    # precision moves with each fit's fold tail and drags its recall along
    out["oracle_threshold"], out["oracle_recall"] = float("nan"), 0.0
    if cal.batch is not None:
        centre = cal.batch.merge_threshold
        for t in np.round(np.arange(centre + 0.3, centre - 0.31, -0.02), 2):
            fixed = replace(cal.batch, merge_threshold=float(t), impostor_tail=None)
            right, linked, true = pair_counts(writers, clustered(replace(cal, batch=fixed)))
            if linked and right >= 0.98 * linked and right / max(true, 1) > out["oracle_recall"]:
                out["oracle_threshold"], out["oracle_recall"] = float(t), right / max(true, 1)
    return out


def _score(
    z: np.ndarray,
    writers: np.ndarray,
    templates: np.ndarray | None,
    *,
    calibration=None,
    designs: np.ndarray | None = None,
    kinds: np.ndarray | None = None,
) -> dict:
    # with a calibration: ranked as `sliplink similar` ranks (cv.cluster.ranking_scores);
    # with design signatures: pairs of one printed design less cv.design.DESIGN_PENALTY
    sim = z @ z.T if calibration is None else ranking_scores(z, calibration)
    if designs is not None:
        sim = design_penalised(sim, designs)
    r = retrieval_scores(sim, writers)
    if kinds is not None:
        # UNIPEN's slip-like strings of capitals and digits ("chars") against its 1-3 cursive
        # words: each kind's queries searching the whole gallery
        r["by_kind"] = retrieval_by_kind(sim, writers, kinds)
    if templates is not None:
        t = top1_attribute_rate(sim, templates)
        r["template_rate"], r["template_chance"] = t["rate"], t["chance"]
    return r


def _kinds_text(unipen: dict) -> str:
    kinds = unipen.get("by_kind", {})
    return "".join(f" | {k} {v['map']:.3f}/{v['top1']:.3f}" for k, v in kinds.items())


def _derived_row_text(row: str, res: dict, label: str = "") -> str:
    """One stderr line of a ranked / design-penalised row's figures."""
    g, u = res["generated"], res["unipen"]
    return (
        f"  {row}: {label}gen mAP {g['map']:.3f} top1 {g['top1']:.3f} top5 {g['top5']:.3f}"
        f" tmpl {g['template_rate']:.3f} ({g['template_chance']:.3f}) | unipen mAP"
        f" {u['map']:.3f} top1 {u['top1']:.3f}{_kinds_text(u)}"
    )


def _slip_like(unipen: dict) -> str:
    chars = unipen.get("by_kind", {}).get("chars")
    return "-" if chars is None else f"{chars['map']:.3f} / {chars['top1']:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/sliplink-bench"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--fit-writers", type=int, default=200)
    ap.add_argument("--heldout-writers", type=int, default=60)
    ap.add_argument("--slips-per-writer", type=int, default=6)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--stroke-width", type=float, default=DEFAULT_STROKE_WIDTH)
    ap.add_argument(
        "--pool-scales",
        default=",".join(f"{f:g}" for f in DEFAULT_POOL_SCALES),
        help="scale factors hinge and LBP are averaged over (cv.embed.extract_raw); '' = none",
    )
    ap.add_argument(
        "--descriptor-ink",
        default=EmbeddingModel().descriptor_ink,
        choices=DESCRIPTOR_INKS,
        help="what the dense descriptors read (EmbeddingModel.descriptor_ink), at extraction"
        " and in every fitted method (bench/ACCURACY.md, session 24)",
    )
    ap.add_argument("--render", type=Path, default=None, help="only re-render this JSON")
    ap.add_argument(
        "--validation",
        action="store_true",
        help="score on validation writers of the fit data (held-out fonts of the fit split, "
        "a third of the UNIPEN fit writers); the held-out sets are not read",
    )
    ap.add_argument(
        "--validation-fold",
        type=int,
        default=0,
        choices=(0, 1, 2),
        help="which quarter of the fit fonts and third of the UNIPEN fit writers validate: "
        "the UNIPEN third is about 30 writers, too few to decide alone (session 13: stroke "
        "width 4.5 gained 0.033 UNIPEN top-1 there and lost 0.012 on the 77 held-out "
        "writers); average folds 0-2 before choosing",
    )
    ap.add_argument(
        "--anonymous",
        action="store_true",
        help="fit and cluster as if no slip had a customer account (the batch offsets then keep "
        "a customer's own slips, the rule before 2026-12-06)",
    )
    ap.add_argument(
        "--methods",
        default="",
        help="only these methods: names or parts of names separated by |",
    )
    ap.add_argument(
        "--seeds",
        default="0",
        help="fit each method once per seed (VLAD k-means, PCA) and report the means: one "
        "fit's ranked mAP moves by up to 0.01 with the seed",
    )
    ap.add_argument(
        "--fold-by",
        default="",
        help="labels.csv column (e.g. font) whose groups the calibration's held-out folds keep "
        "whole, as `sliplink train --fold-by`; '' = writers (the shipped model's rule). "
        "2026-12-06, validation seed 0, font: clustered P / R generated 0.989 / 0.222 -> "
        "0.986 / 0.178, UNIPEN 0.982 / 0.131 -> 0.976 / 0.097 (not taken)",
    )
    ap.add_argument(
        "--override",
        default="",
        help="JSON object of EmbeddingModel parameters set on every method, e.g. "
        "'{\"n_components\": 384}' (to tune one setting on validation writers)",
    )
    ap.add_argument(
        "--learned-net",
        type=Path,
        default=None,
        help="the learned family's network (.npz, e.g. the .net.npz `sliplink train` writes),"
        " trained on fit writers only (with --validation: not on the validation fold's fonts"
        " or UNIPEN writers either); adds the learned rows",
    )
    ap.add_argument(
        "--speed-only",
        action="store_true",
        help="re-measure only the speeds into the --json results (accuracies kept) and re-render",
    )
    args = ap.parse_args()
    if args.render is not None:
        saved = json.loads(args.render.read_text())
        text = _markdown(saved["meta"], saved["results"])
        if args.markdown:
            _write_markdown(args.markdown, text)
        else:
            print(text)
        return
    from cv.embed import worker_process_setup

    # small matrix products run faster single-threaded on this 2-core machine (measured 3x);
    # OpenCV's own thread pool too, or the one-core CPU times count its second thread; and
    # the allocator set up as in the workers, so the speed column is what they spend
    worker_process_setup()
    args.work.mkdir(parents=True, exist_ok=True)
    params = dict(
        stroke_width=args.stroke_width,
        hinge_legs=(round(args.stroke_width), round(2 * args.stroke_width)),
        # the EmbeddingModel defaults (what `sliplink train` fits)
        lbp_radii=EmbeddingModel().lbp_radii,
        max_keypoints=EmbeddingModel().max_keypoints,
        dense_step=EmbeddingModel().dense_step,
        descriptor_ink=args.descriptor_ink,
        vlad_clusters=64,
        pool_scales=tuple(float(f) for f in args.pool_scales.split(",") if f.strip()),
    )
    if args.learned_net is not None:
        from cv.features.learned import load_learned_model

        params["learned_net"] = load_learned_model(args.learned_net)

    per = args.slips_per_writer
    if args.speed_only:
        if args.json is None or not args.json.is_file():
            raise SystemExit("--speed-only updates an existing --json file")
        _update_speeds(args, params, per)
        return
    if args.validation and args.markdown:
        raise SystemExit("--markdown renders the held-out table; --validation writes --json only")
    gfit = _generate(
        args.work / ("gen_fit" if args.fit_writers == 200 else f"gen_fit{args.fit_writers}"),
        writers=args.fit_writers,
        per=per,
        seed=11,
        split="fit",
        jobs=args.jobs,
    )
    from sample_slips.splits import unipen_split

    fit_rows = [r for r in _rows(gfit / "labels.csv") if r.get("split", "fit") == "fit"]
    u_rows = _rows(UNIPEN / "labels.csv")
    u_fit, u_hel = unipen_split({r["writer"] for r in u_rows})
    tag = f"sw{args.stroke_width:g}"
    if "learned_net" in params:
        tag += f"_{params['learned_net'].version}"
    if params["pool_scales"]:
        tag += "_pool" + ",".join(f"{f:g}" for f in params["pool_scales"])
    if args.descriptor_ink != "binary":
        tag += f"_{args.descriptor_ink}"

    def raws_of(name: str, folder: Path, rows: list[dict[str, str]]) -> list[RawFeatures]:
        paths = [folder / r["image"] for r in rows]
        return _raws(f"{name}_{tag}", paths, args.work, params, args.jobs)

    raw_gfit = raws_of(f"gen_fit{args.fit_writers}", gfit, fit_rows)
    raw_u = raws_of("unipen", UNIPEN / "images", u_rows)
    if args.validation:
        # validation writers take the held-out sets' places; the held-out sets are not read
        val_fonts = validation_fonts({r["font"] for r in fit_rows}, fold=args.validation_fold)
        is_val = [r["font"] in val_fonts for r in fit_rows]
        hel_dir, hel_rows = gfit, [r for r, v in zip(fit_rows, is_val, strict=True) if v]
        raw_ghel = [x for x, v in zip(raw_gfit, is_val, strict=True) if v]
        fit_rows = [r for r, v in zip(fit_rows, is_val, strict=True) if not v]
        raw_gfit = [x for x, v in zip(raw_gfit, is_val, strict=True) if not v]
        u_hel = {w for w in u_fit if unipen_validates(w, args.validation_fold)}
        u_fit = u_fit - u_hel
        # Regulars: the same validation writers with 30 slips each (another seed).  Writers
        # with many slips fill each other's offset ranks (measured 2026-12-06: the shipped
        # batch clustering's pairwise recall 0.001 on them, 0.21 on the 6-slip set).
        many_dir = _generate(args.work / "gen_fit_many", writers=60, per=30, seed=14,
                             split="fit", jobs=args.jobs)  # fmt: skip
        many_rows = [r for r in _rows(many_dir / "labels.csv") if r["font"] in val_fonts]
        raw_many = raws_of("gen_fit_many", many_dir, many_rows)
        many_w = np.array([r["writer"] for r in many_rows])
        in_fit_half = [r["writer"] in u_fit | u_hel for r in u_rows]
        u_rows = [r for r, k in zip(u_rows, in_fit_half, strict=True) if k]
        raw_u = [x for x, k in zip(raw_u, in_fit_half, strict=True) if k]
    else:
        ghel = _heldout_set(args, per)
        hel_dir, hel_rows = ghel, _rows(ghel / "labels.csv")
        raw_ghel = raws_of("gen_heldout", ghel, hel_rows)
    u_is_fit = np.array([r["writer"] in u_fit for r in u_rows])

    train_raws = raw_gfit + [r for r, f in zip(raw_u, u_is_fit, strict=True) if f]
    train_w = [f"gen:{r['writer']}" for r in fit_rows] + [
        f"unipen:{r['writer']}" for r, f in zip(u_rows, u_is_fit, strict=True) if f
    ]
    # the printed template as the nuisance label (UNIPEN crops form one "(crop)" class)
    train_t = [r["template"] for r in fit_rows] + ["(crop)"] * int(u_is_fit.sum())
    train_a = list(_accounts(fit_rows)) + [""] * int(u_is_fit.sum())
    # the calibration holds within each source, as `sliplink train` fits it
    train_s = ["generated"] * len(fit_rows) + ["unipen"] * int(u_is_fit.sum())
    # calibration fold groups: generated writers by handwriting font, UNIPEN writers alone
    train_g = (
        [r.get(args.fold_by) or "" for r in fit_rows] + [""] * int(u_is_fit.sum())
        if args.fold_by
        else None
    )

    def accounts_of(rows: list[dict[str, str]]) -> np.ndarray | None:
        return None if args.anonymous else _accounts(rows)

    u_test = [r for r, f in zip(raw_u, u_is_fit, strict=True) if not f]
    u_test_w = np.array([r["writer"] for r, f in zip(u_rows, u_is_fit, strict=True) if not f])
    u_test_k = np.array([r["kind"] for r, f in zip(u_rows, u_is_fit, strict=True) if not f])
    hel_w = np.array([r["writer"] for r in hel_rows])
    hel_t = np.array([r["template"] for r in hel_rows])
    speed = _speed([hel_dir / r["image"] for r in hel_rows], params)

    def score_method(name: str, mparams: dict, seed: int) -> dict[str, dict]:
        """The method's rows (its own, and for the default its ranked / design rows)."""
        results: dict[str, dict] = {}
        override = json.loads(args.override) if args.override else {}
        model = EmbeddingModel(**{**params, **mparams, **override, "random_state": seed}).fit_raw(
            train_raws,
            train_w,
            nuisance=train_t,
            accounts=None if args.anonymous else train_a,
            groups=train_g,
            sources=train_s,
        )
        ms = _method_ms(speed, model.families, bool(model.pool_scales))
        z_hel, z_u = model.transform_raw(raw_ghel), model.transform_raw(u_test)
        res: dict[str, Any] = {
            "generated": _score(z_hel, hel_w, hel_t),
            "unipen": _score(z_u, u_test_w, None, kinds=u_test_k),
            "ms_per_slip": ms,
            "slips_per_s_core": 1000.0 / ms,
            "dim": model.dim,
            "version": model.version,
        }
        results[name] = res
        if name in RANKED_METHODS and model.calibration_ is not None:
            normalised, design_raw, design_ranked = derived_rows(name)
            # the same vectors scored on the clusterer's normalised scores (per-slip offsets
            # within each scored collection, cv.cluster.score_offsets)
            cal = model.calibration_.batch
            results[normalised] = res | {
                "generated": _score(z_hel, hel_w, hel_t, calibration=cal),
                "unipen": _score(z_u, u_test_w, None, calibration=cal, kinds=u_test_k),
            }
            d_hel = signature_rows([r.design for r in raw_ghel])
            d_u = signature_rows([r.design for r in u_test])
            for row, c in ((design_raw, None), (design_ranked, cal)):
                results[row] = res | {
                    "generated": _score(z_hel, hel_w, hel_t, calibration=c, designs=d_hel),
                    "unipen": _score(
                        z_u, u_test_w, None, calibration=c, designs=d_u, kinds=u_test_k
                    ),
                }
            for row in (normalised, design_raw, design_ranked):
                print(_derived_row_text(row, results[row]), file=sys.stderr)
            # batch clustering at the calibrated operating point, as the product re-clusters
            res["clustering"] = {
                "generated": _clustering(model, z_hel, hel_w, accounts_of(hel_rows), raw_ghel),
                "unipen": _clustering(model, z_u, u_test_w, None, u_test),
            }
            if args.validation:
                z_many = model.transform_raw(raw_many)
                res["clustering"]["generated_30_per_writer"] = _clustering(
                    model, z_many, many_w, accounts_of(many_rows), raw_many
                )
            for set_name, c in res["clustering"].items():
                print(
                    f"  clustered {set_name}: P {c['pairwise_precision']:.3f} R"
                    f" {c['pairwise_recall']:.3f} F1 {c['pairwise_f1']:.3f}"
                    f" B-cubed F1 {c['bcubed_f1']:.3f} | best R at P >= 0.98"
                    f" {c['oracle_recall']:.3f} (oracle) | live P {c['live_precision']:.3f}"
                    f" R {c['live_recall']:.3f}",
                    file=sys.stderr,
                )
        g, u = res["generated"], res["unipen"]
        print(
            f"{name:45s} gen mAP {g['map']:.3f} top1 {g['top1']:.3f} tmpl {g['template_rate']:.2f}"
            f" | unipen mAP {u['map']:.3f} top1 {u['top1']:.3f}{_kinds_text(u)}"
            f" | {res['slips_per_s_core']:.1f}/s",
            file=sys.stderr,
        )
        return results

    # a full method name selects that row only; any other part, every row containing it
    parts = [p.strip() for p in args.methods.split("|") if p.strip()]
    selected = {n: m for n, m in METHODS.items() if not parts or any(
        p == n or (p not in METHODS and p in n) for p in parts)}  # fmt: skip
    if "learned_net" not in params:
        selected = {n: m for n, m in selected.items() if "learned" not in m["families"]}
    seeds = [int(x) for x in args.seeds.split(",")]
    results = {}
    for name, mparams in selected.items():
        runs = [score_method(name, mparams, seed) for seed in seeds]
        for row in runs[0]:
            results[row] = _mean_of([r[row] for r in runs])
        if len(seeds) > 1:
            g, u = results[name]["generated"], results[name]["unipen"]
            print(
                f"{name:45s} MEAN of seeds {args.seeds}: gen mAP {g['map']:.3f} top1"
                f" {g['top1']:.3f} | unipen mAP {u['map']:.3f} top1 {u['top1']:.3f}",
                file=sys.stderr,
            )
            for row in derived_rows(name)[::2]:
                if row in results:
                    print(_derived_row_text(row, results[row], "MEAN "), file=sys.stderr)
            clusters = results[name].get("clustering", {})
            for set_name, c in clusters.items():
                print(
                    f"  MEAN clustered {set_name}: P {c['pairwise_precision']:.3f} R"
                    f" {c['pairwise_recall']:.3f} F1 {c['pairwise_f1']:.3f} | best R at"
                    f" P >= 0.98 {c['oracle_recall']:.3f} (oracle) | live P"
                    f" {c['live_precision']:.3f} R {c['live_recall']:.3f}",
                    file=sys.stderr,
                )
    meta = {
        "generated_fit": f"{args.fit_writers} writers x {per} (split=fit, seed 11)",
        "generated_heldout": f"{args.heldout_writers} writers x {per} (split=heldout, seed 12)",
        "unipen_fit_writers": len(u_fit),
        "unipen_heldout_writers": len(u_hel),
        "scored_on": (
            f"validation writers (fold {args.validation_fold})"
            if args.validation
            else "held-out writers"
        ),
        "params": {
            k: v.version if k == "learned_net" else list(v) if isinstance(v, tuple) else v
            for k, v in params.items()
        },
        "speed_ms": speed,
    }
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    if args.markdown:
        _write_markdown(args.markdown, _markdown(meta, results))


def _update_speeds(args: argparse.Namespace, params: dict, per: int) -> None:
    """Re-time every method on the held-out slips; the accuracies in the JSON are kept (the
    code change being timed must leave the embeddings unchanged)."""
    saved = json.loads(args.json.read_text())
    ghel = _heldout_set(args, per)
    speed = _speed([ghel / r["image"] for r in _rows(ghel / "labels.csv")], params)
    saved["meta"]["speed_ms"] = speed
    for name, res in saved["results"].items():
        method = METHODS[_method_of(name)]
        ms = _method_ms(speed, method["families"], bool(params["pool_scales"]))
        res["ms_per_slip"], res["slips_per_s_core"] = ms, 1000.0 / ms
    args.json.write_text(json.dumps(saved, indent=2) + "\n")
    if args.markdown:
        _write_markdown(args.markdown, _markdown(saved["meta"], saved["results"]))


def _mean_of(runs: list):
    """Element-wise mean of the same nested result dicts (numbers averaged, the rest kept
    from the first run)."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: _mean_of([r[k] for r in runs]) for k in first}
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return float(np.mean(runs))
    return first


NOTES_HEADING = "## Reading the table"


def _write_markdown(path: Path, text: str) -> None:
    """Write the generated tables, keeping the notes the file already holds from
    ``NOTES_HEADING`` on (they are written by hand, session by session)."""
    notes = ""
    if path.is_file():
        old = path.read_text()
        if NOTES_HEADING in old:
            notes = old[old.index(NOTES_HEADING) :]
    path.write_text(text + notes)


def _markdown(meta: dict, results: dict) -> str:
    lines = [
        "# Writer retrieval accuracy per method",
        "",
        "Generated by `PYTHONPATH=. .venv/bin/python bench/accuracy.py --jobs 2 --json"
        " bench/accuracy.json --markdown bench/ACCURACY.md`.",
        f"Fitted on generated slips ({meta['generated_fit']}) plus the"
        f" {meta['unipen_fit_writers']} UNIPEN fit writers; scored leave-one-out on held-out"
        f" generated slips ({meta['generated_heldout']}; held-out fonts, writers, and designs"
        f" never seen in fitting) and on the {meta['unipen_heldout_writers']} held-out UNIPEN"
        " writers. UNIPEN slip-like: only its queries of capitals and digits (`kind=chars`,"
        ' slip-like strings such as "10 WIN"), searching all held-out crops; its other'
        " queries are 1-3 cursive words. slips/s: one core, decode + preprocessing + the"
        " method's features.",
        "",
        "| method | gen mAP | gen top-1 | gen top-5 | template rate (chance) | UNIPEN mAP |"
        " UNIPEN top-1 | UNIPEN top-5 | UNIPEN slip-like mAP / top-1 | slips/s/core |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        g, u = r["generated"], r["unipen"]
        if name == DEFAULT_METHOD:
            name = f"**{name} (shipped default)**"
        lines.append(
            f"| {name} | {g['map']:.3f} | {g['top1']:.3f} | {g['top5']:.3f} |"
            f" {g['template_rate']:.2f} ({g['template_chance']:.2f}) | {u['map']:.3f} |"
            f" {u['top1']:.3f} | {u['top5']:.3f} | {_slip_like(u)} | {r['slips_per_s_core']:.1f} |"
        )
    lines += [
        "",
        "## The shipped model `cv/models/default.npz`",
        "",
        "Fitted on fit-split data only (fit fonts, fit designs, fit writer ids, UNIPEN fit half):",
        "",
        "```",
        "sliplink samples generate --writers 200 --slips-per-writer 6 --seed 11 --split fit \\",
        "    --out /tmp/gen_fit --jobs 2",
        "sliplink train /tmp/gen_fit --labels /tmp/gen_fit/labels.csv \\",
        "    --unipen-fit ../shared/data/unipen-dev --out cv/models/default.npz --jobs 2",
        "```",
        "",
        "(defaults: `--families hinge,lbp,vlad,style` at equal weights,"
        " `--vlad-clusters 64 --vlad-vocabularies 3 --vlad-components 256 --n-components 256"
        " --whiten 0.5 --shrinkage 0.1 --projection-bits 4"
        f" --stroke-width {meta['params'].get('stroke_width', 5.0):g} --seed 0`; hinge legs"
        f" {' and '.join(str(v) for v in meta['params'].get('hinge_legs', (5, 10)))} px,"
        " up to 1600 dense descriptors per slip, every 2nd contour pixel; hinge and LBP"
        " averaged over scales"
        f" {', '.join(f'{f:g}' for f in meta['params'].get('pool_scales', [])) or '(none)'}"
        " of the normalised one besides it).",
        "",
        "Speed (CPU time on one core, OpenCV and BLAS single-threaded, medians over"
        f" {meta['speed_ms'].get('slips', 20):.0f} held-out slips) in ms per slip:"
        f" decode + preprocessing {meta['speed_ms']['base']:.1f}, hinge"
        f" {meta['speed_ms']['hinge']:.1f}, run lengths {meta['speed_ms']['runlength']:.1f},"
        f" LBP {meta['speed_ms']['lbp']:.1f}, dense RootSIFT {meta['speed_ms']['vlad']:.1f},"
        f" style {meta['speed_ms'].get('style', float('nan')):.1f},"
        f" oBIF columns {meta['speed_ms'].get('obif', float('nan')):.1f},"
        f" COLD {meta['speed_ms'].get('cold', float('nan')):.1f},"
        f" chain codes {meta['speed_ms'].get('chaincode', float('nan')):.1f},"
        + (
            f" learned (resize and network) {meta['speed_ms']['learned']:.1f},"
            if "learned" in meta["speed_ms"]
            else ""
        )
        + " scale pooling's extra"
        f" scales (resize, hinge, LBP) {meta['speed_ms'].get('pool_resize', 0.0):.1f} +"
        f" {meta['speed_ms'].get('pool_hinge', 0.0):.1f} +"
        f" {meta['speed_ms'].get('pool_lbp', 0.0):.1f}; the shipped model's whole"
        " embedding (decode to vector, what `bench/embed.py` times)"
        f" {meta['speed_ms'].get('embed_default', float('nan')):.1f}.",
        "",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
