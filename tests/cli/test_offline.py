"""Tests for the offline commands similar / eval / train on the committed sample set."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from cli.offline import register

REPO_ROOT = Path(__file__).resolve().parents[2]
SET_DIR = REPO_ROOT / "sample_slips" / "set"


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop", hidden=True)
    def _noop() -> None:  # a second command keeps typer in multi-command mode
        pass

    return app


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    """3 writers x 3 slips of the committed set, one broken image and a text file."""
    folder = tmp_path_factory.mktemp("slips")
    with (SET_DIR / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    writers = sorted({r["writer"] for r in rows})[:3]
    keep = [r for r in rows if r["writer"] in writers]
    keep = [r for i, r in enumerate(keep) if i % 5 < 3]
    for r in keep:
        shutil.copy(SET_DIR / r["image"], folder / r["image"])
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "notes.txt").write_text("not an image")
    with (folder / "labels.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image", "writer", "template"])
        w.writeheader()
        for r in keep:
            w.writerow({"image": r["image"], "writer": r["writer"], "template": r["template"]})
    return folder


def test_similar_writes_top_k_without_the_query(small_dir, tmp_path):
    out = tmp_path / "sim.csv"
    res = CliRunner().invoke(_app(), ["similar", str(small_dir), "--top", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "broken.png" in res.stderr
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["query", "neighbour", "rank", "score"]
    queries = {r["query"] for r in rows}
    assert len(queries) == 9 and "broken.png" not in queries
    assert all(r["query"] != r["neighbour"] for r in rows)
    for q in queries:
        mine = [r for r in rows if r["query"] == q]
        assert [int(r["rank"]) for r in mine] == [1, 2]
        assert float(mine[0]["score"]) >= float(mine[1]["score"])


def test_eval_prints_and_writes_all_figures(small_dir, tmp_path):
    out = tmp_path / "eval.json"
    res = CliRunner().invoke(
        _app(),
        ["eval", str(small_dir), "--labels", str(small_dir / "labels.csv"), "--json", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert "mAP" in res.stdout and "template" in res.stdout and "threshold" in res.stdout
    figures = json.loads(out.read_text())
    for key in (
        "map",
        "top1",
        "top5",
        "ari",
        "pairwise_precision",
        "pairwise_recall",
        "pairwise_f1",
        "bcubed_f1",
        "slips_per_second",
        "threshold_p98",
        "recall_at_p98",
        "template_rate",
        "template_chance",
        "live_precision",
        "live_recall",
    ):
        assert key in figures
    assert figures["n"] == 9 and 0.0 <= figures["map"] <= 1.0
    # the counts behind the pairwise figures (for pooling several runs)
    right, linked, true_pairs = (figures[f"pairs_{k}"] for k in ("right", "linked", "true"))
    assert figures["pairwise_precision"] == (right / linked if linked else 1.0)
    assert true_pairs > 0 and figures["pairwise_recall"] == right / true_pairs
    live = [figures[f"live_pairs_{k}"] for k in ("right", "linked", "true")]
    assert live[2] == 3 * true_pairs  # three arrival orders pooled
    assert "one slip at a time as they arrive" in res.stdout  # the shipped model's live points
    # every slip here keeps enough handwriting (slip_00001's faint hand was flagged
    # too_little_handwriting by the separator before session 19: 601 ink pixels kept)
    assert figures["no_handwriting"] == 0


def test_eval_leaves_slips_without_handwriting_out_of_the_clustering(small_dir, tmp_path):
    """Two blank slips labelled as one writer's: they embed alike, and clustered they would
    count as a right link.  The service never clusters them, so eval does not either."""
    import shutil

    import numpy as np
    from PIL import Image

    folder = tmp_path / "slips"
    shutil.copytree(small_dir, folder)
    for name in ("blank_a.png", "blank_b.png"):
        Image.fromarray(np.full((600, 400), 235, np.uint8)).save(folder / name)
    with (folder / "labels.csv").open("a", encoding="utf-8") as fh:
        header = (small_dir / "labels.csv").read_text().splitlines()[0].split(",")
        for name in ("blank_a.png", "blank_b.png"):
            row = {"image": name, "writer": "w_blank"}
            fh.write(",".join(row.get(col, "") for col in header) + "\n")
    out = tmp_path / "eval.json"
    res = CliRunner().invoke(
        _app(), ["eval", str(folder), "--labels", str(folder / "labels.csv"), "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    figures = json.loads(out.read_text())
    # the two blank slips
    assert figures["n"] == 11 and figures["no_handwriting"] == 2


def test_eval_splits_retrieval_by_the_kind_column(small_dir, tmp_path):
    # UNIPEN's labels carry kind=chars|words; here the slips' design stands in as the kind
    with (small_dir / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    labels = tmp_path / "kinds.csv"
    with labels.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image", "writer", "kind"])
        w.writeheader()
        for r in rows:
            w.writerow({"image": r["image"], "writer": r["writer"], "kind": r["template"]})
    out = tmp_path / "eval.json"
    res = CliRunner().invoke(
        _app(), ["eval", str(small_dir), "--labels", str(labels), "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    figures = json.loads(out.read_text())
    by_kind = figures["by_kind"]
    assert set(by_kind) == {r["template"] for r in rows}
    for kind in by_kind:
        assert f"kind {kind}" in res.stdout
    # each query keeps its own AP when scored with its kind: the kinds add up to the whole
    assert sum(k["queries"] for k in by_kind.values()) == figures["queries"]
    weighted = sum(k["map"] * k["queries"] for k in by_kind.values()) / figures["queries"]
    assert weighted == pytest.approx(figures["map"])
    ranked = sum(k["norm_map"] * k["queries"] for k in by_kind.values()) / figures["queries"]
    assert ranked == pytest.approx(figures["norm_map"])


def _train_args(small_dir: Path, out: Path, *extra: str) -> list[str]:
    """`sliplink train` on the small set with a tiny projection and vocabulary."""
    return [
        "train",
        str(small_dir),
        "--labels",
        str(small_dir / "labels.csv"),
        "--out",
        str(out),
        "--n-components",
        "4",
        "--vlad-clusters",
        "4",
        "--split",
        "",
        *extra,
    ]


LEARNED = ("--families", "hinge,lbp,vlad,style,learned")


def test_train_writes_a_loadable_model(small_dir, tmp_path):
    from cv.embed import EmbeddingModel

    out = tmp_path / "m.npz"
    args = _train_args(small_dir, out, "--descriptor-components", "32", "--projection-bits", "8")
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 0, res.output
    model = EmbeddingModel.load(out)
    assert model.dim == 4
    assert (model.descriptor_components, model.projection_bits) == (32, 8)
    assert model.codebook_.shape[1] == 32


@pytest.mark.parametrize(
    "args, message",
    [
        (["similar", "/nonexistent/dir", "--out", "x.csv"], "not a directory"),
        (["eval", "{d}", "--labels", "/nonexistent/labels.csv"], "labels file not found"),
        (["similar", "{d}", "--out", "x.csv", "--top", "0"], "--top"),
        (["similar", "{d}", "--out", "x.csv", "--model", "/nonexistent/m.npz"], "does not exist"),
    ],
)
def test_bad_arguments_give_one_line_and_nonzero_exit(small_dir, tmp_path, args, message):
    args = [a.replace("{d}", str(small_dir)) for a in args]
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code != 0
    assert message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_train_fold_by_names_a_labels_column(small_dir, tmp_path):
    args = ["train", str(small_dir), "--labels", str(small_dir / "labels.csv")]
    args += ["--out", str(tmp_path / "m.npz"), "--split", "", "--fold-by", "font"]
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code != 0
    assert "--fold-by 'font' is not one of its columns" in res.output
    assert not (tmp_path / "m.npz").exists()


def test_eval_measures_the_models_different_writers_bound_on_the_labelled_writers():
    """One writer's slips split in alternate halves: writer a's halves agree (cosine 0.5),
    writer b's do not (0.0), and a slip without handwriting (a zero vector) is left out."""
    from cli.offline import evaluate_embeddings

    e = np.eye(4, dtype=np.float32)
    x = np.stack([e[0], e[0], e[1], e[1], np.zeros(4, np.float32), e[2], e[3], e[2], e[3]])
    writers = np.array(["a"] * 5 + ["b"] * 4)
    figures = evaluate_embeddings(x, writers, threshold=0.9, distinct_writers=0.3)
    assert figures["distinct_writers_bound"] == 0.3 and figures["split_writers"] == 2
    assert figures["split_writers_below"] == 0.5  # b reads as two writers
    assert figures["split_pairs_above"] == 0.0  # a's and b's halves are never one writer
    assert "split_writers" not in evaluate_embeddings(x, writers, threshold=0.9)


