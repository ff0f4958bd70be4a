"""Feedback join, live performance per version and the paired promotion test, on built data."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic
import pytest

from flywheel.drift import feedback, paired, performance
from flywheel.serving import feedback as serving_feedback
from flywheel.serving import traffic

T0 = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)


def _traffic(rows: list[tuple[str, int, str, bool, str]]) -> pd.DataFrame:
    """(request_id, record_index, version, served, prediction) rows, one minute apart."""
    return pd.DataFrame(
        {
            "timestamp": [T0 + datetime.timedelta(minutes=i) for i in range(len(rows))],
            "request_id": [r[0] for r in rows],
            traffic.RECORD_INDEX: [r[1] for r in rows],
            "model_version": [r[2] for r in rows],
            "served": [r[3] for r in rows],
            "role": ["champion" if r[3] else "challenger" for r in rows],
            "prediction": [r[4] for r in rows],
        }
    )


def _post(sink: Path, labels: list[dict[str, object]], at: datetime.datetime) -> None:
    parsed = serving_feedback.Feedback.model_validate({"labels": labels}).labels
    serving_feedback.FeedbackWriter(sink.as_uri()).write(parsed, now=at)


def test_last_label_wins_whatever_the_arrival_order_and_unknown_ids_are_counted(tmp_path: Path) -> None:
    rows = _traffic([("a", 0, "v1", True, "x"), ("a", 1, "v1", True, "y"), ("b", 0, "v1", True, "x")])
    later = T0 + datetime.timedelta(hours=2)
    # The later label is written first (a second replica's file sorts earlier by name): time decides.
    _post(tmp_path, [{"request_id": "a", "record_index": 1, "label": "y"}], later)
    _post(
        tmp_path,
        [{"request_id": "a", "record_index": 1, "label": "x"}, {"request_id": "zz", "label": "x"}],
        T0,
    )
    _post(tmp_path, [{"request_id": "a", "label": "x"}, {"request_id": "a", "label": "x"}], later)
    joined = feedback.join(rows, tmp_path.as_uri())
    got = {(r.request_id, r.record_index): r.label for r in joined.rows.itertuples()}
    assert got == {("a", 0): "x", ("a", 1): "y"}
    assert joined.unknown == 1 and joined.duplicates == 2 and joined.labels == 3


def test_dropped_csv_files_join_and_foreign_files_are_named_not_fatal(tmp_path: Path) -> None:
    folder = tmp_path / serving_feedback.FOLDER
    folder.mkdir()
    (folder / "chargebacks.csv").write_text("request_id,label\nb,fraud\n")
    (folder / "notes.txt").write_text("not labels")
    (folder / "broken.csv").write_text("id,value\n1,2\n")
    old_log = _traffic([("b", 0, "v1", True, "fraud")]).drop(columns=[traffic.RECORD_INDEX])
    joined = feedback.join(old_log, tmp_path.as_uri())
    assert joined.rows["label"].tolist() == ["fraud"]  # a log without record_index reads it as 0
    assert len(joined.problems) == 2
    assert any("broken.csv" in p and "request_id" in p for p in joined.problems)


def test_feedback_request_validation_names_the_field() -> None:
    cases = [
        ({"labels": [{"request_id": "a", "label": float("nan")}]}, "label"),
        ({"labels": [{"request_id": "a", "label": False}]}, "label"),
        ({"labels": [{"request_id": "", "label": "x"}]}, "request_id"),
        ({"labels": [{"request_id": "a", "label": "x" * 300}]}, "label"),
        ({"labels": [{"request_id": "a", "label": "x"}] * (serving_feedback.MAX_LABELS + 1)}, "labels"),
    ]
    for payload, field in cases:
        with pytest.raises(pydantic.ValidationError) as info:
            serving_feedback.Feedback.model_validate(payload)
        assert any(field in map(str, e["loc"]) for e in info.value.errors()), info.value


def test_wilson_interval_matches_published_values() -> None:
    # Newcombe (1998), table I: 81/263 -> 0.2553 to 0.3662 (Wilson, no continuity correction).
    low, high = performance.wilson(81, 263)
    assert low == pytest.approx(0.2553, abs=1e-4) and high == pytest.approx(0.3662, abs=1e-4)
    assert performance.wilson(0, 10)[0] == 0.0 and performance.wilson(10, 10)[1] == pytest.approx(1.0)


def test_performance_per_version_and_window_with_intervals(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 400
    good = rng.random(n) < 0.9  # v1 right 90% of the time, v2 60%
    bad = rng.random(n) < 0.6
    rows = [(f"r{i}", 0, "v1", True, "a" if good[i] else "b") for i in range(n)]
    rows += [(f"s{i}", 0, "v2", True, "a" if bad[i] else "b") for i in range(n)]
    rows += [(f"r{i}", 0, "v2", False, "b") for i in range(50)]  # shadow rows do not count
    _post(tmp_path, [{"request_id": r[0], "label": "a"} for r in rows[: 2 * n]], T0)
    joined = feedback.join(_traffic(rows), tmp_path.as_uri())
    found = {w.version: w.estimate for w in performance.per_version(joined, "accuracy")}
    assert found["v1"].rows == n and found["v2"].rows == n
    assert found["v1"].low < found["v1"].value < found["v1"].high
    assert found["v1"].value == pytest.approx(good.mean()) and found["v2"].value == pytest.approx(bad.mean())
    assert found["v2"].high < found["v1"].low  # far apart: the intervals say so
    assert performance.dropped(found["v1"], found["v2"], None, lower_is_better=False)
    assert performance.dropped(found["v1"], found["v1"], None, lower_is_better=False) is None
    assert performance.dropped(found["v1"], found["v1"], 0.95, lower_is_better=False)
    windows = performance.per_version(joined, "f1", window=pd.Timedelta(hours=4))
    assert sum(w.estimate.rows for w in windows) == 2 * n and len(windows) > 2
    with pytest.raises(Exception, match="accuracy, f1, rmse or mae"):
        performance.per_version(joined, "roc_auc")


def test_paired_rule_rejects_noise_and_accepts_a_real_gain() -> None:
    rng = np.random.default_rng(1)
    n = 300
    truth = rng.choice(["a", "b"], size=n)
    champion = np.where(rng.random(n) < 0.8, truth, np.where(truth == "a", "b", "a"))
    noisy = champion.copy()
    wrong, right = np.flatnonzero(champion != truth), np.flatnonzero(champion == truth)
    noisy[wrong[:4]] = truth[wrong[:4]]  # 2% of rows changed: 4 now right, 2 now wrong
    noisy[right[:2]] = np.where(truth[right[:2]] == "a", "b", "a")
    diff = paired.compare(truth, champion, noisy, "accuracy")
    assert diff.difference == pytest.approx(2 / n) and diff.low < 0 < diff.high
    # The fixed margin promotes this noise; the interval's lower bound does not.
    assert paired.passes("margin", diff, 0.005) and not paired.passes("lowerBound", diff, 0.005)
    better = np.where(rng.random(n) < 0.95, truth, np.where(truth == "a", "b", "a"))
    real = paired.compare(truth, champion, better, "accuracy")
    assert real.difference > 0.1 and real.low > 0.05
    assert paired.passes("lowerBound", real, 0.01) and paired.passes("margin", real, 0.01)


def test_paired_difference_is_signed_for_lower_is_better_metrics() -> None:
    rng = np.random.default_rng(2)
    truth = rng.normal(size=200)
    champion = truth + rng.normal(scale=1.0, size=200)
    challenger = truth + rng.normal(scale=0.3, size=200)
    diff = paired.compare(truth, champion, challenger, "mae")
    assert diff.difference > 0 and diff.low > 0  # lower error is the challenger's gain
    assert diff.as_status()["test"] == "paired bootstrap" and diff.as_status()["rows"] == 200
    assert paired.compare(truth, champion, challenger, "mae") == diff  # seeded: same rows, same interval


def test_prediction_drift_measures_the_served_predictions_against_the_reference() -> None:
    from flywheel.drift import job, live

    reference = np.array(["0"] * 97 + ["1"] * 3)
    same = live.prediction_drift(reference, np.array(["0"] * 970 + ["1"] * 30), "classification", 0.1)
    assert same["distance"] == pytest.approx(0.0) and not same["drifted"]
    shifted = live.prediction_drift(reference, np.array(["0"] * 80 + ["1"] * 20), "classification", 0.1)
    assert shifted["drifted"] and shifted["method"] == "jensenshannon"
    rng = np.random.default_rng(0)
    values = rng.normal(size=2000)
    assert not live.prediction_drift(values, rng.normal(size=2000), "regression", 0.1)["drifted"]
    assert live.prediction_drift(values, rng.normal(loc=0.5, size=2000), "regression", 0.1)["drifted"]
    status = {"drifted": False, "predictionDrift": shifted, "performance": {"dropped": "x"}}
    assert job.triggers(status) == ["predictionDrift", "performanceDrop"]
    assert job.triggers({"drifted": True}) == ["featureDrift"]


def test_labelled_shadow_pairs_compare_both_models_on_the_same_live_records(tmp_path: Path) -> None:
    """Real traffic-log files (TrafficLogger) with champion and shadow rows, and labels from
    POST /feedback's writer: the paired comparison is on the records both scored and a label names."""
    from flywheel.api import driftmonitor as dm
    from flywheel.drift import live

    logger = traffic.TrafficLogger(tmp_path.as_uri(), 10**6, 3600)
    logger.features = ("x",)
    rng = np.random.default_rng(3)
    truth = rng.choice(["a", "b"], size=120)
    arrived = int(T0.timestamp() * 1e6)
    for i, label in enumerate(truth):
        champ = label if rng.random() < 0.6 else ("b" if label == "a" else "a")
        chall = label if rng.random() < 0.95 else ("b" if label == "a" else "a")
        for role, served, version, answer in (
            ("champion", True, "v1", champ),
            ("challenger", False, "v2", chall),
        ):
            logger.add_request(traffic.Request(arrived + i, f"r{i}", role, served, version, [{"x": 1.0}],
                                               [answer], [0.9], 1.0))  # fmt: skip
    logger.flush()
    _post(tmp_path, [{"request_id": f"r{i}", "label": str(v)} for i, v in enumerate(truth)], T0)
    spec = dm.DriftMonitorSpec.model_validate({
        "deploymentRef": "d", "window": {"rows": 1000, "minRows": 10},
        "retrain": {"template": {"data": {"repo": "r", "path": "p"}, "model": {"task": "classification", "target": "y"}}},
    })  # fmt: skip
    got = live.shadow_comparison(
        spec, tmp_path.as_uri(), T0 + datetime.timedelta(hours=1), "v2", "classification"
    )
    assert got is not None and got.rows == 120 and got.difference > 0.2 and got.low > 0.1
    assert live.shadow_comparison(spec, tmp_path.as_uri(), T0, "other-version", "classification") is None


def test_label_files_written_before_the_window_are_not_read(tmp_path: Path) -> None:
    """A label follows its request: files POST /feedback wrote before the oldest row of the window
    cannot join, so the read skips them (the folder only grows); dropped files are always read."""
    rows = _traffic([("a", 0, "v1", True, "x")])  # at T0
    _post(tmp_path, [{"request_id": "a", "label": "old"}], T0 - datetime.timedelta(days=1))
    (tmp_path / serving_feedback.FOLDER / "external.csv").write_text("request_id,label\nzz,x\n")
    labels, _, problems = feedback.read_labels(tmp_path.as_uri(), since=pd.Timestamp(T0))
    assert labels["request_id"].tolist() == ["zz"] and problems == []
    assert len(feedback.read_labels(tmp_path.as_uri())[0]) == 2  # no window: everything
    _post(tmp_path, [{"request_id": "a", "label": "new"}], T0 + datetime.timedelta(minutes=5))
    joined = feedback.join(rows, tmp_path.as_uri())
    assert joined.rows["label"].tolist() == ["new"] and joined.unknown == 1  # zz; "old" was not read
