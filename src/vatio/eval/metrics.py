"""Event-level detection metrics: alerts become episodes, episodes find labels.

A row-wise confusion matrix rewards a detector for flagging every row of a
three-day vacancy and punishes one that raises a single alert an hour in,
although a householder would call both a hit. So the unit here is the
*episode*, a run of alerted rows:

- rows alerted less than ``merge_gap_s`` apart form one episode (one
  notification, not a flurry), and an episode longer than ``max_episode_s`` is
  cut into pieces of that length: an alert left on for weeks is re-raised
  every piece, so "alert everything" cannot score one matched episode;
- a label is FOUND when an episode overlaps ``[start, end)`` or starts within
  ``grace_s`` after its end (detectors that need a whole day to judge a day);
- precision = episodes that match some label / all episodes; an episode that
  matches none is a false alarm, counted per household-month observed;
- an episode that matches no label but starts on a *known fault* (a fault
  already in a real recording, such as readings the meter never sent) is
  neither: the detector reported something true that nobody labelled;
- detection delay = first alerted row at or after the label start (and before
  its end + grace) minus the label start;
- PR-AUC is point-wise: the raw scores ranked against rows inside labels.

Per anomaly kind, recall and delay use that kind's labels; precision counts
the episodes matching that kind against those plus every false alarm, i.e. the
precision the detector would have on data containing only that kind.

Every function is pure: arrays and labels in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score

from vatio.detect.base import FloatArray, IntArray
from vatio.model.anomaly import AnomalyLabel

BoolArray = npt.NDArray[np.bool_]

#: Mean Gregorian month, the unit of false-alarm rates.
MONTH_S = 30.436875 * 86400
OVERALL = "overall"


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchConfig:
    """How alerts are grouped into episodes and matched to labels (seconds)."""

    merge_gap_s: int = 2 * 3600
    grace_s: int = 6 * 3600
    max_episode_s: int = 86400


@dataclass(frozen=True, slots=True)
class LabelSpan:
    """A ground-truth label reduced to what matching needs: kind and ``[start, end)``."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class HouseholdOutcome:
    """Matching result of one household at one threshold.

    ``overlap[e, l]`` says episode ``e`` matches label ``l``; an episode whose
    row is all False is a false alarm unless ``explained`` (it starts on a known fault).
    """

    label_kinds: npt.NDArray[np.object_]
    found: BoolArray
    delay_s: FloatArray  # NaN where not found
    episode_start: IntArray
    episode_end: IntArray
    overlap: BoolArray
    months: float
    explained: BoolArray


@dataclass(frozen=True, slots=True, kw_only=True)
class KindMetrics:
    n_labels: int
    n_found: int
    n_episodes: int
    n_false_alarms: int
    precision: float
    recall: float
    f1: float
    false_alarms_per_household_month: float
    delay_median_s: float
    delay_p90_s: float
    pr_auc: float = math.nan
    n_explained: int = 0  # episodes on a known fault: neither matched nor false alarms


def label_spans(labels: Iterable[AnomalyLabel]) -> list[LabelSpan]:
    return [LabelSpan(str(label.kind), int(label.start.timestamp()), int(label.end.timestamp())) for label in labels]


