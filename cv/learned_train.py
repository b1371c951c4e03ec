"""Training of the learned writer family (:mod:`cv.features.learned`), on CPU with PyTorch.

PyTorch is imported lazily inside the functions that need it: inference
(:func:`cv.features.learned.learned_descriptor`) runs on numpy alone from the exported
``.npz``, so torch is only needed by whoever trains.

What is learned (see :mod:`cv.features.learned` for the network): a small fully
convolutional network over the normalised handwriting ink of :func:`cv.preprocess.preprocess`,
masked mean pooling over the positions that see ink, and a linear embedding, trained as a
writer classifier with an additive-margin softmax (CosFace: Wang et al., CVPR 2018; used for
writer retrieval by e.g. Rasoulzadeh & BabaAli 2022) on random crops of the training slips.
Each crop is a line-sized window (``crop`` px at stroke width 3, about 4 x-heights by
8), so the network learns from as little text as a slip carries. Augmentations are the
nuisances preprocessing leaves, not the writer's traits: a few percent of scale (the stroke
width estimate), a degree or two of rotation (the deskew), erosion/dilation of the strokes
(pen and binarisation), small elastic warps. Slant and size are the writer's and are kept.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cv.npzfile import HEADER_KEY, header_array

__all__ = ["prepared_inks", "train_family_net", "train_learned"]


# ---------------------------------------------------------------------- data


def _prep_one(args: tuple[str, float, float | None]) -> NDArray[np.uint8]:
    from cv.preprocess import load_image, preprocess, rescaled_ink

    path, stroke_width, via = args
    image = load_image(Path(path).read_bytes())
    if via is None:
        return preprocess(image, target_stroke_width=stroke_width).ink
    return rescaled_ink(preprocess(image, target_stroke_width=via), stroke_width / via)


def prepared_inks(
    paths: Sequence[Path],
    *,
    stroke_width: float = 3.0,
    via_stroke_width: float | None = None,
    jobs: int = 1,
) -> list[NDArray[np.uint8]]:
    """The handwriting ink of each image exactly as the network will see it (preprocessed).

    Training on the real preprocessing output, print leftovers and broken strokes included,
    keeps training and inference inputs alike.  ``via_stroke_width``: preprocess at that
    stroke width and resize the ink to ``stroke_width``, as :func:`cv.embed.extract_raw`
    feeds the ``learned`` family (None: preprocess at ``stroke_width`` directly, as the
    stand-alone descriptor :func:`cv.features.learned.learned_descriptor_image` does).
    """
    work = [(str(p), float(stroke_width), via_stroke_width) for p in paths]
    if jobs <= 1:
        return [_prep_one(w) for w in work]
    import multiprocessing as mp

    with mp.get_context("fork").Pool(jobs) as pool:
        return pool.map(_prep_one, work, chunksize=8)


def save_inks(path: Path, inks: Sequence[NDArray[np.uint8]]) -> None:
    """Store variable-size ink images in one ``.npz`` (flattened bits + shapes)."""
    shapes = np.array([i.shape for i in inks], np.int64)
    bits = np.packbits(np.concatenate([(i > 0).ravel() for i in inks]))
    np.savez(path, shapes=shapes, bits=bits)


def load_inks(path: Path) -> list[NDArray[np.uint8]]:
    with np.load(path) as d:
        shapes, bits = d["shapes"], d["bits"]
    sizes = shapes[:, 0] * shapes[:, 1]
    flat = np.unpackbits(bits, count=int(sizes.sum())).astype(np.uint8) * 255
    out, start = [], 0
    for (r, c), n in zip(shapes, sizes, strict=True):
        out.append(flat[start : start + n].reshape(int(r), int(c)))
        start += int(n)
    return out


# ---------------------------------------------------------------------- augmentation


def random_crop(
    ink: NDArray[np.uint8],
    rng: np.random.Generator,
    *,
    size: tuple[int, int] = (64, 128),
    scale: float = 0.08,
    rotate: float = 2.0,
    morph: float = 0.3,
    min_ink: int = 60,
    tries: int = 4,
) -> NDArray[np.float32]:
    """A ``size`` window of ``ink`` centred near a random ink pixel, lightly augmented.

    ``scale`` (relative) and ``rotate`` (degrees) jitter stand for the errors of stroke width
    estimation and deskewing; ``morph`` is the chance of thinning or thickening the strokes
    by one pixel. Returns float32 0/1.
    """
    import cv2

    ys, xs = np.nonzero(ink)
    rows, cols = size
    if len(ys) == 0:
        return np.zeros(size, np.float32)
    src = (ink > 0).astype(np.uint8) * 255
    for _ in range(tries):
        i = int(rng.integers(len(ys)))
        cy = ys[i] + rng.normal(0, rows / 8)
        cx = xs[i] + rng.normal(0, cols / 8)
        s = float(np.exp(rng.uniform(-scale, scale)))
        m = cv2.getRotationMatrix2D((float(cx), float(cy)), float(rng.uniform(-rotate, rotate)), s)
        m[0, 2] += cols / 2 - cx
        m[1, 2] += rows / 2 - cy
        out = cv2.warpAffine(src, m, (cols, rows), flags=cv2.INTER_LINEAR, borderValue=0)
        out = out >= 128
        u = rng.random()
        if u < morph / 2:
            out = cv2.erode(out.astype(np.uint8), np.ones((2, 2), np.uint8)) > 0
        elif u < morph:
            out = cv2.dilate(out.astype(np.uint8), np.ones((2, 2), np.uint8)) > 0
        if out.sum() >= min_ink:
            break
    return out.astype(np.float32)


# ---------------------------------------------------------------------- network

# (kernel, stride, channels): 1/4 resolution at the end, receptive field 25 px (a letter or
# two at stroke width 3, x-height ~15 px)
DEFAULT_LAYERS: tuple[tuple[int, int, int], ...] = ((5, 2, 16), (3, 2, 32), (3, 1, 32), (3, 1, 48))
# The network and schedule of the embedding's ``learned`` family (cv.embed), session 16: wider
# late layers and a 128-d vector on larger crops; fused inside the projection it matched a
# 5-layer net's gain (validation fold 0, ranked generated mAP 0.780 for both against 0.756
# without) at half its cost.  The generated validation mAP of the net alone peaked near
# 2,000 steps and fell after (it learns the training fonts).
FAMILY_TRAINING: dict = {
    "layers": ((5, 2, 16), (3, 2, 48), (3, 1, 64), (3, 1, 96)),
    "dim": 128,
    "crop": (64, 160),
    "batch": 64,
    "steps": 2000,
    "lr": 3e-3,
    "stroke_width": 3.0,  # of the ink the network reads (the embedding's, resized)
}
# share of training crops drawn from real handwriting crops when slips are also given
FAMILY_CROP_SHARE = 0.3


def _build(layers: Sequence[tuple[int, int, int]], dim: int):
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            mods: list[nn.Module] = []
            c_in = 1
            for k, s, c in layers:
                mods += [nn.Conv2d(c_in, c, k, s, k // 2, bias=False), nn.BatchNorm2d(c)]
                mods.append(nn.ReLU(inplace=True))
                c_in = c
            self.body = nn.Sequential(*mods)
            self.cell = int(np.prod([s for _, s, _ in layers]))
            self.fc = nn.Linear(c_in, dim)

        def forward(self, x):  # x: (B, 1, H, W) 0/1, H and W multiples of cell
            f = self.body(x)
            m = torch.nn.functional.max_pool2d(x, self.cell, self.cell)
            pooled = (f * m).sum(dim=(2, 3)) / m.sum(dim=(2, 3)).clamp_min(1.0)
            return self.fc(pooled)

    return Net()


def export_npz(net, path: Path, *, layers, stroke_width: float, meta: dict) -> None:
    """Fold batch norm into the convolutions and write the numpy model (float32)."""
    import torch

    from cv.features.learned import FORMAT_VERSION, MODEL_NAME

    net = net.eval()
    arrays: dict[str, NDArray] = {}
    convs = [m for m in net.body if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in net.body if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for i, (conv, bn) in enumerate(zip(convs, bns, strict=True)):
            g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            w = conv.weight * g[:, None, None, None]  # (c_out, c_in, k, k)
            b = bn.bias - bn.running_mean * g
            arrays[f"conv{i}_weight"] = (
                w.permute(2, 3, 1, 0).reshape(-1, w.shape[0]).numpy().astype(np.float32)
            )
            arrays[f"conv{i}_bias"] = b.numpy().astype(np.float32)
        arrays["fc_weight"] = net.fc.weight.T.numpy().astype(np.float32).copy()
        arrays["fc_bias"] = net.fc.bias.numpy().astype(np.float32)
    header = {
        "name": MODEL_NAME,
        "format_version": FORMAT_VERSION,
        "layers": [{"kernel": k, "stride": s, "pad": k // 2, "channels": c} for k, s, c in layers],
        "stroke_width": stroke_width,
        **meta,
    }
    _write_model(path, arrays, header)


def _write_model(path: Path, arrays: dict[str, NDArray], header: dict) -> None:
    """Write weights + JSON header (SHA-256 and version from the weights) atomically."""
    from cv.features.learned import weights_digest

    digest = weights_digest(arrays)
    n_layers = sum(1 for k in arrays if k.endswith("_weight") and k.startswith("conv"))
    header = {**header, "sha256": digest, "version": f"cnn{n_layers}-{digest[:8]}"}
    arrays = dict(arrays)
    arrays[HEADER_KEY] = header_array(header)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)


# ---------------------------------------------------------------------- training


def _embed_numpy(model, inks: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
    from cv.features.learned import learned_descriptor

    return np.stack([learned_descriptor(i, model) for i in inks])


def _val_map(model, inks, writers) -> float:
    from cv.metrics import retrieval_scores

    z = _embed_numpy(model, inks)
    return retrieval_scores(z @ z.T, np.asarray(writers))["map"]


def train_learned(
    inks: Sequence[NDArray[np.uint8]],
    writers: Sequence[str],
    out: Path,
    *,
    sources: Sequence[str] | None = None,
    source_weights: dict[str, float] | None = None,
    val: dict[str, tuple[Sequence[NDArray[np.uint8]], Sequence[str]]] | None = None,
    layers: Sequence[tuple[int, int, int]] = DEFAULT_LAYERS,
    dim: int = 96,
    crop: tuple[int, int] = (48, 112),
    steps: int = 1100,
    batch: int = 48,
    lr: float = 3e-3,
    margin: float = 0.25,
    scale: float = 30.0,
    stroke_width: float = 3.0,
    threads: int = 2,
    seed: int = 0,
    log=None,
) -> dict:
    """Train the learned family on prepared inks of training writers; write ``out`` (.npz).

    Parameters
    ----------
    inks : sequence of (rows, cols) uint8
        Prepared handwriting (:func:`prepared_inks`) of the training images.
    writers : sequence of str
        Writer of each image (the classes of the margin softmax).
    sources : sequence of str, optional
        A source tag per image (e.g. ``gen`` / ``unipen``); with ``source_weights`` it sets
        how often each source is sampled, whatever its size.
    val : dict name -> (inks, writers), optional
        Validation sets of writers NOT in ``writers`` (never the held-out test writers):
        their leave-one-out mAP with the numpy forward is logged during training.
    steps, batch, lr : training schedule (AdamW, cosine decay)
    margin, scale : CosFace additive cosine margin and logit scale.

    Returns
    -------
    dict of training statistics (loss, validation mAP per check, seconds).
    """
    import torch

    from cv.features.learned import load_learned_model

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    writers_arr = np.asarray([str(w) for w in writers])
    classes, labels = np.unique(writers_arr, return_inverse=True)
    usable = np.array([np.count_nonzero(i) > 0 for i in inks])
    prob = usable.astype(np.float64)
    if sources is not None and source_weights:
        src = np.asarray(sources)
        for name, w in source_weights.items():
            sel = (src == name) & usable
            if sel.any():
                prob[sel] = w / sel.sum()
    prob /= prob.sum()

    net = _build(layers, dim)
    head = torch.nn.Parameter(torch.randn(len(classes), dim) * 0.01)
    opt = torch.optim.AdamW(list(net.parameters()) + [head], lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    stats: dict = {"loss": [], "val": []}
    t0 = time.perf_counter()
    run_loss = 0.0
    for step in range(1, steps + 1):
        net.train()
        idx = rng.choice(len(inks), size=batch, p=prob)
        x = np.stack([random_crop(inks[i], rng, size=crop) for i in idx])[:, None]
        y = torch.from_numpy(labels[idx])
        emb = torch.nn.functional.normalize(net(torch.from_numpy(x)), dim=1)
        cos = emb @ torch.nn.functional.normalize(head, dim=1).T
        logits = scale * (cos - margin * torch.nn.functional.one_hot(y, len(classes)))
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        run_loss += float(loss.detach())
        if step % 100 == 0 or step == steps:
            stats["loss"].append(run_loss / 100)
            msg = f"step {step}/{steps} loss {run_loss / 100:.3f} {time.perf_counter() - t0:.0f}s"
            run_loss = 0.0
            if val and (step % 500 == 0 or step == steps):
                export_npz(net, out, layers=layers, stroke_width=stroke_width, meta={})
                model = load_learned_model(out)
                scores = {k: _val_map(model, v[0], v[1]) for k, v in val.items()}
                stats["val"].append({"step": step, **scores})
                msg += " " + " ".join(f"val {k} mAP {v:.3f}" for k, v in scores.items())
            log(msg)
    stats["seconds"] = time.perf_counter() - t0
    meta = {
        "training": {
            "images": int(len(inks)),
            "writers": int(len(classes)),
            "steps": steps,
            "batch": batch,
            "crop": list(crop),
            "lr": lr,
            "margin": margin,
            "scale": scale,
            "dim": dim,
            "seed": seed,
            "seconds": round(stats["seconds"], 1),
        }
    }
    export_npz(net, out, layers=layers, stroke_width=stroke_width, meta=meta)
    stats["net"] = net
    return stats


def _whitening(
    u: NDArray[np.float64], writers: NDArray, *, whiten: float, shrinkage: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Centre (d,) and map (d, d) that centre, partially PCA-whiten and WCCN-normalise ``u``.

    The same recipe as :class:`cv.embed.EmbeddingModel` (PCA whitening ** ``whiten``, then the
    within-writer covariance shrunk by ``shrinkage`` towards a scaled identity), fitted on
    whole-slip embeddings: the network was trained on crops, and a slip's mean pooling over
    all its ink has other statistics than a crop's.
    """
    mean = u.mean(axis=0)
    xc = u - mean
    var, comp = np.linalg.eigh(xc.T @ xc / max(len(xc) - 1, 1))
    var = np.maximum(var, 1e-9 * var.max())
    proj = comp / var ** (whiten / 2.0)
    z = xc @ proj
    classes, inverse, counts = np.unique(writers, return_inverse=True, return_counts=True)
    means = np.zeros((len(classes), z.shape[1]))
    np.add.at(means, inverse, z)
    means /= counts[:, None]
    resid = (z - means[inverse])[counts[inverse] > 1]
    if len(resid) > 1 and shrinkage < 1.0:
        k = z.shape[1]
        sw = resid.T @ resid / len(resid)
        sw = (1.0 - shrinkage) * sw + shrinkage * np.trace(sw) / k * np.eye(k)
        ev, vec = np.linalg.eigh(sw)
        proj = proj @ (vec / np.sqrt(np.maximum(ev, 1e-12 * ev.max())) @ vec.T)
    return mean, proj