def test_eval_replays_live_assignment_of_the_usable_slips():
    """Slips assigned one at a time as they arrive: two writers' slips, alike within and
    unlike between, link whole and apart; a slip without usable handwriting is left out
    (it embeds like writer a's, so replayed it would make a wrong link)."""
    from cli.offline import evaluate_embeddings
    from cv.cluster import Calibration

    e = np.eye(4, dtype=np.float32)
    x = np.stack([e[0], e[0], e[0], e[1], e[1], e[1], e[0]])
    writers = np.array(["a", "a", "a", "b", "b", "b", "c"])
    usable = np.array([True] * 6 + [False])
    live = Calibration.uncalibrated(0.9)
    figures = evaluate_embeddings(x, writers, threshold=0.9, usable=usable, live=live)
    assert figures["live_precision"] == 1.0 and figures["live_recall"] == 1.0
    assert figures["live_merge_threshold"] == 0.9
    everything = evaluate_embeddings(x, writers, threshold=0.9, live=live)
    assert everything["live_precision"] < 1.0  # c's slip joined writer a's
    strict = evaluate_embeddings(
        x, writers, threshold=0.9, usable=usable, live=Calibration.uncalibrated(1.5)
    )
    assert strict["live_recall"] == 0.0 and strict["live_precision"] == 1.0
    assert "live_precision" not in evaluate_embeddings(x, writers, threshold=0.9)