def alert_episodes(
    ts: IntArray, alerts: BoolArray, *, step_s: int, merge_gap_s: int, max_episode_s: int
) -> tuple[IntArray, IntArray]:
    """Episode starts and ends (``[start, end)``); each row covers ``[ts, ts + step_s)``.

    >>> ts = np.arange(8, dtype=np.int64) * 60
    >>> alerts = np.array([1, 1, 0, 1, 0, 0, 0, 1], dtype=bool)
    >>> starts, ends = alert_episodes(ts, alerts, step_s=60, merge_gap_s=60, max_episode_s=3600)
    >>> starts.tolist(), ends.tolist()
    ([0, 420], [240, 480])
    """
    hit_ts = np.asarray(ts, dtype=np.int64)[np.asarray(alerts, dtype=bool)]
    if hit_ts.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    # A gap between two alerted rows is the time neither covers.
    breaks = np.flatnonzero(np.diff(hit_ts) - step_s > merge_gap_s) + 1
    starts = hit_ts[np.r_[0, breaks]]
    ends = hit_ts[np.r_[breaks - 1, hit_ts.size - 1]] + step_s
    pieces = -(-(ends - starts) // max_episode_s)
    first_piece = np.repeat(np.cumsum(pieces) - pieces, pieces)
    piece_starts = np.repeat(starts, pieces) + (np.arange(pieces.sum()) - first_piece) * max_episode_s
    piece_ends = np.minimum(piece_starts + max_episode_s, np.repeat(ends, pieces))
    return piece_starts.astype(np.int64), piece_ends.astype(np.int64)


def match_household(
    ts: IntArray,
    alerts: BoolArray,
    spans: Sequence[LabelSpan],
    *,
    step_s: int,
    config: MatchConfig,
    known: Sequence[LabelSpan] = (),
) -> HouseholdOutcome:
    """Match one household's alerts against its labels (and its ``known`` faults, see the module notes)."""
    ts = np.asarray(ts, dtype=np.int64)
    alerts = np.asarray(alerts, dtype=bool)
    ep_start, ep_end = alert_episodes(
        ts, alerts, step_s=step_s, merge_gap_s=config.merge_gap_s, max_episode_s=config.max_episode_s
    )
    lab_start = np.array([s.start for s in spans], dtype=np.int64)
    lab_end = np.array([s.end for s in spans], dtype=np.int64)
    overlaps = (ep_start[:, None] < lab_end[None, :]) & (ep_end[:, None] > lab_start[None, :])
    starts_in_grace = (ep_start[:, None] >= lab_end[None, :]) & (ep_start[:, None] < lab_end[None, :] + config.grace_s)
    overlap = overlaps | starts_in_grace
    found = np.asarray(overlap.any(axis=0), dtype=bool)
    known_start = np.array([s.start for s in known], dtype=np.int64)
    known_end = np.array([s.end for s in known], dtype=np.int64)
    # Only an episode that *starts* on the hole (at the row revealing it) reports it; one that
    # merely spans a hole began for another reason.
    on_known = (ep_start[:, None] >= known_start[None, :]) & (ep_start[:, None] < known_end[None, :])
    explained = np.asarray(on_known.any(axis=1) & ~overlap.any(axis=1), dtype=bool)
    hit_ts = ts[alerts]
    first = np.searchsorted(hit_ts, lab_start)
    first_ts = hit_ts[np.minimum(first, max(hit_ts.size - 1, 0))] if hit_ts.size else lab_start
    in_window = (first < hit_ts.size) & (first_ts < lab_end + config.grace_s)
    # Found without an alerted row in the window: a merged episode bridged the
    # label, so the alert was already on when it began.
    delay = np.where(in_window, first_ts - lab_start, 0).astype(np.float64)
    return HouseholdOutcome(
        label_kinds=np.array([s.kind for s in spans], dtype=object),
        found=found,
        delay_s=np.where(found, delay, np.nan),
        episode_start=ep_start,
        episode_end=ep_end,
        overlap=overlap,
        months=(float(ts[-1] - ts[0]) + step_s) / MONTH_S if ts.size else 0.0,
        explained=explained,
    )


def row_kinds(ts: IntArray, spans: Sequence[LabelSpan]) -> npt.NDArray[np.object_]:
    """Each row's label kind, ``""`` outside labels (the point-wise ground truth)."""
    kinds = np.full(len(ts), "", dtype=object)
    for label in spans:
        kinds[(ts >= label.start) & (ts < label.end)] = label.kind
    return kinds


def pr_auc(score: FloatArray, positive: BoolArray) -> float:
    """Average precision of ``score`` ranking ``positive`` rows first; NaN if undefined."""
    positive = np.asarray(positive, dtype=bool)
    if not positive.any() or positive.all():
        return math.nan
    score = np.asarray(score, dtype=np.float64)
    finite = np.isfinite(score)
    # A row the detector could not score ranks below every scored row.
    floor = float(score[finite].min()) - 1.0 if finite.any() else 0.0
    return float(average_precision_score(positive, np.where(finite, score, floor)))


def _f1(precision: float, recall: float) -> float:
    if math.isnan(precision) or math.isnan(recall):
        return math.nan
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def summarise_kind(outcomes: Sequence[HouseholdOutcome], kind: str = OVERALL) -> KindMetrics:
    """Pool households into one set of numbers, for one kind or ``OVERALL``."""
    n_labels = n_found = matched = false_alarms = explained = 0
    delays: list[FloatArray] = []
    for h in outcomes:
        of_kind = np.ones(len(h.label_kinds), dtype=bool) if kind == OVERALL else h.label_kinds == kind
        n_labels += int(of_kind.sum())
        n_found += int(h.found[of_kind].sum())
        delays.append(h.delay_s[of_kind & h.found])
        matched += int(h.overlap[:, of_kind].any(axis=1).sum())
        false_alarms += int((~h.overlap.any(axis=1) & ~h.explained).sum())
        explained += int(h.explained.sum())
    delay = np.concatenate(delays) if delays else np.zeros(0)
    months = sum(h.months for h in outcomes)
    # No alerts at all is a precision of 1 (nothing wrong was said), not 0/0.
    precision = matched / (matched + false_alarms) if matched + false_alarms else 1.0
    recall = n_found / n_labels if n_labels else math.nan
    return KindMetrics(
        n_labels=n_labels,
        n_found=n_found,
        n_episodes=matched + false_alarms,
        n_false_alarms=false_alarms,
        precision=precision,
        recall=recall,
        f1=_f1(precision, recall),
        false_alarms_per_household_month=false_alarms / months if months > 0 else math.nan,
        delay_median_s=float(np.median(delay)) if delay.size else math.nan,
        delay_p90_s=float(np.percentile(delay, 90)) if delay.size else math.nan,
        n_explained=explained,
    )


def summarise(
    outcomes: Sequence[HouseholdOutcome],
    *,
    scores: FloatArray | None = None,
    kinds: npt.NDArray[np.object_] | None = None,
) -> dict[str, KindMetrics]:
    """Overall and per-kind metrics; PR-AUC when pooled row ``scores``/``kinds`` are given.

    Per-kind PR-AUC ranks that kind's rows against unlabelled rows only, so
    another kind's rows count neither for nor against it.
    """
    present = sorted({str(kind) for h in outcomes for kind in h.label_kinds})
    result: dict[str, KindMetrics] = {}
    for kind in [OVERALL, *present]:
        metrics = summarise_kind(outcomes, kind)
        if scores is not None and kinds is not None:
            if kind == OVERALL:
                auc = pr_auc(scores, kinds != "")
            else:
                keep = (kinds == kind) | (kinds == "")
                auc = pr_auc(scores[keep], kinds[keep] == kind)
            metrics = replace(metrics, pr_auc=auc)
        result[kind] = metrics
    return result