def calibrate(
    model_path: Path,
    inks: Sequence[NDArray[np.uint8]],
    writers: Sequence[str],
    out: Path,
    *,
    whiten: float = 0.5,
    shrinkage: float = 0.3,
) -> None:
    """Fold a slip-level centring + whitening + WCCN, fitted on training slips, into the
    embedding layer of an exported model (inference code unchanged: the map is linear)."""
    from cv.features.learned import learned_feature_map, load_learned_model

    model = load_learned_model(model_path)
    pooled = []
    for ink in inks:
        feats, _ = learned_feature_map(ink, model)
        if len(feats):
            pooled.append(feats.mean(axis=0, dtype=np.float64))
        else:
            pooled.append(None)
    keep = [i for i, p in enumerate(pooled) if p is not None]
    m = np.stack([pooled[i] for i in keep])
    u = m @ model.fc_weight.astype(np.float64) + model.fc_bias
    w = np.asarray([str(writers[i]) for i in keep])
    mean, proj = _whitening(u, w, whiten=whiten, shrinkage=shrinkage)
    with np.load(model_path) as d:
        arrays = {k: d[k] for k in d.files if k != HEADER_KEY}
    arrays["fc_weight"] = (model.fc_weight.astype(np.float64) @ proj).astype(np.float32)
    arrays["fc_bias"] = ((model.fc_bias - mean) @ proj).astype(np.float32)
    header = dict(model.header)
    header["calibration"] = {
        "images": len(keep),
        "writers": int(len(set(w.tolist()))),
        "whiten": whiten,
        "shrinkage": shrinkage,
    }
    _write_model(out, arrays, header)


