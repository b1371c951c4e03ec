import csv
from pathlib import Path

import numpy as np
import pytest

from cv.accounts import (
    ACCOUNT_RATIO_THRESHOLD,
    REFERENCE_ACCOUNTS,
    account_links,
    eligible_accounts,
    ratio_threshold,
)


def _writer(rng, axis: int, n: int, *, d: int = 32, spread: float = 0.9) -> np.ndarray:
    """n slips of one writer: a shared direction plus per-slip noise (cosine ~0.55 apart)."""
    mean = np.zeros(d)
    mean[axis] = 1.0
    x = mean + spread * rng.standard_normal((n, d)) / np.sqrt(d)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_two_accounts_of_one_writer_link_and_different_writers_do_not() -> None:
    rng = np.random.default_rng(0)
    vectors = {}
    for w in range(5):
        slips = _writer(rng, w, 32)
        vectors[f"w{w}-a"], vectors[f"w{w}-b"] = slips[:16], slips[16:]
    links = account_links(vectors)
    assert {(lk.a, lk.b) for lk in links} == {(f"w{w}-a", f"w{w}-b") for w in range(5)}
    assert all(0.9 < lk.ratio < 1.1 and lk.slips_a == lk.slips_b == 16 for lk in links)


def test_ratio_does_not_reward_an_account_for_being_large() -> None:
    # the centroid cosine rises with the slips averaged; the ratio compares cross pairs with
    # each account's own pairs, so a 40-slip account of another writer stays unlinked
    rng = np.random.default_rng(1)
    shared = _writer(rng, 0, 1, spread=0.0)[0]
    a = _writer(rng, 1, 8) + 0.6 * shared
    b = _writer(rng, 2, 40) + 0.6 * shared
    links = account_links({"a": a, "b": b}, threshold=-1.0)
    assert len(links) == 1 and links[0].ratio < ACCOUNT_RATIO_THRESHOLD


def test_small_and_incoherent_accounts_are_left_out() -> None:
    rng = np.random.default_rng(2)
    one = _writer(rng, 0, 20)
    noise = rng.standard_normal((12, 32))  # several writers: no one hand to match
    vectors = {"few-a": one[:5], "few-b": one[5:10], "many": one[10:], "mixed": noise}
    assert eligible_accounts(vectors) == ["many"]
    assert account_links(vectors, threshold=-1.0) == []
    links = account_links(vectors, min_slips=5, threshold=-1.0)
    assert {frozenset((lk.a, lk.b)) for lk in links} == {
        frozenset(p) for p in (("few-a", "few-b"), ("few-a", "many"), ("few-b", "many"))
    }


def test_threshold_rises_with_the_accounts_compared() -> None:
    assert ratio_threshold(10) == ratio_threshold(REFERENCE_ACCOUNTS) == ACCOUNT_RATIO_THRESHOLD
    grown = [ratio_threshold(n) for n in (2_000, 10_000, 100_000)]
    assert ACCOUNT_RATIO_THRESHOLD < grown[0] < grown[1] < grown[2] < 1.3


@pytest.fixture(scope="module")
def many_slip_writers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sample_slips.generate import generate

    out = tmp_path_factory.mktemp("accounts")
    generate(out, writers=4, slips_per_writer=16, seed=23, split="heldout", first_writer=3001)
    return out


def test_real_slips_of_one_writer_link_as_accounts(many_slip_writers: Path) -> None:
    """Held-out generated writers, 16 slips each dealt into two accounts of 8, embedded by
    the shipped model: each writer's two accounts are linked, no two writers' are."""
    from cv.embed import embed_files, load_default_model

    with (many_slip_writers / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    usable: list[bool] = []
    x, errors = embed_files(
        [many_slip_writers / r["image"] for r in rows],
        model=load_default_model(),
        usable_out=usable,
    )
    assert not any(errors) and all(usable)
    vectors: dict[str, list[np.ndarray]] = {}
    seen: dict[str, int] = {}
    for r, v in zip(rows, x, strict=True):
        k = seen.get(r["writer"], 0)
        seen[r["writer"]] = k + 1
        vectors.setdefault(f"{r['writer']}:{k % 2}", []).append(v)
    links = account_links({a: np.array(v) for a, v in vectors.items()})
    assert {(lk.a, lk.b) for lk in links} == {(f"{w}:0", f"{w}:1") for w in seen}
