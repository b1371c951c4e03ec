"""``sliplink cluster DIR --out FILE``: embed every image in a folder and cluster by writer.

Contract (CONTRACTS.md): FILE is CSV with header ``image,cluster``; ``image`` is the file name
relative to DIR, sorted by name; ``cluster`` an integer, ``-1`` for a slip on its own or an
unreadable image (reported on stderr).  Exit 0; a bad argument exits 2 with one line on stderr.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from cli.options import JobsOption, ModelFileOption, TemplatesOption

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

__all__ = ["cluster_command", "model_threshold", "register"]


class CliError(Exception):
    """A bad argument or input: one line on stderr, exit code 2."""


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise CliError(f"{folder}: not a directory")
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.name,
    )


def model_threshold(model: object) -> float | None:
    """The model's calibrated cosine threshold (``threshold_`` or metadata ``threshold``).

    None when the model carries none, or only the placeholder 1.0 / a non-finite value that
    cv.embed stores when calibration found no operating point.
    """
    value = getattr(model, "threshold_", None)
    if value is None:
        meta = getattr(model, "metadata", None) or getattr(model, "metadata_", None)
        if isinstance(meta, dict):
            value = meta.get("threshold")
    try:
        t = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return t if math.isfinite(t) and -1.0 <= t < 1.0 else None


def _load_templates(folder: Path | None):
    if folder is None:
        return None
    from cv.preprocess import load_image

    images = []
    for p in _images(folder):
        try:
            images.append(load_image(p.read_bytes()))
        except (OSError, ValueError) as exc:
            print(f"{p}: skipped template ({exc})", file=sys.stderr)
    if not images:
        raise CliError(f"{folder}: no readable template images")
    return images


def _write_csv(out: Path, rows: list[tuple[str, int]]) -> None:
    """Write atomically so a failed run never leaves half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["image", "cluster"])
            writer.writerows(rows)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cluster_command(
    directory: Path,
    *,
    out: Path,
    model_path: Path | None = None,
    jobs: int = 1,
    threshold: float | None = None,
    templates_dir: Path | None = None,
    k: int = 10,
) -> dict[str, object]:
    """Embed and cluster the images of ``directory``; write ``out``; return a summary dict."""
    from cv.cluster import DEFAULT_THRESHOLD, Calibration, calibration_of, cluster_calibrated

    if jobs < 1:
        raise CliError(f"--jobs must be >= 1, got {jobs}")
    if k < 1:
        raise CliError(f"--k must be >= 1, got {k}")
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise CliError(f"--threshold must be a cosine similarity in [-1, 1], got {threshold}")
    if model_path is not None and not model_path.is_file():
        raise CliError(f"{model_path}: model file not found")
    paths = _images(directory)
    templates = _load_templates(templates_dir)

    from cli.offline import _embed
    from cv.embed import EmbeddingModel, load_default_model

    try:
        model = EmbeddingModel.load(model_path) if model_path else load_default_model()
    except (OSError, ValueError) as exc:
        raise CliError(f"{model_path or 'default model'}: {exc}") from None
    calibration = calibration_of(model)
    if threshold is None and calibration.calibrated:
        # the merge threshold measured on the model's fit data, not its slip-to-slip one
        calibration = calibration.batch or calibration
        threshold, source = calibration.merge_threshold, "model merge calibration"
        if calibration.offset_ranks is not None:
            source += " (scores normalised by per-slip offsets)"
        if calibration.augment is not None:
            k_aug, weight = calibration.augment
            source += f", each slip pulled towards its {k_aug} nearest at weight {weight:g}"
    elif threshold is None:
        threshold = model_threshold(model)
        source = "model pair threshold (no merge calibration)"
        if threshold is None:
            threshold, source = DEFAULT_THRESHOLD, "default"
        calibration = Calibration.uncalibrated(threshold)
    else:
        source = "--threshold"
        calibration = Calibration.uncalibrated(threshold)  # raw cosine

    labels = np.full(len(paths), -1, dtype=np.int64)
    no_handwriting = 0
    if paths:
        x, readable, _, _, usable = _embed(
            paths, model=model, jobs=jobs, templates=templates, designs=False
        )
        # slips without usable handwriting all embed alike: left on their own, as the
        # service leaves them
        ok = readable & usable
        no_handwriting = int((readable & ~ok).sum())
        if no_handwriting:
            print(
                f"{no_handwriting} slips without usable handwriting left on their own",
                file=sys.stderr,
            )
        if ok.sum() >= 2:
            labels[ok] = cluster_calibrated(x[ok], calibration, k=k)[0]
    _write_csv(out, [(p.name, int(c)) for p, c in zip(paths, labels.tolist(), strict=True)])
    n_clusters = int(labels.max()) + 1 if labels.size else 0
    summary = {
        "images": len(paths),
        "clusters": n_clusters,
        "unclustered": int((labels < 0).sum()),
        "no_handwriting": no_handwriting,
        "threshold": float(threshold),
        "threshold_source": source,
    }
    print(
        f"wrote {out}: {summary['images']} images, {n_clusters} clusters, "
        f"{summary['unclustered']} on their own (threshold {threshold:.3f} from {source})",
        file=sys.stderr,
    )
    return summary


def register(app: typer.Typer) -> None:
    """Add the ``cluster`` command to ``app``."""

    @app.command("cluster")
    def cluster(
        directory: Annotated[Path, typer.Argument(help="Folder of slip images (not recursive).")],
        out: Annotated[Path, typer.Option("--out", help="CSV to write: image,cluster.")],
        model: ModelFileOption = None,
        jobs: JobsOption = 1,
        threshold: Annotated[
            float | None,
            typer.Option(
                "--threshold",
                help="Cosine threshold for average-linkage merges (default: the merge "
                "threshold calibrated on the model's fit data, else its pair threshold, "
                "else cv.cluster.DEFAULT_THRESHOLD).",
            ),
        ] = None,
        templates: TemplatesOption = None,
        k: Annotated[int, typer.Option("--k", help="Neighbours per slip in the kNN graph.")] = 10,
    ) -> None:
        """Cluster the slips of a folder by writer (-1 = on its own)."""
        try:
            cluster_command(
                directory,
                out=out,
                model_path=model,
                jobs=jobs,
                threshold=threshold,
                templates_dir=templates,
                k=k,
            )
        except CliError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(code=2) from None
