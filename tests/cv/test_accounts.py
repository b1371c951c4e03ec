import csv
from pathlib import Path

import numpy as np
import pytest

from cv.accounts import (
    ACCOUNT_RATIO_THRESHOLD,
    IMPOSTOR_TAIL,
    REFERENCE_ACCOUNTS,
    SIZE_CLASSES,
    ImpostorTail,
    SizeClass,
    account_links,
    account_profiles,
    eligible_accounts,
    fit_impostor_tail,
    likely_accounts,
    ratio_threshold,
    size_class,
    slip_account_scores,
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


def test_threshold_rises_with_the_accounts_compared_towards_the_tails_end() -> None:
    assert ratio_threshold(10) == ratio_threshold(REFERENCE_ACCOUNTS) == ACCOUNT_RATIO_THRESHOLD
    grown = [ratio_threshold(n) for n in (2_000, 10_000, 100_000, 10**7)]
    end = IMPOSTOR_TAIL.start - IMPOSTOR_TAIL.scale / IMPOSTOR_TAIL.shape
    assert ACCOUNT_RATIO_THRESHOLD < grown[0] < grown[1] < grown[2] < grown[3] < end < 1.05
    # each account expects as many false matches as at the reference size
    for n, t in zip((2_000, 10_000), grown, strict=False):
        ratio = (
            IMPOSTOR_TAIL.sf(t)
            * (n - 1)
            / (IMPOSTOR_TAIL.sf(ACCOUNT_RATIO_THRESHOLD) * (REFERENCE_ACCOUNTS - 1))
        )
        assert ratio == pytest.approx(1.0, rel=1e-6)


def test_tail_fit_reads_a_bounded_tail_where_a_normal_overshoots() -> None:
    """Scores with a ceiling (a beta's upper tail ends at 1): the fitted generalised Pareto
    tail puts the 1-in-a-million score within 0.01 of the true one (0.927); a normal fitted to
    the same top 0.1 % and 0.01 % (`cv.cluster.impostor_tail`) puts it over 0.02 higher."""
    from scipy.stats import beta

    from cv.cluster import impostor_tail

    rng = np.random.default_rng(5)
    fit = beta.rvs(2, 6, size=2_000_000, random_state=rng)
    tail = fit_impostor_tail(fit)
    assert tail is not None and tail.shape < 0 and tail.share == pytest.approx(1e-3, rel=0.01)
    far = beta.isf(1e-6, 2, 6)  # the true score one pair in a million reaches
    assert tail.isf(1e-6) == pytest.approx(far, abs=0.01)
    assert tail.isf(tail.sf(0.8)) == pytest.approx(0.8, abs=1e-9)
    assert tail.sf(tail.start - tail.scale / tail.shape + 0.01) == 0.0  # beyond its end
    normal = impostor_tail(fit)
    assert normal is not None
    from scipy.special import ndtri

    assert normal[0] + normal[1] * float(ndtri(1 - 1e-6)) > far + 0.02
    assert fit_impostor_tail(fit[:100_000]) is None  # 100 in the top: too few
    exponential = ImpostorTail(0.5, 1e-3, 0.0, 0.1)
    assert exponential.isf(exponential.sf(0.9)) == pytest.approx(0.9)


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


def test_smaller_accounts_need_more_and_fewer_than_six_need_a_threshold() -> None:
    for n in (100, 1_500, 5_000, 50_000):
        six, seven, eight = (ratio_threshold(n, slips=k) for k in (6, 7, 8))
        assert six > seven > eight and ratio_threshold(n, slips=40) == eight
    assert size_class(6) is SIZE_CLASSES[0] and size_class(100) is SIZE_CLASSES[-1]
    rng = np.random.default_rng(4)
    one = _writer(rng, 0, 10)
    with pytest.raises(ValueError, match="accounts of 5 slips have no calibrated ratio"):
        account_links({"a": one[:5], "b": one[5:]}, min_slips=5)
    assert len(account_links({"a": one[:5], "b": one[5:]}, min_slips=5, threshold=0.5)) == 1


def test_each_pair_is_held_to_its_smaller_accounts_class() -> None:
    """Classes that never link a pair with an account under 8 slips and always link two of 8+:
    the 6- and 7-slip accounts stay out however alike, the 8- and 9-slip ones link."""
    rng = np.random.default_rng(6)
    slips = _writer(rng, 0, 30)
    vectors = {"six": slips[:6], "seven": slips[6:13], "eight": slips[13:21], "nine": slips[21:]}
    never = SizeClass(6, 9.0, 10**6, IMPOSTOR_TAIL)
    always = SizeClass(8, -9.0, 10**6, IMPOSTOR_TAIL)
    links = account_links(vectors, classes=(never, always))
    assert {(lk.a, lk.b) for lk in links} == {("eight", "nine")}
    assert len(account_links(vectors, threshold=-9.0)) == 6  # one number: every pair


def test_a_slip_ranks_its_writers_account_first_among_accounts_of_six_or_more() -> None:
    rng = np.random.default_rng(8)
    hands = {w: _writer(rng, w, 13) for w in range(4)}
    vectors = {f"w{w}": slips[1:] for w, slips in hands.items()}  # 12 slips each
    vectors["few"] = _writer(rng, 0, 5)  # the query's hand, but too few slips to stand for it
    profiles = account_profiles(vectors)
    assert profiles.keys == ["w0", "w1", "w2", "w3"] and profiles.counts == [12] * 4
    ranked = likely_accounts(hands[2][0], profiles, k=3)
    assert [a for a, _, _ in ranked][0] == "w2" and len(ranked) == 3
    assert all(n == 12 for _, _, n in ranked) and ranked[0][1] > ranked[1][1] >= ranked[2][1]
    scores = slip_account_scores(np.stack([h[0] for h in hands.values()]), profiles)
    assert scores.shape == (4, 4) and (scores.argmax(axis=1) == np.arange(4)).all()
    # the score is the ratio's form: the mean cross cosine over the account's cohesion's root
    x = vectors["w1"] / np.linalg.norm(vectors["w1"], axis=1, keepdims=True)
    q = hands[1][0] / np.linalg.norm(hands[1][0])
    cohesion = (np.sum(x @ x.T) - 12) / (12 * 11)
    assert scores[1, 1] == pytest.approx(float(np.mean(x @ q)) / np.sqrt(cohesion), rel=1e-5)
    # two slips of one hand: their scores averaged
    both = likely_accounts(np.stack([hands[3][0], hands[3][0]]), profiles, k=1)
    assert both[0][0] == "w3" and both[0][1] == pytest.approx(scores[3, 3], rel=1e-6)
    assert likely_accounts(hands[0][0], account_profiles({"few": vectors["few"]})) == []
    with pytest.raises(ValueError, match="dimensions"):
        likely_accounts(np.ones(8), profiles)