def _read_rows(labels: Path) -> list[dict[str, str]]:
    import csv

    with labels.open(newline="") as fh:
        return list(csv.DictReader(fh))


def train_family_net(
    paths: Sequence[Path],
    writers: Sequence[str],
    out: Path,
    *,
    crops: Sequence[bool] | None = None,
    embed_stroke_width: float = 5.0,
    jobs: int = 1,
    steps: int | None = None,
    seed: int = 0,
    log=None,
):
    """Train the network of the embedding's ``learned`` family on labelled images; write it
    to ``out`` (the stand-alone ``.npz`` of :func:`export_npz`) and return it loaded.

    The inks are made as :func:`cv.embed.extract_raw` makes the family's: preprocessed at the
    embedding's ``embed_stroke_width`` and resized to the recipe's stroke width (3).
    ``crops`` marks plain handwriting crops (no form); when both kinds are present,
    ``FAMILY_CROP_SHARE`` of the training crops come from them, whatever their count.
    Needs torch.
    """
    from cv.features.learned import load_learned_model

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    recipe = {**FAMILY_TRAINING, **({"steps": steps} if steps else {})}
    inks = prepared_inks(
        paths, stroke_width=recipe["stroke_width"], via_stroke_width=embed_stroke_width, jobs=jobs
    )
    log(f"learned family: prepared {len(inks)} inks in {time.perf_counter() - t0:.0f} s")
    sources = weights = None
    if crops is not None and 0 < sum(map(bool, crops)) < len(crops):
        sources = ["crop" if c else "slip" for c in crops]
        weights = {"crop": FAMILY_CROP_SHARE, "slip": 1.0 - FAMILY_CROP_SHARE}
    train_learned(
        inks,
        writers,
        out,
        sources=sources,
        source_weights=weights,
        seed=seed,
        log=log,
        **recipe,
    )
    return load_learned_model(out)


