import csv
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from cli.cluster_cmd import model_threshold, register


@pytest.fixture(scope="module")
def slips_and_model(tmp_path_factory) -> tuple[Path, Path]:
    """Nine generated slips (3 writers x 3) and a small model fitted on them."""
    from cv.embed import EmbeddingModel
    from cv.preprocess import load_image
    from sample_slips.generate import generate

    root = tmp_path_factory.mktemp("cluster_cli")
    gen = generate(root / "gen", writers=3, slips_per_writer=3, seed=5)
    with (gen / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    images = [load_image((gen / r["image"]).read_bytes()) for r in rows]
    model = EmbeddingModel(families=("hinge",), n_components=8)
    model.fit(images, [r["writer"] for r in rows])
    model_path = root / "tiny.npz"
    model.save(model_path)
    folder = root / "slips"
    folder.mkdir()
    for r in rows:
        shutil.copy(gen / r["image"], folder / r["image"])
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    return folder, model_path


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop", hidden=True)
    def noop() -> None:  # a second command keeps typer from collapsing to one
        pass

    return app


def test_cluster_writes_every_image_sorted_with_unreadable_as_minus_one(slips_and_model, tmp_path):
    folder, model_path = slips_and_model
    out = tmp_path / "clusters.csv"
    args = ["cluster", str(folder), "--out", str(out), "--model", str(model_path)]
    result = CliRunner().invoke(_app(), [*args, "--threshold", "0.5"])
    assert result.exit_code == 0, result.output
    with out.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    assert header == ["image", "cluster"]
    names = [r[0] for r in rows]
    expected = sorted(p.name for p in folder.iterdir() if p.suffix in (".jpg", ".png"))
    assert names == expected and "notes.txt" not in names and len(names) == 10
    clusters = {r[0]: int(r[1]) for r in rows}
    assert clusters["broken.png"] == -1
    assert all(c >= -1 for c in clusters.values())
    assert "broken.png" in result.stderr


def test_cluster_threshold_one_leaves_every_slip_alone(slips_and_model, tmp_path):
    folder, model_path = slips_and_model
    out = tmp_path / "c.csv"
    args = ["cluster", str(folder), "--out", str(out), "--model", str(model_path)]
    result = CliRunner().invoke(_app(), [*args, "--threshold", "1.0"])
    assert result.exit_code == 0, result.output
    with out.open(newline="") as fh:
        assert {r["cluster"] for r in csv.DictReader(fh)} == {"-1"}


def test_bad_arguments_exit_2_naming_the_problem(tmp_path):
    missing = tmp_path / "nowhere"
    result = CliRunner().invoke(_app(), ["cluster", str(missing), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "nowhere: not a directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = CliRunner().invoke(
        _app(),
        ["cluster", str(tmp_path), "--out", str(tmp_path / "o"), "--model", str(missing)],
    )
    assert result.exit_code == 2 and "model file not found" in result.stderr
    result = CliRunner().invoke(
        _app(), ["cluster", str(tmp_path), "--out", str(tmp_path / "o"), "--jobs", "0"]
    )
    assert result.exit_code == 2 and "--jobs" in result.stderr


def test_model_threshold_reads_the_calibrated_value():
    assert model_threshold(SimpleNamespace(threshold_=0.62)) == pytest.approx(0.62)
    assert model_threshold(SimpleNamespace(metadata={"threshold": 0.4})) == pytest.approx(0.4)
    # cv.embed stores 1.0 when calibration found no operating point: not a usable threshold
    assert model_threshold(SimpleNamespace(threshold_=1.0)) is None
    assert model_threshold(SimpleNamespace(threshold_=float("nan"))) is None
    assert model_threshold(object()) is None


def test_the_default_model_clusters_at_its_calibrated_augmented_operating_point(
    slips_and_model, tmp_path
):
    from cv.cluster import CLUSTER_AUGMENT
    from cv.embed import load_default_model

    folder, _ = slips_and_model
    batch = load_default_model().calibration_.batch
    assert batch is not None and batch.augment == CLUSTER_AUGMENT
    out = tmp_path / "clusters.csv"
    result = CliRunner().invoke(_app(), ["cluster", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    # the summary says which operating point and which scores the clustering used
    assert f"threshold {batch.merge_threshold:.3f} from model merge calibration" in result.stderr
    k_aug, weight = CLUSTER_AUGMENT
    assert f"pulled towards its {k_aug} nearest at weight {weight:g}" in result.stderr


def test_slips_without_handwriting_stay_on_their_own(slips_and_model, tmp_path):
    """Blank slips all embed alike: clustered, they would link every blank slip of every
    customer.  Like the service, the command leaves them on their own, even at a threshold
    that merges everything else."""
    import numpy as np
    from PIL import Image

    folder, model_path = slips_and_model
    blanks = tmp_path / "slips"
    shutil.copytree(folder, blanks)
    for name in ("blank_a.png", "blank_b.png"):
        Image.fromarray(np.full((600, 400), 235, np.uint8)).save(blanks / name)
    out = tmp_path / "clusters.csv"
    args = ["cluster", str(blanks), "--out", str(out), "--model", str(model_path)]
    result = CliRunner().invoke(_app(), [*args, "--threshold", "-1.0"])
    assert result.exit_code == 0, result.output
    with out.open(newline="") as fh:
        clusters = {r["image"]: int(r["cluster"]) for r in csv.DictReader(fh)}
    assert clusters["blank_a.png"] == -1 and clusters["blank_b.png"] == -1
    slips = [c for name, c in clusters.items() if name.startswith("slip_")]
    assert len(slips) == 9 and min(slips) >= 0  # everything with handwriting merged
    assert "2 slips without usable handwriting left on their own" in result.stderr
