"""``sliplink models ...`` and ``sliplink eval --from-reviews / --report`` on a real database
(the configured one: SLIPLINK_DATABASE_URL), with the shipped model and a small trained one."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import REPO_ROOT

SET_DIR = REPO_ROOT / "sample_slips" / "set"


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    """4 writers x 3 slips of the committed set."""
    folder = tmp_path_factory.mktemp("slips")
    with (SET_DIR / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    writers = sorted({r["writer"] for r in rows})[:4]
    keep = [r for r in rows if r["writer"] in writers]
    keep = [r for i, r in enumerate(keep) if i % 5 < 3]
    for r in keep:
        shutil.copy(SET_DIR / r["image"], folder / r["image"])
    with (folder / "labels.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image", "writer"])
        w.writeheader()
        for r in keep:
            w.writerow({"image": r["image"], "writer": r["writer"]})
    return folder


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    from tests.workers.test_rollout import train_small_model

    path = tmp_path_factory.mktemp("models") / "small.npz"
    train_small_model(path, writers=5)
    return path


@pytest.fixture
def cli_env(db_url, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    from store.settings import get_settings

    monkeypatch.setenv("SLIPLINK_DATABASE_URL", db_url)
    monkeypatch.setenv("SLIPLINK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SLIPLINK_BROKER_URL", raising=False)
    monkeypatch.delenv("SLIPLINK_MODEL_PATH", raising=False)
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()


def run(*args: str, code: int = 0):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def test_register_evaluate_calibrate_activate_and_roll_back(
    cli_env, engine, small_set, small_model, tmp_path
):  # type: ignore[no-untyped-def]
    from cv.embed import EmbeddingModel, load_default_model
    from store import models_registry as registry

    shipped = load_default_model().version
    small = EmbeddingModel.load(small_model).version
    listed = run("models", "list").stdout
    assert shipped in listed and "*" not in listed  # registered, nothing active yet
    run("models", "activate", shipped)
    assert f"* {shipped}" in run("models", "list").stdout

    out = run("models", "register", str(small_model))
    assert out.stdout.strip() == small and "registered" in out.stderr
    again = run("models", "register", str(small_model))
    assert "already registered" in again.stderr
    shown = json.loads(run("models", "show", small.split("+")[1]).stdout)
    assert shown["version"] == small and shown["params"]["n_components"] == 24
    assert shown["active"] is False and shown["trained_by"].startswith("cli")

    report = tmp_path / "report"
    res = run(
        "models", "evaluate", small, str(small_set), "--labels", str(small_set / "labels.csv"),
        "--calibrate", "--target-precision", "0.9", "--report", str(report),
    )  # fmt: skip
    assert "calibrated" in res.stderr and "expected recall" in res.stderr
    for name in ("index.html", "pr_curve.png", "score_hist.png", "cluster_sizes.png"):
        assert (report / name).stat().st_size > 1000, name
    with Session(engine) as s:
        row = registry.get_version(session=s, version=small)
        assert row.target_precision == 0.9 and row.threshold is not None
        assert 0.0 < row.expected_recall <= 1.0
        assert row.metrics[small_set.name]["n"] == 12
        stored = registry.report_file(session=s, version=small, name="pr_curve.png")
        assert stored == (report / "pr_curve.png").read_bytes()

    res = run("models", "activate", small)
    assert f"active: {small}" in res.stderr
    assert f"* {small}" in run("models", "list").stdout
    status = json.loads(run("models", "status").stdout)
    assert status["active"] == small and status["rollout"]["state"] == "complete"
    run("models", "rollback")
    assert f"* {shipped}" in run("models", "list").stdout
    assert json.loads(run("models", "show", "active").stdout)["version"] == shipped


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_bad_arguments_are_one_line_errors(cli_env, small_set):  # type: ignore[no-untyped-def]
    res = run("models", "show", "nope", code=2)
    assert res.stderr.strip() == "error: model version nope not found"
    res = run("models", "activate", "nope", code=2)
    assert res.stderr.strip().startswith("error: ")
    res = run("models", "rollback", code=2)
    assert "no earlier version" in res.stderr
    res = run("models", "evaluate", "active", code=2)
    assert "error:" in res.stderr
    res = run("models", "register", str(small_set / "labels.csv"), code=2)
    assert "labels.csv" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = run("models", "drift", "--days", "0", code=2)
    assert "--days" in res.stderr
    res = run("eval", "--from-reviews", code=2)
    assert "no reviewed links" in res.stderr
    res = run("eval", str(small_set), code=2)
    assert "--from-reviews" in res.stderr


def _reviewed_slips(engine, images: list[Path]) -> list[int]:  # type: ignore[no-untyped-def]
    """Slips stored from these images (bets of one customer each)."""
    from store.access import SYSTEM
    from store.slips import store_slip
    from tests.factories import make_bet

    ids = []
    with Session(engine, expire_on_commit=False) as s:
        for path in images:
            bet = make_bet(s)
            slip, _ = store_slip(
                session=s, bet_id=bet.id, data=path.read_bytes(), actor=SYSTEM,
                max_bytes=10**8, max_pixels=10**8,
            )  # fmt: skip
            ids.append(slip.id)
        s.commit()
    return ids


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_eval_from_reviews_and_the_report(cli_env, engine, small_set, tmp_path):  # type: ignore[no-untyped-def]
    from store import clustering

    with (small_set / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    # writer A's three slips and one of writer B (the set's second and third writers: the
    # first one's first slip is too faint to use, so its pairs would be skipped)
    imgs = [small_set / r["image"] for r in rows[3:7]]
    a1, a2, a3, b1 = _reviewed_slips(engine, imgs)
    with Session(engine) as s:
        for x, y, verdict in ((a1, a2, "confirmed"), (a1, a3, "confirmed"), (a1, b1, "rejected"),
                              (a2, b1, "rejected")):  # fmt: skip
            clustering.record_link_decision(
                session=s, slip_a=x, slip_b=y, decision=verdict, actor="analyst", note=None
            )
        s.commit()
    out = tmp_path / "reviews.json"
    res = run("eval", "--from-reviews", "--json", str(out))
    assert "reviewed pairs   4 (2 confirmed, 2 rejected, 0 skipped)" in res.stdout
    figures = json.loads(out.read_text())
    assert figures["pairs"] == 4 and 0.0 <= figures["pair_recall"] <= 1.0
    # the shipped model separates these writers: no rejected pair scores above threshold
    assert figures["pair_false_links"] == 0
    # exact answers at the extremes: every pair linked, then none
    run("eval", "--from-reviews", "--threshold", "-1", "--json", str(out))
    figures = json.loads(out.read_text())
    assert (figures["pair_precision"], figures["pair_recall"]) == (0.5, 1.0)
    assert figures["pair_false_links"] == 2
    run("eval", "--from-reviews", "--threshold", "1.01", "--json", str(out))
    assert json.loads(out.read_text())["pair_recall"] == 0.0
    res = run("models", "evaluate", "active", "--from-reviews")
    assert "reviewed pairs   4" in res.stdout

    report = tmp_path / "eval-report"
    res = run(
        "eval", str(small_set), "--labels", str(small_set / "labels.csv"), "--report", str(report)
    )
    assert res.stdout.startswith("model            ")
    assert "retrieval        mAP" in res.stdout and "throughput" in res.stdout
    page = (report / "index.html").read_text()
    assert "12 items, 4 writers" in page and "Worst confusions" in page
    for name in ("pr_curve.png", "score_hist.png", "cluster_sizes.png", "confusion_1_a.png"):
        assert (report / name).stat().st_size > 1000, name


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_drift_command_without_slips_sets_nothing(cli_env):  # type: ignore[no-untyped-def]
    res = run("models", "drift")
    assert json.loads(res.stdout)["checked"] is False


def test_train_register_stores_the_model_with_its_fit_data(cli_env, small_set, tmp_path):
    from sqlmodel import create_engine

    from store import models_registry as registry

    out = tmp_path / "trained.npz"
    res = run(
        "train", str(small_set), "--labels", str(small_set / "labels.csv"), "--out", str(out),
        "--n-components", "4", "--vlad-clusters", "4", "--split", "", "--register",
    )  # fmt: skip
    version = res.stderr.split("registered: ")[1].split()[0]
    assert "already registered" not in res.stderr
    engine = create_engine(cli_env)
    with Session(engine) as s:
        row = registry.get_version(session=s, version=version)
        assert row.source == str(out) and row.fit_data["images"] == 12
        assert row.fit_data["folders"] == [str(small_set)]
        assert "pair_scores" in row.fit_data
    engine.dispose()
    again = run("models", "register", str(out))
    assert again.stdout.strip() == version and "already registered" in again.stderr
