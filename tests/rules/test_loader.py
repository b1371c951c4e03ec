"""Rule files: the shipped ones load; every invalid file names the file, the rule and the
field; durations; versions from content."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rules.loader import (
    RuleFileError,
    content_hash,
    load_engine_settings,
    load_file,
    load_rules,
    parse_duration,
)
from rules.types import Severity

GOOD = """
id: my_rule
kind: structuring
description: test
window: 72h
inbox: compliance
params: {threshold_gbp: 1000}
bands:
  - {lower: 1.0, upper: 2.0, severity: high, reason: "{value} over {threshold_gbp}"}
  - {lower: 2.0, upper: null, severity: critical, reason: "way over"}
"""


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_rules_load_with_params_merged():
    rules = {r.id: r for r in load_rules([])}
    for rid in (
        "self_excluded_betting",
        "linked_accounts",
        "stake_factor_evasion",
        "unidentified_over_threshold",
        "structuring",
        "staff_observation",
    ):
        assert rid in rules and rules[rid].enabled
    assert rules["unidentified_over_threshold"].params["threshold_gbp"] == 1700.0
    assert rules["self_excluded_betting"].bands[0].severity == Severity.critical
    assert load_engine_settings().link_confidence_floor == 0.9


def test_good_file(tmp_path):
    [rule] = load_file(write(tmp_path, GOOD))
    assert rule.params["threshold_gbp"] == 1000 and rule.params["min_transactions"] == 3
    assert rule.window is not None and rule.window.total_seconds() == 72 * 3600
    assert [b.severity for b in rule.bands] == [Severity.high, Severity.critical]
    assert rule.source.endswith("r.yaml") and rule.version == 1


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("kind: structuring", "kind: nope", "kind"),
        ("window: 72h", "window: 3 fortnights", "window"),
        ("inbox: compliance", "inbox: somewhere", "inbox"),
        ("{threshold_gbp: 1000}", "{threshold_gbp: lots}", "params.threshold_gbp"),
        ("{threshold_gbp: 1000}", "{thresh: 1}", "params.thresh"),
        ("severity: high", "severity: severe", "bands[0].severity"),
        ("upper: 2.0, severity: high", "upper: 0.5, severity: high", "bands[0].upper"),
        ("upper: 2.0, severity: high", "upper: 2.5, severity: high", "bands"),
        ('reason: "way over"', 'reason: ""', "bands[1].reason"),
        ('reason: "{value} over {threshold_gbp}"', 'reason: "{value"', "bands[0].reason"),
        ("description: test", "description: test\ncolour: red", "colour"),
        ("inbox: compliance", "inbox: compliance\nscope: {kind: shop}", "scope.value"),
    ],
)
def test_invalid_files_name_file_rule_and_field(tmp_path, old, new, field):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(RuleFileError) as info:
        load_file(path)
    err = info.value
    assert (err.source, err.rule_id, err.field) == (str(path), "my_rule", field)
    assert str(err).startswith(f"{path}: rule 'my_rule': {field}: ")


def test_file_level_errors(tmp_path):
    with pytest.raises(RuleFileError, match="not valid YAML at line 2"):
        load_file(write(tmp_path, "id: x\n  kind: [unclosed\n"))
    with pytest.raises(RuleFileError, match="id: required"):
        load_file(write(tmp_path, GOOD.replace("id: my_rule", "id: My Rule")))
    with pytest.raises(RuleFileError, match="no such file"):
        load_rules([tmp_path / "missing"])
    d = tmp_path / "extra"
    d.mkdir()
    write(d, GOOD, "a.yaml")
    write(d, GOOD, "b.yaml")
    with pytest.raises(
        RuleFileError, match=r"b.yaml: rule 'my_rule': id: already defined in .*a.yaml"
    ):
        load_rules([d])


def test_several_rules_in_one_file(tmp_path):
    body = "\n".join("  " + line for line in GOOD.strip().splitlines())
    text = "rules:\n" + body.replace("  id: my_rule", "  - id: my_rule", 1).replace(
        "\n  ", "\n    "
    )
    text = text.replace("    - id", "  - id")
    rules = load_file(write(tmp_path, text))
    assert [r.id for r in rules] == ["my_rule"]


def test_durations_and_content_hash(tmp_path):
    assert parse_duration("1d12h").total_seconds() == 36 * 3600
    assert parse_duration(90).total_seconds() == 90
    for bad in ("", "12", "h", "-3h", "0d", True):
        with pytest.raises(ValueError):
            parse_duration(bad)
    [rule] = load_file(write(tmp_path, GOOD))
    assert content_hash(rule) == content_hash(replace(rule, version=7, source="elsewhere"))
    assert content_hash(rule) != content_hash(replace(rule, params={**rule.params, "min_shops": 3}))


def test_an_optional_number_takes_a_number_or_nothing(tmp_path):
    """linked_accounts' max_cluster_similarity is unset by default (the model's bound): a file
    may set a number, never text."""
    linked = GOOD.replace("kind: structuring", "kind: linked_accounts").replace(
        'reason: "{value} over {threshold_gbp}"', 'reason: "{value} over"'
    )
    [rule] = load_file(write(tmp_path, linked.replace("{threshold_gbp: 1000}", "{}")))
    assert rule.params["max_cluster_similarity"] is None
    set_ = linked.replace("{threshold_gbp: 1000}", "{max_cluster_similarity: 0.3}")
    [rule] = load_file(write(tmp_path, set_))
    assert rule.params["max_cluster_similarity"] == 0.3
    bad = linked.replace("{threshold_gbp: 1000}", "{max_cluster_similarity: low}")
    with pytest.raises(RuleFileError, match="params.max_cluster_similarity: expected NoneType"):
        load_file(write(tmp_path, bad))


def test_matching_accounts_below_six_slips_needs_its_own_ratio(tmp_path):
    """The account rule's ratios are calibrated for accounts of 6+ slips: a file asking for
    fewer must set min_ratio as well, and is refused, naming the field, when it does not."""
    accounts = GOOD.replace("kind: structuring", "kind: matching_accounts").replace(
        'reason: "{value} over {threshold_gbp}"', 'reason: "{value} accounts"'
    )
    [rule] = load_file(write(tmp_path, accounts.replace("{threshold_gbp: 1000}", "{}")))
    assert rule.params["min_slips"] == 6 and rule.params["min_ratio"] is None
    bad = accounts.replace("{threshold_gbp: 1000}", "{min_slips: 5}")
    with pytest.raises(RuleFileError, match="params.min_slips: below 6 the ratio is not"):
        load_file(write(tmp_path, bad))
    own = accounts.replace("{threshold_gbp: 1000}", "{min_slips: 5, min_ratio: 1.03}")
    [rule] = load_file(write(tmp_path, own))
    assert (rule.params["min_slips"], rule.params["min_ratio"]) == (5, 1.03)