def test_train_with_a_given_learned_network_saves_it_in_the_model(small_dir, tmp_path):
    from cv.embed import EmbeddingModel
    from cv.features.learned import DEFAULT_LEARNED_PATH, load_learned_model

    out = tmp_path / "m.npz"
    args = _train_args(small_dir, out, *LEARNED, "--learned-net", str(DEFAULT_LEARNED_PATH))
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 0, res.output
    model = EmbeddingModel.load(out)
    assert model.families[-1] == "learned"
    net = load_learned_model(DEFAULT_LEARNED_PATH)
    np.testing.assert_array_equal(model.learned_net.fc_weight, net.fc_weight)
    assert not (tmp_path / "m.net.npz").exists()  # nothing was trained
    # a model file that carries a network gives it too
    again = tmp_path / "again.npz"
    res = CliRunner().invoke(
        _app(), _train_args(small_dir, again, *LEARNED, "--learned-net", str(out))
    )
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(EmbeddingModel.load(again).learned_net.fc_weight, net.fc_weight)


def test_train_learned_family_without_torch_or_a_network_says_what_to_do(
    small_dir, tmp_path, monkeypatch
):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    out = tmp_path / "m.npz"
    res = CliRunner().invoke(_app(), _train_args(small_dir, out, *LEARNED))
    assert res.exit_code != 0
    assert "needs torch" in res.stderr and "--learned-net" in res.stderr
    assert not out.exists()
    res = CliRunner().invoke(
        _app(), _train_args(small_dir, out, *LEARNED, "--learned-net", str(tmp_path / "none.npz"))
    )
    assert res.exit_code != 0 and "does not exist" in res.stderr
    not_a_model = str(small_dir / "labels.csv")
    res = CliRunner().invoke(
        _app(), _train_args(small_dir, out, *LEARNED, "--learned-net", not_a_model)
    )
    assert res.exit_code != 0 and "not a sliplink model" in res.stderr
    # an embedding model without the family has no network to give
    plain = tmp_path / "plain.npz"
    args = _train_args(small_dir, plain, "--families", "hinge,lbp")
    assert CliRunner().invoke(_app(), args).exit_code == 0
    res = CliRunner().invoke(
        _app(), _train_args(small_dir, out, *LEARNED, "--learned-net", str(plain))
    )
    assert res.exit_code != 0 and "has no learned family network" in res.stderr
    assert not out.exists()


def test_train_learned_family_trains_its_network_first(small_dir, tmp_path):
    pytest.importorskip("torch")
    from cv.embed import EmbeddingModel
    from cv.features.learned import load_learned_model

    out = tmp_path / "m.npz"
    res = CliRunner().invoke(_app(), _train_args(small_dir, out, *LEARNED, "--learned-steps", "3"))
    assert res.exit_code == 0, res.output
    net = load_learned_model(tmp_path / "m.net.npz")
    assert net.header["training"]["steps"] == 3 and net.stroke_width == 3.0
    model = EmbeddingModel.load(out)
    np.testing.assert_array_equal(model.learned_net.fc_weight, net.fc_weight)
