"""Offline commands on image folders: ``similar``, ``eval`` and ``train`` (see CONTRACTS.md)."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from cli.options import JobsOption, ModelFileOption, TemplatesOption

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

__all__ = ["register", "list_images", "read_labels"]


class CliError(Exception):
    """A bad argument or input: printed as one line on stderr, exit code 2."""


def _fail(message: str) -> None:
    raise CliError(message)


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (not recursive), sorted by name."""
    if not folder.is_dir():
        _fail(f"{folder}: not a directory")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_labels(path: Path) -> list[dict[str, str]]:
    """Rows of a labels CSV that has at least the columns ``image`` and ``writer``."""
    if not path.is_file():
        _fail(f"{path}: labels file not found")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            if "image" not in fields or "writer" not in fields:
                _fail(f"{path}: labels need the columns image,writer (found {','.join(fields)})")
            return [dict(r) for r in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        _fail(f"{path}: unreadable labels CSV ({exc})")
    return []


class _Progress:
    """A single self-overwriting progress line on stderr."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.start = time.perf_counter()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - self.last > 0.5:
            self.last = now
            rate = done / max(now - self.start, 1e-9)
            end = "\n" if done == total else ""
            print(
                f"\r{self.label}: {done}/{total} ({rate:.1f}/s)",
                end=end,
                file=sys.stderr,
                flush=True,
            )


def _load_model(model_path: Path | None):
    from cv.embed import EmbeddingModel, load_default_model

    try:
        return EmbeddingModel.load(model_path) if model_path else load_default_model()
    except ValueError as exc:
        _fail(str(exc))


def _load_templates(folder: Path | None):
    if folder is None:
        return None
    from cv.preprocess import load_image

    images = []
    for p in list_images(folder):
        try:
            images.append(load_image(p.read_bytes()))
        except (OSError, ValueError) as exc:
            print(f"{p}: skipped template ({exc})", file=sys.stderr)
    if not images:
        _fail(f"{folder}: no readable template images")
    return images


def _embed(
    paths: list[Path], *, model, jobs: int, templates, designs: bool = True
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    """Embeddings of all paths, a mask of the readable ones, the wall time, the printed
    design signatures (`cv.design`; NaN rows for plain crops and unreadable files, and for
    every file unless ``designs``, which costs ~0.9 ms a slip) and a mask of the slips with
    usable handwriting."""
    from cv.design import signature_rows
    from cv.embed import embed_files

    start = time.perf_counter()
    found: list = []
    usable: list[bool] = []
    x, errors = embed_files(
        paths,
        model=model,
        jobs=jobs,
        templates=templates,
        progress=_Progress("embedding"),
        designs_out=found if designs else None,
        usable_out=usable,
    )
    if not designs:
        found = [None] * len(paths)
    elapsed = time.perf_counter() - start
    for err in errors:
        if err is not None:
            print(f"skipped {err}", file=sys.stderr)
    ok = np.array([e is None for e in errors], dtype=bool)
    return x, ok, elapsed, signature_rows(found), np.array(usable, dtype=bool)


def _check_jobs(jobs: int) -> None:
    if jobs < 1:
        _fail(f"--jobs must be >= 1, got {jobs}")


# ------------------------------------------------------------------------------ similar


def similar_command(
    directory: Path,
    *,
    top: int,
    out: Path,
    model_path: Path | None,
    templates_dir: Path | None,
    jobs: int,
) -> None:
    if top < 1:
        _fail(f"--top must be >= 1, got {top}")
    _check_jobs(jobs)
    paths = list_images(directory)
    model = _load_model(model_path)
    templates = _load_templates(templates_dir)
    x, ok, _, designs, _ = _embed(paths, model=model, jobs=jobs, templates=templates)
    idx = np.flatnonzero(ok)
    # scored as the clusterer scores pairs (normalised by the slips' offsets when the
    # model's calibration is: slips close to everything no longer top every list), on
    # vectors averaged with their nearest others (cv.cluster.ranking_scores), less a little
    # for pairs of one printed design (cv.design: the form must not pick the neighbour)
    from cv import cluster
    from cv.design import design_penalised

    sim = design_penalised(cluster.ranking_scores(x[idx], _model_calibration(model)), designs[idx])
    np.fill_diagonal(sim, -np.inf)
    k = min(top, max(len(idx) - 1, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["query", "neighbour", "rank", "score"])
        for qi in range(len(idx)):
            order = np.argsort(-sim[qi], kind="stable")[:k]
            for rank, ni in enumerate(order, start=1):
                writer.writerow(
                    [paths[idx[qi]].name, paths[idx[ni]].name, rank, f"{float(sim[qi, ni]):.6f}"]
                )
    print(f"wrote {out} ({len(idx)} images, top {k})", file=sys.stderr)


# ------------------------------------------------------------------------------ eval


def _components(x: np.ndarray, threshold: float) -> np.ndarray:
    """Fallback clustering: connected components of the graph of pairs >= threshold."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    _, labels = connected_components(csr_matrix(sim >= threshold), directed=False)
    sizes = np.bincount(labels)
    return np.where(sizes[labels] > 1, labels, -1).astype(np.int64)


def _collection_offsets(x: np.ndarray, calibration) -> np.ndarray | None:
    """Each slip's score offset within these slips as measured (unshrunk: what ranking one
    slip's neighbours uses, see Calibration.offsets), None when ``calibration`` (or its
    absence) means raw cosine."""
    if getattr(calibration, "offset_ranks", None) is None:
        return None
    from cv import cluster

    return cluster.collection_offsets(x, calibration)


def _score_matrix(x: np.ndarray, offsets: np.ndarray | None) -> np.ndarray:
    """(n, n) pair scores: cosine, less half of both slips' offsets when given."""
    sim = x @ x.T
    if offsets is not None:
        sim = sim - 0.5 * (offsets[:, None] + offsets[None, :])
    return sim


def evaluate_embeddings(
    x: np.ndarray,
    writers: np.ndarray,
    *,
    templates: np.ndarray | None = None,
    threshold: float | None = None,
    calibration=None,
    labels_out: list | None = None,
    designs: np.ndarray | None = None,
    accounts: np.ndarray | None = None,
    kinds: np.ndarray | None = None,
    usable: np.ndarray | None = None,
    distinct_writers: float | None = None,
    live=None,
) -> dict:
    """All eval figures for L2-normalised embeddings ``x`` (n, d) with true ``writers``.

    Clustering runs at ``calibration``'s merge threshold (scores normalised by per-slip
    offsets within these slips when the calibration says so, as the product clusters), or
    at the raw cosine ``threshold`` when given instead.  With neither, at the raw operating
    threshold for pairwise precision >= 0.98 measured on these pairs (an oracle).  The
    ``*_p98`` figures are the operating point on these pairs (raw cosine; ``norm_*`` with
    offsets); ``best_*`` the clustering threshold with the best pairwise F1 (oracle).  The
    predicted cluster labels are appended to ``labels_out`` when given.  With ``designs``
    (the slips' printed-design signatures, `cv.design`) the retrieval figures rank pairs of
    one design a little lower, as `sliplink similar` does; thresholds and clustering keep
    the plain scores their calibration was measured on.  ``accounts`` (the slips' customer
    accounts, "" when anonymous) are given to the clustering as re-clustering gives them.
    With ``kinds`` (labels.csv's ``kind`` column, e.g. UNIPEN's ``chars`` and ``words``),
    ``by_kind`` holds the retrieval figures of each kind's queries searching all slips.
    ``usable`` (False where preprocessing found no usable handwriting) leaves those slips
    out of the clustering, on their own, as the service leaves them.  With
    ``distinct_writers`` (the model's calibrated bound), how often these writers' split
    halves cross it (:func:`_split_writers`).  With ``live`` (the model's live operating
    points, `cv.cluster.Calibration.live`), the pairwise precision and recall of these slips
    assigned one at a time as they arrive (:func:`_live_replay`).
    """
    from cv import metrics

    def ranked_as_similar(scores: np.ndarray) -> np.ndarray:
        if designs is None:
            return scores
        from cv.design import design_penalised

        return design_penalised(scores, designs)

    vectors = x  # x becomes the clustering's (augmented) vectors below
    sim = x @ x.T
    result: dict = {"n": int(len(writers)), "writers": int(len(set(writers.tolist())))}
    retrieval_sim = ranked_as_similar(sim)
    result.update({k: v for k, v in metrics.retrieval_scores(retrieval_sim, writers).items()})
    if templates is not None:
        t = metrics.top1_attribute_rate(retrieval_sim, templates)
        result["template_rate"], result["template_chance"] = t["rate"], t["chance"]
    if kinds is not None:
        result["by_kind"] = metrics.retrieval_by_kind(retrieval_sim, writers, kinds)
    iu = np.triu_indices(len(writers), k=1)
    same = writers[iu[0]] == writers[iu[1]]
    op = metrics.precision_threshold(sim[iu], same, target_precision=0.98)
    result["threshold_p98"] = op["threshold"]
    result["recall_at_p98"] = op["recall"]
    try:
        from cv import cluster
    except ImportError:
        thr = threshold if threshold is not None else op["threshold"]
        thr = float(thr) if np.isfinite(thr) else 1.0
        labels = _components(x, thr)
        result["cluster_threshold"] = thr
        result["cluster_method"] = "threshold + connected components (cv.cluster missing)"
    else:
        if threshold is not None or calibration is None:
            thr = threshold if threshold is not None else op["threshold"]
            calibration = cluster.Calibration.uncalibrated(float(thr) if np.isfinite(thr) else 1.0)
        ranks = calibration.offset_ranks
        plain, x = x, cluster.batch_vectors(x, calibration)  # what the clustering scores
        measured = _collection_offsets(x, calibration)
        offsets = None
        if measured is not None:
            # thresholds compare scores shrunk by the collection's size, rankings measured ones
            offsets = calibration.shrink(measured, collection=len(x))
            norm = metrics.precision_threshold(
                _score_matrix(x, offsets)[iu], same, target_precision=0.98
            )
            result["norm_threshold_p98"] = norm["threshold"]
            result["norm_recall_at_p98"] = norm["recall"]
            ranked = ranked_as_similar(cluster.ranking_scores(plain, calibration))
            result.update(
                {f"norm_{k}": v for k, v in metrics.retrieval_scores(ranked, writers).items()}
            )
            if kinds is not None:
                for kind, figures in metrics.retrieval_by_kind(ranked, writers, kinds).items():
                    result["by_kind"][kind].update({f"norm_{k}": v for k, v in figures.items()})
        keep = np.ones(len(plain), dtype=bool) if usable is None else np.asarray(usable, bool)
        labels = np.full(len(plain), -1, dtype=np.int64)
        if keep.sum() >= 2:
            labels[keep] = cluster.cluster_calibrated(
                plain[keep], calibration, accounts=None if accounts is None else accounts[keep]
            )[0]
        result["no_handwriting"] = int((~keep).sum())
        # as raised for the collection's size (cv.cluster.Calibration.for_collection)
        used = calibration.for_collection(int(keep.sum()))
        result["cluster_threshold"] = float(used.merge_threshold)
        result["cluster_method"] = "cv.cluster.cluster_embeddings" + (
            f", scores less per-slip offsets (neighbour ranks {ranks[0]}-{ranks[1]})"
            if ranks is not None
            else ""
        )
        kk = min(10, len(writers) - 1)
        sweep = cluster.calibrate_threshold(
            x, writers, neighbours=cluster.knn_graph(x, k=kk), offsets=offsets
        )
        curve: list[dict] = sweep["curve"]  # type: ignore[assignment]
        best = max(curve, key=lambda c: c["f1"])
        result["best_threshold"] = best["threshold"]
        result["best_pairwise_f1"], result["best_ari"] = best["f1"], best["ari"]
        if live is not None:
            result.update(_live_replay(plain, writers, keep, live))
    result.update(metrics.clustering_scores(writers, labels))
    # the counts behind the pairwise figures, so that runs on several sets can be pooled
    right, linked, true_pairs = metrics.pair_counts(writers, labels)
    result.update(pairs_right=right, pairs_linked=linked, pairs_true=true_pairs)
    if distinct_writers is not None:
        result.update(_split_writers(vectors, writers, distinct_writers))
    if labels_out is not None:
        labels_out.append(labels)
    return result


#: Random arrival orders the live replay of `sliplink eval` pools.
LIVE_REPLAY_ORDERS = 3


def _live_replay(x: np.ndarray, writers: np.ndarray, usable: np.ndarray, live) -> dict:
    """Pairwise precision and recall of live assignment on these slips: the usable ones
    assigned one at a time from an empty index, as the workers assign arriving slips between
    re-clusters (`cv.cluster.replayed_pair_counts`), pairs pooled over random arrival orders."""
    from cv.cluster import replayed_pair_counts

    right, linked, true_pairs = replayed_pair_counts(
        x, writers, live, orders=LIVE_REPLAY_ORDERS, usable=usable
    )
    return {
        "live_pairs_right": right,
        "live_pairs_linked": linked,
        "live_pairs_true": true_pairs,
        "live_merge_threshold": float(live.merge_threshold),
        "live_pair_threshold": float(live.pair_threshold),
        "live_precision": right / linked if linked else 1.0,
        "live_recall": right / true_pairs if true_pairs else 0.0,
    }


def _split_writers(x: np.ndarray, writers: np.ndarray, bound: float) -> dict:
    """The linked-accounts rule's "different writers" bound on these writers: how often one
    writer's slips split in alternate halves read as two writers (mean cosine below it), and
    two writers' halves as one (at or above it)."""
    from cv.cluster import writer_halves

    has_vector = np.linalg.norm(x, axis=1) > 0  # slips without handwriting embed as zeros
    _, a, b = writer_halves(x[has_vector], writers[has_vector])
    out: dict = {"distinct_writers_bound": float(bound), "split_writers": int(len(a))}
    if len(a) >= 2:
        cross = a @ b.T
        off = ~np.eye(len(a), dtype=bool)
        out["split_writers_below"] = float(np.mean(np.diag(cross) < bound))
        out["split_pairs_above"] = float(np.mean(cross[off] >= bound))
    return out


def _model_calibration(model):
    """The model's clustering calibration from its fit data, None when it has none."""
    try:
        from cv.cluster import calibration_of
    except ImportError:
        return None
    calibration = calibration_of(model)
    # batch clustering's operating point (normalised scores) where the model has one
    return (calibration.batch or calibration) if calibration.calibrated else None


def _live_points(model):
    """The model's live assignment points (`cv.cluster.Calibration.live`), None without."""
    from cv.cluster import calibration_of

    calibration = calibration_of(model)
    return calibration.live if calibration.calibrated else None


def _model_threshold(model) -> float | None:
    """The model's calibrated threshold; 1.0 is its "no operating point found" placeholder,
    then the clusterer's default."""
    threshold = getattr(model, "threshold_", None)
    if threshold is None or not threshold < 1.0:
        try:
            from cv.cluster import DEFAULT_THRESHOLD
        except ImportError:
            return None
        return float(DEFAULT_THRESHOLD)
    return float(threshold)


def _folder_figures(
    directory: Path,
    *,
    labels_path: Path,
    model,
    templates,
    jobs: int,
    threshold: float | None,
    labels_out: list | None = None,
    calibration=None,
) -> tuple[dict, np.ndarray, list[dict[str, str]], list[Path]]:
    """Embed the labelled images of ``directory`` and compute the eval figures.
    Returns (figures, embeddings of the readable images, their label rows, their paths)."""
    _check_jobs(jobs)
    on_disk = {p.name: p for p in list_images(directory)}
    rows = read_labels(labels_path)
    missing = [r["image"] for r in rows if r["image"] not in on_disk]
    for name in missing:
        print(f"skipped {name}: listed in labels but not an image in {directory}", file=sys.stderr)
    rows = [r for r in rows if r["image"] in on_disk]
    if len(rows) < 2:
        _fail(f"{labels_path}: fewer than 2 labelled images found in {directory}")
    paths = [on_disk[r["image"]] for r in rows]
    x, ok, elapsed, designs, usable = _embed(paths, model=model, jobs=jobs, templates=templates)
    rows = [r for r, good in zip(rows, ok, strict=True) if good]
    kept = [p for p, good in zip(paths, ok, strict=True) if good]
    x, designs, usable = x[ok], designs[ok], usable[ok]
    writers = np.array([r["writer"] for r in rows])
    tmpl = (
        np.array([r.get("template", "") for r in rows]) if rows and "template" in rows[0] else None
    )
    result = evaluate_embeddings(
        x,
        writers,
        templates=tmpl,
        threshold=threshold,
        calibration=calibration,
        labels_out=labels_out,
        designs=designs,
        accounts=np.array([r.get("customer") or "" for r in rows], dtype=object),
        kinds=np.array([r.get("kind", "") for r in rows]) if rows and "kind" in rows[0] else None,
        usable=usable,
        distinct_writers=getattr(getattr(model, "calibration_", None), "distinct_writers", None),
        live=_live_points(model) if calibration is not None else None,
    )
    result["model"] = model.version
    result["skipped"] = int((~ok).sum()) + len(missing)
    result["seconds"] = elapsed
    result["slips_per_second"] = len(paths) / max(elapsed, 1e-9)
    result["jobs"] = jobs
    return result, x, rows, kept


def _write_report(out_dir: Path, *, x, rows, paths, labels, figures: dict, title: str) -> Path:
    from cli.eval_report import write_report

    shown = {k: v for k, v in figures.items() if k not in ("seconds", "jobs")}
    shown["threshold"] = float(figures["cluster_threshold"])
    page = write_report(
        out_dir,
        embeddings=x,
        writers=[r["writer"] for r in rows],
        images=paths,
        predicted=np.asarray(labels, dtype=np.int64),
        figures=shown,
        title=title,
    )
    print(f"report: {page}", file=sys.stderr)
    return page


def folder_evaluation(
    directory: Path,
    *,
    labels_path: Path,
    model,
    threshold: float | None,
    jobs: int,
    target_precision: float,
    report: Path | None,
    title: str,
) -> tuple[dict, tuple[float, float], np.ndarray]:
    """Eval figures of ``model`` on a labelled folder (``sliplink models evaluate``), the
    operating point (threshold, recall) for ``target_precision``, the embeddings and, with
    ``report``, the HTML report written there."""
    from cv import metrics

    labels: list = []
    result, x, rows, paths = _folder_figures(
        directory,
        labels_path=labels_path,
        model=model,
        templates=None,
        jobs=jobs,
        threshold=threshold,
        labels_out=labels,
    )
    writers = np.array([r["writer"] for r in rows])
    iu = np.triu_indices(len(writers), k=1)
    op = metrics.precision_threshold(
        (x @ x.T)[iu], writers[iu[0]] == writers[iu[1]], target_precision=target_precision
    )
    result["target_precision"] = target_precision
    result["threshold_at_target"] = op["threshold"]
    result["recall_at_target"] = op["recall"]
    print(
        f"{directory.name}: mAP {result['map']:.3f} top-1 {result['top1']:.3f} "
        f"pairwise F1 {result['pairwise_f1']:.3f}; threshold {op['threshold']:.4f} for "
        f"precision >= {target_precision}, recall {op['recall']:.3f}"
    )
    if report is not None:
        _write_report(
            report, x=x, rows=rows, paths=paths, labels=labels[0], figures=result, title=title
        )
    return result, (op["threshold"], op["recall"]), x


def eval_command(
    directory: Path,
    *,
    labels_path: Path,
    json_out: Path | None,
    model_path: Path | None,
    templates_dir: Path | None,
    jobs: int,
    threshold: float | None,
    report: Path | None = None,
) -> dict:
    _check_jobs(jobs)
    list_images(directory)
    read_labels(labels_path)
    model = _load_model(model_path)
    templates = _load_templates(templates_dir)
    calibration = None
    if threshold is None:
        calibration = _model_calibration(model)
        if calibration is None:
            threshold = _model_threshold(model)
    labels: list = []
    result, x, rows, paths = _folder_figures(
        directory,
        labels_path=labels_path,
        model=model,
        templates=templates,
        jobs=jobs,
        threshold=threshold,
        labels_out=labels,
        calibration=calibration,
    )
    tmpl = rows and "template" in rows[0]
    r = result
    lines = [
        f"model            {r['model']}",
        f"images           {r['n']} ({r['writers']} writers, {r['skipped']} skipped)",
        f"retrieval        mAP {r['map']:.3f}  top-1 {r['top1']:.3f}  top-5 {r['top5']:.3f}",
    ]
    if "norm_map" in r:
        lines.append(
            f"                 as `similar` ranks: mAP {r['norm_map']:.3f}  "
            f"top-1 {r['norm_top1']:.3f}  top-5 {r['norm_top5']:.3f}"
        )
    for kind, k in r.get("by_kind", {}).items():
        ranked = f" (ranked {k['norm_map']:.3f} / {k['norm_top1']:.3f})" if "norm_map" in k else ""
        lines.append(
            f"  kind {kind:9s}  {k['queries']} queries: mAP {k['map']:.3f}  top-1 {k['top1']:.3f}"
            + ranked
        )
    if tmpl:
        lines.append(
            f"template share   top-1 shares the template {r['template_rate']:.3f} "
            f"(chance {r['template_chance']:.3f})"
        )
    lines.append(
        f"operating point  threshold {r['threshold_p98']:.4f} for pairwise precision >= 0.98, "
        f"recall {r['recall_at_p98']:.3f}"
    )
    if "norm_threshold_p98" in r:
        lines.append(
            f"                 normalised scores: threshold {r['norm_threshold_p98']:.4f}, "
            f"recall {r['norm_recall_at_p98']:.3f}"
        )
    lines += [
        f"clustering       {r['cluster_method']}, threshold {r['cluster_threshold']:.4f}",
        f"                 ARI {r['ari']:.3f}  pairwise P {r['pairwise_precision']:.3f} "
        f"R {r['pairwise_recall']:.3f} F1 {r['pairwise_f1']:.3f}  B-cubed F1 {r['bcubed_f1']:.3f}",
    ]
    if "best_threshold" in r:
        lines.append(
            f"                 best on these slips (oracle): threshold {r['best_threshold']:.2f}"
            f", pairwise F1 {r['best_pairwise_f1']:.3f}, ARI {r['best_ari']:.3f}"
        )
    if "live_precision" in r:
        lines.append(
            f"live             one slip at a time as they arrive ({LIVE_REPLAY_ORDERS} orders),"
            f" merge {r['live_merge_threshold']:.3f} / pair {r['live_pair_threshold']:.3f}:"
            f" pairwise P {r['live_precision']:.3f} R {r['live_recall']:.3f}"
        )
    if "split_writers_below" in r:
        lines.append(
            f"different writers mean cosine below {r['distinct_writers_bound']:.3f} (model): one "
            f"writer's split halves below it {r['split_writers_below']:.3f} of "
            f"{r['split_writers']} writers, two writers' halves at or above it "
            f"{r['split_pairs_above']:.3f}"
        )
    lines.append(f"throughput       {r['slips_per_second']:.1f} slips/s with {jobs} job(s)")
    print("\n".join(lines))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if report is not None:
        _write_report(
            report,
            x=x,
            rows=rows,
            paths=paths,
            labels=labels[0],
            figures=result,
            title=f"sliplink evaluation of {result['model']} on {directory.name}",
        )
    return result


def reviews_eval_command(
    *,
    json_out: Path | None,
    model_path: Path | None,
    threshold: float | None,
) -> dict:
    """``sliplink eval --from-reviews``: pair precision/recall on the risk team's confirmed
    and rejected links (from the configured database).  The model is ``--model`` or the
    active version; stored embeddings of that version are used, the rest computed."""
    from cli import models_cmd
    from workers import model as worker_model

    settings = models_cmd._settings()
    with models_cmd._session(settings) as s:
        if model_path is not None:
            model = _load_model(model_path)
        else:
            version = worker_model.ensure_active_model(session=s, settings=settings)
            s.commit()
            model = worker_model.model_for(version, session=s, settings=settings)
        if threshold is None:
            threshold = worker_model.threshold(model)
        try:
            result, _, _ = models_cmd.evaluate_reviews(
                s, model=model, version=str(model.version), threshold=threshold
            )
        except models_cmd.CliError as exc:
            _fail(str(exc))
    print(models_cmd.format_reviews(result))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return result


# ------------------------------------------------------------------------------ train


def _labelled_paths(
    directory: Path, labels_path: Path, *, split: str | None, fold_by: str | None = None
) -> tuple[list[Path], list[str], list[str], list[str], list[str]]:
    """Images, writers, templates, customer accounts ("" when anonymous or no ``customer``
    column) and calibration fold groups (the ``fold_by`` column's value, "" without one)
    of a labelled folder's rows."""
    on_disk = {p.name: p for p in list_images(directory)}
    paths, writers, templates, accounts, groups = [], [], [], [], []
    dropped = 0
    rows = read_labels(labels_path)
    if fold_by and rows and fold_by not in rows[0]:
        _fail(f"{labels_path}: --fold-by {fold_by!r} is not one of its columns")
    for r in rows:
        if split is not None and "split" in r and r["split"] != split:
            dropped += 1
            continue
        if r["image"] not in on_disk:
            print(f"skipped {r['image']}: not an image in {directory}", file=sys.stderr)
            continue
        paths.append(on_disk[r["image"]])
        writers.append(f"{directory.name}:{r['writer']}")
        templates.append(r.get("template") or "(none)")
        accounts.append(f"{directory.name}:{r['customer']}" if r.get("customer") else "")
        groups.append(f"{directory.name}:{r[fold_by]}" if fold_by and r.get(fold_by) else "")
    if dropped:
        print(
            f"{labels_path}: ignored {dropped} rows whose split is not {split!r}"
            " (never fit on held-out data; --split '' keeps every row)",
            file=sys.stderr,
        )
    return paths, writers, templates, accounts, groups


def train_command(
    directories: list[Path],
    *,
    labels_paths: list[Path],
    unipen_fit: list[Path],
    out: Path,
    split: str | None,
    jobs: int,
    params: dict,
    from_reviews: bool = False,
    register: bool = False,
    actor: str = "cli",
    fold_by: str | None = None,
    learned_net: Path | None = None,
    learned_steps: int | None = None,
) -> None:
    from cv.embed import EmbeddingModel, extract_files
    from sample_slips.splits import unipen_split

    _check_jobs(jobs)
    if len(directories) != len(labels_paths):
        _fail("give one --labels per DIR (same order)")
    paths: list[Path] = []
    writers: list[str] = []
    templates: list[str] = []
    accounts: list[str] = []  # customer accounts: batch calibration leaves a slip's own out
    groups: list[str] = []  # calibration fold groups ("" = the writer alone)
    # where each image comes from: the calibration must hold within each source
    sources: list[str] = []
    for d, lab in zip(directories, labels_paths, strict=True):
        p, w, t, a, g = _labelled_paths(d, lab, split=split, fold_by=fold_by)
        paths += p
        writers += w
        templates += t
        accounts += a
        groups += g
        sources += [str(d)] * len(p)
    n_slips = len(paths)  # the --unipen-fit images (plain crops) come after
    for folder in unipen_fit:
        lab = folder / "labels.csv"
        rows = read_labels(lab)
        fit, _ = unipen_split({r["writer"] for r in rows})
        img_dir = folder / "images" if (folder / "images").is_dir() else folder
        on_disk = {p.name: p for p in list_images(img_dir)}
        for r in rows:
            if r["writer"] in fit and r["image"] in on_disk:
                paths.append(on_disk[r["image"]])
                writers.append(f"unipen:{r['writer']}")
                templates.append("(crop)")
                accounts.append("")
                groups.append("")
                sources.append(str(folder))
    crops = [i >= n_slips for i in range(len(paths))]
    try:
        net = None if learned_net is None else _learned_net_of(learned_net)
        model = EmbeddingModel(**params, learned_net=net)
        if "learned" in model.families and net is None:
            _require_torch()
        else:
            model._validate()
    except (TypeError, ValueError) as exc:
        _fail(str(exc))
    review_groups: list[list[int]] = []
    if from_reviews:
        review_groups = _review_writer_groups()
    if len(set(writers)) + len(review_groups) < 2:
        _fail("training needs labelled images of at least 2 writers")
    n_review = sum(len(g) for g in review_groups)
    print(
        f"training on {len(paths) + n_review} images of "
        f"{len(set(writers)) + len(review_groups)} writers"
        + (f" ({len(review_groups)} from reviewed links)" if from_reviews else ""),
        file=sys.stderr,
    )
    if "learned" in model.families and model.learned_net is None:
        from cv.learned_train import train_family_net

        net_out = out.with_name(f"{out.stem}.net.npz")
        model.learned_net = train_family_net(
            paths,
            writers,
            net_out,
            crops=crops,
            embed_stroke_width=model.stroke_width,
            jobs=jobs,
            steps=learned_steps,
            seed=model.random_state,
        )
        print(
            f"wrote {net_out}: the learned family's network {model.learned_net.version}"
            " (--learned-net reuses it)",
            file=sys.stderr,
        )
    raws, errors = extract_files(paths, model=model, jobs=jobs, progress=_Progress("features"))
    for err in errors:
        if err is not None:
            print(f"skipped {err}", file=sys.stderr)
    keep = [i for i, e in enumerate(errors) if e is None]
    fit_raws = [r for r in (raws[i] for i in keep) if r is not None]
    fit_writers = [writers[i] for i in keep]
    fit_nuisance = [templates[i] for i in keep]
    fit_accounts = [accounts[i] for i in keep]
    fit_groups = [groups[i] for i in keep]
    fit_sources = [sources[i] for i in keep]
    if review_groups:
        r_raws, r_writers = _review_raws(review_groups, model=model)
        fit_raws += r_raws
        fit_writers += r_writers
        fit_nuisance += ["(slip)"] * len(r_raws)
        fit_accounts += [""] * len(r_raws)
        fit_groups += [""] * len(r_raws)
        fit_sources += ["(reviewed links)"] * len(r_raws)
    try:
        model.fit_raw(
            fit_raws,
            fit_writers,
            nuisance=fit_nuisance,
            accounts=fit_accounts,
            groups=fit_groups if fold_by else None,
            sources=fit_sources,
        )
    except ValueError as exc:
        _fail(str(exc))
    model.save(out)
    print(f"wrote {out}: {model.version} (dim {model.dim})", file=sys.stderr)
    if register:
        from cli.models_cmd import register_loaded
        from workers.rollout import score_reference

        fit_data: dict[str, Any] = {
            "folders": [str(d) for d in directories] + [str(u) for u in unipen_fit],
            "split": split,
            "images": len(fit_raws),
            "writers": len(set(fit_writers)),
            "review_groups": len(review_groups),
            "review_slips": n_review,
        }
        # kept for information only: the fitting writers' pairs separate more than any new
        # writers' do (measured KS 0.40 against held-out writers of the same generator, 0.08
        # between two held-out halves), so the drift watch compares with held-out data
        fit_data["pair_scores"] = score_reference(
            model.transform_raw(fit_raws), source=f"fitting data ({len(fit_raws)} images)"
        )
        register_loaded(model, out, fit_data=fit_data, actor=actor)


def _learned_net_of(path: Path):
    """The learned family's network in ``path``: a network file (``.net.npz``, as `sliplink
    train` writes it) or an embedding model file that carries one (e.g. the shipped model)."""
    from cv.embed import EmbeddingModel
    from cv.features.learned import load_learned_model

    try:
        return load_learned_model(path)
    except ValueError as as_net:
        try:
            model = EmbeddingModel.load(path)
        except ValueError:
            raise as_net from None
        if model.learned_net is None:
            raise ValueError(f"model file {path} has no learned family network") from None
        return model.learned_net


def _require_torch() -> None:
    """Fail clearly when the learned family must be trained and torch is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        _fail(
            "training the learned family needs torch (pip install torch, CPU build);"
            " or give an already trained network with --learned-net FILE"
        )


def _review_writer_groups() -> list[list[int]]:
    """Writers from the risk team's verdicts: slips joined by confirmed links (connected
    components).  A component holding a rejected pair is dropped: the verdicts contradict
    each other there, so it labels nobody."""
    from cli import models_cmd

    settings = models_cmd._settings()
    with models_cmd._session(settings) as s:
        pairs, same = models_cmd.review_pairs(s)
    parent: dict[int, int] = {}

    def root(a: int) -> int:
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for (a, b), ok in zip(pairs, same, strict=True):
        if ok:
            parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for a in list(parent):
        groups.setdefault(root(a), []).append(a)
    bad = {
        root(a)
        for (a, b), ok in zip(pairs, same, strict=True)
        if not ok and a in parent and b in parent and root(a) == root(b)
    }
    if bad:
        print(
            f"reviews: {len(bad)} linked group(s) contain a rejected pair, left out",
            file=sys.stderr,
        )
    return [sorted(g) for r, g in sorted(groups.items()) if r not in bad and len(g) >= 2]


def _review_raws(groups: list[list[int]], *, model) -> tuple[list, list[str]]:
    """Raw features of the reviewed slips (stored images), labelled by group."""
    from cli import models_cmd
    from cv.imageio import ImageError, decode_greyscale
    from store.models import SlipImage

    settings = models_cmd._settings()
    raws, writers = [], []
    with models_cmd._session(settings) as s:
        for g in groups:
            for sid in g:
                image = s.get(SlipImage, sid)
                if image is None:
                    print(f"skipped slip {sid}: no stored image", file=sys.stderr)
                    continue
                try:
                    grey, _ = decode_greyscale(image.png)
                except ImageError as exc:
                    print(f"skipped slip {sid}: {exc}", file=sys.stderr)
                    continue
                raws.append(model.extract(grey))
                writers.append(f"review:{g[0]}")
    return raws, writers


# ------------------------------------------------------------------------------ typer


def _default_actor() -> str:
    from cli.models_cmd import default_actor

    return default_actor()


def _run(fn, *args, **kwargs):
    from store.errors import DomainError

    try:
        return fn(*args, **kwargs)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(code=2) from None
    except DomainError as exc:  # the database refused (e.g. an unknown model version)
        print(f"error: {exc.detail}", file=sys.stderr)
        raise typer.Exit(code=2) from None


def register(app: typer.Typer) -> None:
    """Add the ``similar``, ``eval`` and ``train`` commands to ``app``."""

    @app.command("similar")
    def similar(
        directory: Annotated[Path, typer.Argument(help="Folder of slip images (not recursive).")],
        out: Annotated[
            Path, typer.Option("--out", help="CSV to write: query,neighbour,rank,score.")
        ],
        top: Annotated[int, typer.Option("--top", help="Neighbours per query.")] = 5,
        model: ModelFileOption = None,
        templates: TemplatesOption = None,
        jobs: JobsOption = 1,
    ) -> None:
        """For every image, its K most similar other images by handwriting.

        Score: higher = more similar; cosine less both images' offsets (may be negative)."""
        _run(
            similar_command,
            directory,
            top=top,
            out=out,
            model_path=model,
            templates_dir=templates,
            jobs=jobs,
        )

    @app.command("eval")
    def evaluate(
        directory: Annotated[
            Path | None, typer.Argument(help="Folder of labelled images (or --from-reviews).")
        ] = None,
        labels: Annotated[
            Path | None, typer.Option("--labels", help="CSV with image,writer[,template].")
        ] = None,
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Also write the figures as JSON.")
        ] = None,
        model: ModelFileOption = None,
        templates: TemplatesOption = None,
        jobs: JobsOption = 1,
        threshold: Annotated[
            float | None,
            typer.Option("--threshold", help="Clustering threshold (default: the model's own)."),
        ] = None,
        report: Annotated[
            Path | None,
            typer.Option("--report", help="Write the HTML report (index.html + PNGs) here."),
        ] = None,
        from_reviews: Annotated[
            bool,
            typer.Option(
                "--from-reviews",
                help="Evaluate on the risk team's confirmed/rejected links in the database "
                "(model: --model, else the active version).",
            ),
        ] = False,
    ) -> None:
        """Retrieval, clustering and template-share figures on labelled images, or pair
        precision/recall on reviewed links (--from-reviews)."""
        if from_reviews:
            if directory is not None or labels is not None or report is not None:
                print("error: --from-reviews takes no DIR, --labels or --report", file=sys.stderr)
                raise typer.Exit(code=2)
            _run(reviews_eval_command, json_out=json_out, model_path=model, threshold=threshold)
            return
        if directory is None or labels is None:
            print("error: give DIR --labels FILE, or --from-reviews", file=sys.stderr)
            raise typer.Exit(code=2)
        _run(
            eval_command,
            directory,
            labels_path=labels,
            json_out=json_out,
            model_path=model,
            templates_dir=templates,
            jobs=jobs,
            threshold=threshold,
            report=report,
        )

    @app.command("train")
    def train(
        out: Annotated[Path, typer.Option("--out", help="Model file to write (.npz).")],
        directories: Annotated[
            list[Path] | None, typer.Argument(help="Folders of labelled training images.")
        ] = None,
        labels: Annotated[
            list[Path] | None, typer.Option("--labels", help="labels.csv per DIR, same order.")
        ] = None,
        split: Annotated[
            str | None,
            typer.Option("--split", help="Keep only rows whose split column equals this."),
        ] = "fit",
        unipen_fit: Annotated[
            list[Path] | None,
            typer.Option(
                "--unipen-fit", help="A UNIPEN folder: add its fit-half writers (unipen_split)."
            ),
        ] = None,
        jobs: JobsOption = 1,
        families: Annotated[
            str, typer.Option("--families", help="Comma-separated feature families.")
        ] = "hinge,lbp,vlad,style",
        n_components: Annotated[
            int, typer.Option("--n-components", help="Embedding dimension.")
        ] = 256,
        whiten: Annotated[float, typer.Option("--whiten", help="PCA whitening power, 0-1.")] = 0.5,
        shrinkage: Annotated[float, typer.Option("--shrinkage", help="WCCN shrinkage, 0-1.")] = 0.1,
        nuisance_directions: Annotated[
            int,
            typer.Option(
                "--nuisance-directions",
                help="Template directions projected out (labels' template column).",
            ),
        ] = 0,
        vlad_clusters: Annotated[
            int, typer.Option("--vlad-clusters", help="VLAD vocabulary size.")
        ] = 64,
        vlad_vocabularies: Annotated[
            int, typer.Option("--vlad-vocabularies", help="VLAD vocabularies (seeds).")
        ] = 3,
        vlad_components: Annotated[
            int,
            typer.Option(
                "--vlad-components",
                help="PCA-whitened components per vocabulary's VLAD (0: raw VLADs).",
            ),
        ] = 256,
        descriptor_components: Annotated[
            int,
            typer.Option(
                "--descriptor-components",
                help="RootSIFT PCA dimensions before VLAD (0: the 128-d descriptors).",
            ),
        ] = 0,
        descriptor_whiten: Annotated[
            float,
            typer.Option("--descriptor-whiten", help="Whitening power of that PCA, 0-1."),
        ] = 0.0,
        descriptor_ink: Annotated[
            str,
            typer.Option(
                "--descriptor-ink",
                help="What the dense RootSIFT descriptors read: grey (the handwriting's"
                " darkness with its anti-aliased rims, the shipped model's) or binary (the"
                " blurred binary ink of models before session 25; bench/ACCURACY.md).",
            ),
        ] = "grey",
        projection_bits: Annotated[
            int,
            typer.Option(
                "--projection-bits",
                help="Stored VLAD projections: 4 or 8-bit codes with per-column scales"
                " (final projection int8), 16 = float16.",
            ),
        ] = 4,
        stroke_width: Annotated[
            float,
            typer.Option(
                "--stroke-width",
                help="Normalised stroke width; the contour-hinge legs follow it (about one "
                "and two stroke widths).",
            ),
        ] = 5.0,
        pool_scales: Annotated[
            str | None,
            typer.Option(
                "--pool-scales",
                help="Scale factors hinge and LBP are averaged over, comma-separated"
                " ('' = none; default cv.embed.DEFAULT_POOL_SCALES, 0.9,1.1).",
            ),
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="random_state of the model.")] = 0,
        from_reviews: Annotated[
            bool,
            typer.Option(
                "--from-reviews",
                help="Also fit on slips joined by confirmed links in the database.",
            ),
        ] = False,
        register_model: Annotated[
            bool,
            typer.Option("--register", help="Add the model to the database's registry."),
        ] = False,
        actor: Annotated[
            str | None, typer.Option("--actor", help="Who trained it (registry).")
        ] = None,
        fold_by: Annotated[
            str | None,
            typer.Option(
                "--fold-by",
                help="labels.csv column of style groups (e.g. font) kept whole in the"
                " calibration's held-out folds; default: writers.",
            ),
        ] = None,
        learned_net: Annotated[
            Path | None,
            typer.Option(
                "--learned-net",
                help="The learned family's trained network (.npz) to use instead of"
                " training one (training needs torch).",
            ),
        ] = None,
        learned_steps: Annotated[
            int | None,
            typer.Option(
                "--learned-steps",
                min=1,
                help="Training steps of the learned family's network (default 2000).",
            ),
        ] = None,
    ) -> None:
        """Fit the embedding model on labelled slips and save it."""
        params = dict(
            families=tuple(f.strip() for f in families.split(",") if f.strip()),
            n_components=n_components,
            whiten=whiten,
            shrinkage=shrinkage,
            nuisance_directions=nuisance_directions,
            vlad_clusters=vlad_clusters,
            vlad_vocabularies=vlad_vocabularies,
            vlad_components=vlad_components,
            descriptor_components=descriptor_components,
            descriptor_whiten=descriptor_whiten,
            descriptor_ink=descriptor_ink,
            projection_bits=projection_bits,
            stroke_width=stroke_width,
            hinge_legs=(round(stroke_width), round(2 * stroke_width)),
            random_state=seed,
        )
        if pool_scales is not None:
            params["pool_scales"] = tuple(float(f) for f in pool_scales.split(",") if f.strip())
        _run(
            train_command,
            directories or [],
            labels_paths=labels or [],
            unipen_fit=unipen_fit or [],
            out=out,
            split=split if split else None,
            jobs=jobs,
            params=params,
            from_reviews=from_reviews,
            register=register_model,
            actor=actor or _default_actor(),
            fold_by=fold_by or None,
            learned_net=learned_net,
            learned_steps=learned_steps,
        )