def train_from_sets(
    generated: Path | None,
    out: Path,
    *,
    unipen: Path | None = None,
    jobs: int = 1,
    cache: Path | None = None,
    unipen_weight: float = 0.4,
    calibrated: bool = True,
    log=None,
    **train_kwargs,
) -> dict:
    """Train the stand-alone learned descriptor (``cv/models/learned.npz``, read by
    ``bench/learned.py``) from a generated fit set and/or UNIPEN fit writers, on inks
    preprocessed at stroke width 3.  The embedding's ``learned`` family is trained by
    :func:`train_family_net` (what ``sliplink train`` calls).

    Parameters
    ----------
    generated : Path, optional
        A folder written by ``sliplink samples generate --split fit`` (its ``labels.csv``);
        rows whose ``split`` is not ``fit`` are dropped.
    out : Path
        Where the numpy model (``.npz``) is written.
    unipen : Path, optional
        ``../shared/data/unipen-dev``: only the writers :func:`sample_slips.splits.unipen_split`
        puts in the fit half are used.
    jobs : int
        Processes for preprocessing.
    cache : Path, optional
        Folder where prepared inks are kept between runs (``learned_ink_<set>.npz``).
    unipen_weight : float
        Share of training crops drawn from UNIPEN images (the rest from generated slips).
    calibrated : bool
        Fold a slip-level whitening fitted on the training images into the exported model
        (:func:`calibrate`; +0.04 validation mAP on generated slips, same on UNIPEN).
    train_kwargs
        Passed to :func:`train_learned` (steps, batch, lr, margin, ...).
    """
    from sample_slips.splits import unipen_split

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    inks: list[NDArray[np.uint8]] = []
    writers: list[str] = []
    sources: list[str] = []

    def load(name: str, paths: list[Path]) -> list[NDArray[np.uint8]]:
        file = cache / f"learned_ink_{name}.npz" if cache else None
        if file is not None and file.is_file():
            got = load_inks(file)
            if len(got) == len(paths):
                return got
        t0 = time.perf_counter()
        got = prepared_inks(paths, jobs=jobs)
        log(f"preprocessed {len(paths)} {name} images in {time.perf_counter() - t0:.0f} s")
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            save_inks(file, got)
        return got

    if generated is not None:
        rows = [r for r in _read_rows(generated / "labels.csv") if r.get("split", "fit") == "fit"]
        inks += load("gen_fit", [generated / r["image"] for r in rows])
        writers += [f"gen:{r['writer']}" for r in rows]
        sources += ["gen"] * len(rows)
    if unipen is not None:
        rows = _read_rows(unipen / "labels.csv")
        fit, _ = unipen_split({r["writer"] for r in rows})
        rows = [r for r in rows if r["writer"] in fit]
        inks += load("unipen_fit", [unipen / "images" / r["image"] for r in rows])
        writers += [f"unipen:{r['writer']}" for r in rows]
        sources += ["unipen"] * len(rows)
    if len(set(writers)) < 2:
        raise ValueError("training needs images of at least 2 writers")
    weights = {"gen": 1.0 - unipen_weight, "unipen": unipen_weight}
    stats = train_learned(
        inks, writers, out, sources=sources, source_weights=weights, log=log, **train_kwargs
    )
    stats.pop("net", None)
    if calibrated:
        calibrate(out, inks, writers, out)
    return stats


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m cv.learned_train GEN_FIT_DIR OUT.npz [--unipen DIR] [--steps N]``."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("generated", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--unipen", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=1100)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    stats = train_from_sets(
        args.generated,
        args.out,
        unipen=args.unipen,
        jobs=args.jobs,
        cache=args.cache,
        steps=args.steps,
        batch=args.batch,
        seed=args.seed,
    )
    print(json.dumps({"seconds": round(stats["seconds"], 1), "loss": stats["loss"][-1]}))


if __name__ == "__main__":
    main()
