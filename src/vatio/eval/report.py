"""``vatio eval``: run the harness and write ``report.md``, ``report.json`` and ``img/*.png``.

The report opens with the command that made it, so anyone can remake it.
Numbers come from the held-out test split; the selection split only chose
each detector's threshold (see :mod:`vatio.eval.harness`).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from vatio.detect.base import FloatArray
from vatio.errors import VatioError
from vatio.eval.harness import DETECTORS, PRESETS, TEST, EvalResult, Household, preset, run_eval
from vatio.eval.metrics import OVERALL, KindMetrics, LabelSpan

DEFAULT_DATA = Path("../shared/data")


def _num(value: float, digits: int = 2) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def _hours(seconds: float) -> str:
    return "–" if math.isnan(seconds) else f"{seconds / 3600:.1f} h"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def kinds_of(result: EvalResult) -> list[str]:
    return sorted({kind for d in result.detectors.values() for kind in d.test if kind != OVERALL})


def _setup_lines(result: EvalResult) -> list[str]:
    config = result.config
    lines = [
        "## Set-up",
        "",
        "| source | split | homes | rows | labels | known faults |",
        "|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[Household]] = {}
    for household in result.households:
        groups.setdefault((household.source, household.split), []).append(household)
    for (source, split), homes in sorted(groups.items()):
        rows = sum(len(h.series) for h in homes)
        labels = sum(len(h.labels) for h in homes)
        known = sum(len(h.known) for h in homes)
        lines.append(f"| {source} | {split} | {len(homes)} | {rows:,} | {labels} | {known} |")
    match = config.match
    real = "none (no data directory)" if config.data_dir is None else f"from `{config.data_dir}`"
    lines += [
        "",
        f"- Config `{config.name}`, seed {config.seed}: {config.sim_homes} simulated homes of "
        f"{config.sim_days} days at {config.sim_step_s // 60} min; real homes {real}"
        + (f", first {config.real_days} days each." if config.real_days else "."),
        f"- {config.per_kind} anomal{'y' if config.per_kind == 1 else 'ies'} of each of {len(config.kinds)} "
        "kinds per home, non-overlapping, "
        f"none in a home's first {config.clean_days} days.",
        "- Split by household within each source, seeded; one threshold per detector chosen on the "
        f"selection split: best event F1 with at most {config.max_false_alarms_per_household_month:g} "
        "false alarm per household-month (never alerting if no threshold meets that).",
        f"- Episodes: alerted rows less than {match.merge_gap_s / 3600:g} h apart merge; an episode is "
        f"cut every {match.max_episode_s / 3600:g} h; a label is found by an episode that overlaps it or "
        f"starts within {match.grace_s / 3600:g} h after it ends. Delay: first alert at or after the "
        "label start. PR-AUC: point-wise average precision of the raw scores.",
        "- Real homes carry no labels of their own: anything odd in them that a detector flags counts "
        "as a false alarm, except an episode that starts on a known fault: a hole the recording already had "
        "(readings never sent). Such an episode is neither a hit nor a false alarm, and no label is "
        "made of it; the detectors table counts them.",
        "",
    ]
    return lines


def _overall_lines(result: EvalResult) -> list[str]:
    lines = [
        "## Detectors (test split)",
        "",
        "| detector | threshold | precision | recall | F1 | false alarms / household-month | PR-AUC "
        "| delay median | delay p90 | selection F1 | episodes on known faults | scoring |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, d in result.detectors.items():
        m, s = d.test[OVERALL], d.selection[OVERALL]
        threshold = "never" if math.isinf(d.threshold) else f"{d.threshold:.4g}"
        lines.append(
            f"| {name} | {threshold} | {_num(m.precision)} | {_num(m.recall)} | {_num(m.f1)} "
            f"| {_num(m.false_alarms_per_household_month)} | {_num(m.pr_auc, 3)} | {_hours(m.delay_median_s)} "
            f"| {_hours(m.delay_p90_s)} | {_num(s.f1)} | {m.n_explained} | {d.scoring_s:.1f} s |"
        )
    return [*lines, ""]


def _per_kind_lines(result: EvalResult) -> list[str]:
    names = list(result.detectors)
    header = "| kind | labels | " + " | ".join(names) + " |"
    rule = "|---|---|" + "---|" * len(names)
    recall = ["## Recall and median delay per anomaly kind (test split)", "", header, rule]
    auc = ["## PR-AUC per anomaly kind (test split)", "", header, rule]
    for kind in kinds_of(result):
        first = result.detectors[names[0]].test[kind]
        cells = []
        for name in names:
            m = result.detectors[name].test[kind]
            cells.append(f"{_num(m.recall)} ({_hours(m.delay_median_s)})" if m.n_found else _num(m.recall))
        recall.append(f"| {kind} | {first.n_labels} | " + " | ".join(cells) + " |")
        aucs = [_num(result.detectors[name].test[kind].pr_auc, 3) for name in names]
        auc.append(f"| {kind} | {first.n_labels} | " + " | ".join(aucs) + " |")
    notes = [
        "",
        "Recall counts a label found when an alert episode overlaps it or starts within the grace period; "
        '"–" PR-AUC is undefined: no row carries the label (a gap\'s rows are absent).',
    ]
    return [*recall, "", *auc, *notes, ""]


def render_markdown(result: EvalResult, command: str, images: dict[str, str]) -> str:
    lines = [
        "# Detector evaluation",
        "",
        f"Made by `{command}` in {result.elapsed_s:.0f} s.",
        "",
        *_setup_lines(result),
        *_overall_lines(result),
        *_per_kind_lines(result),
    ]
    if images:
        lines += ["## Examples", ""]
        for kind, path in images.items():
            lines += [f"### {kind}", "", f"![{kind}]({path})", ""]
    return "\n".join(lines)


def _metrics_json(metrics: dict[str, KindMetrics]) -> dict[str, dict[str, Any]]:
    return {
        kind: {key: (None if isinstance(v, float) and math.isnan(v) else v) for key, v in asdict(m).items()}
        for kind, m in metrics.items()
    }


def result_json(result: EvalResult, command: str) -> dict[str, Any]:
    config = {
        f.name: getattr(result.config, f.name)
        for f in fields(result.config)
        if f.name not in ("match", "kinds", "data_dir", "sim_start")
    }
    config |= {
        "match": asdict(result.config.match),
        "kinds": [str(kind) for kind in result.config.kinds],
        "data_dir": None if result.config.data_dir is None else str(result.config.data_dir),
        "sim_start": result.config.sim_start.isoformat(),
        "detectors": list(result.detectors),
    }
    households = [
        {
            "id": h.household_id,
            "source": h.source,
            "split": h.split,
            "rows": len(h.series),
            "step_s": h.series.step_s,
            "labels": [
                {
                    "kind": str(lb.kind),
                    "start": lb.start.isoformat(),
                    "end": lb.end.isoformat(),
                    "magnitude": lb.magnitude,
                }
                for lb in h.labels
            ],
        }
        for h in result.households
    ]
    detectors = {
        name: {
            "threshold": _finite(d.threshold),
            "scoring_s": d.scoring_s,
            "selection": _metrics_json(d.selection),
            "test": _metrics_json(d.test),
        }
        for name, d in result.detectors.items()
    }
    return {
        "command": command,
        "config": config,
        "households": households,
        "detectors": detectors,
        "elapsed_s": result.elapsed_s,
    }


def best_detector(result: EvalResult, kind: str) -> str:
    """Highest test recall on ``kind``; ties by overall test F1."""

    def key(name: str) -> tuple[float, float]:
        d = result.detectors[name]
        f1 = d.test[OVERALL].f1
        return (d.test[kind].recall, 0.0 if math.isnan(f1) else f1)

    return max(result.detectors, key=key)


def plot_examples(result: EvalResult, img_dir: Path) -> dict[str, str]:
    """One PNG per anomaly kind: a test home's series around a label, alerts of the best detector."""
    import matplotlib

    matplotlib.use("Agg")

    img_dir.mkdir(parents=True, exist_ok=True)
    images: dict[str, str] = {}
    test_homes = [h for h in result.households if h.split == TEST]
    for kind in kinds_of(result):
        name = best_detector(result, kind)
        example = _pick_example(result, test_homes, name, kind)
        if example is not None:
            home, span = example
            threshold = result.detectors[name].threshold
            _plot_example(img_dir / f"{kind}.png", home, span, result.scores[name][home.household_id], name, threshold)
            images[kind] = f"img/{kind}.png"
    return images


def _pick_example(
    result: EvalResult, homes: Sequence[Household], name: str, kind: str
) -> tuple[Household, LabelSpan] | None:
    """A label of ``kind`` in a test home, one the detector found if there is one."""
    threshold = result.detectors[name].threshold
    fallback = None
    for home in homes:
        alerted_ts = home.series.ts[np.nan_to_num(result.scores[name][home.household_id], nan=-np.inf) >= threshold]
        for span in home.spans:
            if span.kind != kind:
                continue
            if ((alerted_ts >= span.start) & (alerted_ts < span.end + result.config.match.grace_s)).any():
                return home, span
            fallback = fallback or (home, span)
    return fallback


def _plot_example(
    path: Path, home: Household, span: LabelSpan, scores: FloatArray, name: str, threshold: float
) -> None:
    import matplotlib.pyplot as plt

    margin = max(2 * 86400, (span.end - span.start) // 2)
    ts = home.series.ts
    rows = (ts >= span.start - margin) & (ts < span.end + margin)
    # On the full grid, so that absent rows (gaps) break the line instead of bridging it.
    grid = np.arange(ts[rows][0], ts[rows][-1] + 1, home.series.step_s)
    at = np.searchsorted(grid, ts[rows])
    power, score = np.full(len(grid), np.nan), np.full(len(grid), np.nan)
    power[at], score[at] = home.series.power_w[rows], scores[rows]
    when = grid.astype("datetime64[s]")
    alerted = np.nan_to_num(score, nan=-np.inf) >= threshold
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5), sharex=True, height_ratios=[3, 1])
    for axis in (top, bottom):
        axis.axvspan(np.datetime64(span.start, "s"), np.datetime64(span.end, "s"), color="orange", alpha=0.3)
    for other in home.spans:  # neighbouring labels, lest their effect be read as false alarms
        if other is not span and other.end > grid[0] and other.start <= grid[-1]:
            top.axvspan(np.datetime64(other.start, "s"), np.datetime64(other.end, "s"), color="0.88")
            top.annotate(
                other.kind, (np.datetime64(other.start, "s"), 1.0), xycoords=("data", "axes fraction"),
                fontsize=7, va="top", color="0.4",
            )  # fmt: skip
    top.plot(when, power, lw=0.8, color="0.2", label="power (W)")
    top.plot(when[alerted], power[alerted], "r.", ms=4, label=f"alert ({name})")
    top.set_title(f"{span.kind} in {home.household_id}: label shaded, alerts of {name}")
    top.legend(loc="upper left", fontsize=8)
    bottom.plot(when, score, lw=0.8, color="tab:blue")
    if math.isfinite(threshold):
        bottom.axhline(threshold, color="red", lw=0.8, ls="--")
    bottom.set_ylabel("score")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(result: EvalResult, out_dir: Path, command: str) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    images = plot_examples(result, out_dir / "img")
    (out_dir / "report.md").write_text(render_markdown(result, command, images))
    document = result_json(result, command)
    (out_dir / "report.json").write_text(json.dumps(document, indent=2) + "\n")
    return document


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vatio eval",
        description=__doc__.splitlines()[0],
        epilog="also: vatio eval bound, how early any simple detector could see a step up (see its --help)",
    )
    parser.add_argument("--config", choices=sorted(PRESETS), default="small")
    parser.add_argument("--out", type=Path, default=Path("docs/eval"), help="report directory")
    parser.add_argument("--json", action="store_true", help="also print the JSON result on stdout")
    parser.add_argument("--detectors", help=f"comma-separated subset of: {', '.join(DETECTORS)}")
    parser.add_argument("--data", type=Path, help=f"real data directory (default {DEFAULT_DATA} when it exists)")
    parser.add_argument("--no-data", action="store_true", help="simulated homes only")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    data_dir: Path | None = args.data
    if data_dir is None and not args.no_data and DEFAULT_DATA.is_dir():
        data_dir = DEFAULT_DATA
    if args.no_data:
        data_dir = None
    detectors = tuple(n.strip() for n in args.detectors.split(",") if n.strip()) if args.detectors else ()
    try:
        config = preset(
            args.config, seed=args.seed, data_dir=data_dir, detectors=detectors, progress=sys.stderr.isatty()
        )
        result = run_eval(config)
    except (ValueError, VatioError) as exc:
        print(f"vatio eval: {exc}", file=sys.stderr)
        return 2
    command = shlex.join(["vatio", "eval", *argv])
    document = write_report(result, args.out, command)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(f"report: {args.out / 'report.md'} ({result.elapsed_s:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
