"""Evaluation report → `report.json`, `report.md`, `clips.jsonl`, PNG plots, and a rich summary table."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rich.table import Table

from evaluation.metrics import ClipOutcome, rank_of

REPORT_JSON, REPORT_MD, CLIPS_JSONL = "report.json", "report.md", "clips.jsonl"
R_AT_K_PNG, F1_THRESHOLD_PNG = "r_at_k.png", "f1_vs_threshold.png"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _f1(summary: Mapping[str, Any], level: str) -> float | None:
    entry = summary["f1"].get(level)
    if level == "mean":
        return None if entry is None else float(entry)
    return float(entry["f1"]) if entry else None


def _missing(summary: Mapping[str, Any], key: str) -> float | None:
    abstain = summary["missing_product"]["abstain"]
    if key == "f1_with_missing":
        entry = summary["missing_product"]["clip_f1_with_missing"]
        return entry["f1"] if entry else None
    return abstain[key] if abstain else None


#: (column, how to read it from a summary)
COLUMNS: tuple[tuple[str, Any], ...] = (
    ("clips", lambda s: s["clips"]),
    ("R@1", lambda s: s["r1"]),
    ("R@5", lambda s: s["r5"]),
    ("mAP@K", lambda s: s["map"]),
    ("det. recall", lambda s: s["detection_recall"]),
    ("F1 clip", lambda s: _f1(s, "clip")),
    ("F1 frame", lambda s: _f1(s, "frame")),
    ("F1 box", lambda s: _f1(s, "box")),
    ("F1 mean", lambda s: _f1(s, "mean")),
    ("abstain normal", lambda s: s["abstain_rate_normal"]),
    ("held-out", lambda s: s["missing_product"]["clips"]),
    ("abstain P", lambda s: _missing(s, "precision")),
    ("abstain R", lambda s: _missing(s, "recall")),
    ("abstain F1", lambda s: _missing(s, "f1")),
    ("clip F1 w/ missing", lambda s: _missing(s, "f1_with_missing")),
    ("median ms", lambda s: s["latency_ms"]["median"]),
)


def _row(name: str, summary: Mapping[str, Any]) -> list[str]:
    return [name] + [_fmt(read(summary), 1 if title == "median ms" else 3) for title, read in COLUMNS]


def _threshold_text(config: Mapping[str, Any]) -> str:
    if config.get("calibration_views"):
        return f"each catalogue's, calibrated at build from {config['calibration_views']} synthetic views"
    return str(config["abstain_threshold"])


def markdown(report: Mapping[str, Any]) -> str:
    config = report["config"]
    lines = [
        f"# Evaluation: {report['dataset']}",
        "",
        f"- dataset: `{report['dataset_path']}`; mode: **{report['mode']}**"
        + (f" ({report['url']})" if report.get("url") else ""),
        (f"- streams: {len(report['streams'])}; clips per stream: {config['clips_per_stream'] or 'all'}; "
         f"top_k (K of mAP@K): {config['top_k']}; frames per clip at most {config['max_frames']}"),
        ("- abstain threshold: " + _threshold_text(config)
         + (f" (per-stream overrides {config['abstain_threshold_overrides']})"
            if config.get("abstain_threshold_overrides") else "")
         + "; held-out share of products: "
         f"{config['held_out_share']} (seed {config['seed']})"),
        "- models: " + ", ".join(f"{role} `{sha[:12]}`" for role, sha in report["models"].items()),
        f"- wall time: {report['wall_seconds']:.1f} s; created {report['created_at']}",
        "",
        "| stream | " + " | ".join(title for title, _ in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for stream_id, summary in report["streams"].items():
        lines.append("| " + " | ".join(_row(stream_id, summary)) + " |")
    lines.append("| " + " | ".join(_row("**all**", report["summary"])) + " |")
    summary = report["summary"]
    lines += [
        "",
        f"R@1 averaged over streams: {_fmt(summary.get('r1_mean_over_streams'))}.",
        "",
    ]
    best = report.get("best_threshold")
    if best:
        lines += [
            (f"Best threshold for clip F1 with abstaining (normal + held-out passes): {best['threshold']:.4f} "
             f"(F1 {best['clip_f1']:.3f}; abstains on {best['abstain_recall']:.1%} of held-out clips and "
             f"{best['abstain_rate_normal']:.1%} of normal clips)."),
            "",
        ]
    lines += [f"![R@k]({R_AT_K_PNG})", "", f"![F1 against the abstain threshold]({F1_THRESHOLD_PNG})", ""]
    lines += ["## Definitions", ""] + [f"- **{k}**: {v}" for k, v in report["definitions"].items()]
    if report.get("issues"):
        lines += ["", f"## Skipped entries ({report['issue_count']})", ""]
        lines += [f"- {issue}" for issue in report["issues"]]
    return "\n".join(lines) + "\n"


def summary_table(report: Mapping[str, Any]) -> Table:
    table = Table(title=f"evaluation {report['dataset']} ({report['mode']})")
    table.add_column("stream")
    for title, _ in COLUMNS:
        table.add_column(title, justify="right")
    for stream_id, summary in report["streams"].items():
        table.add_row(*_row(stream_id, summary))
    table.add_row(*_row("all", report["summary"]), style="bold")
    return table


def _clip_row(outcome: ClipOutcome) -> dict[str, Any]:
    return {
        "stream_id": outcome.stream_id, "clip_id": outcome.clip_id, "truth": outcome.truth,
        "missing": outcome.missing, "abstain": outcome.abstain, "rank": rank_of(outcome.ranked, outcome.truth),
        "top": list(outcome.ranked[:5]), "scores": [round(s, 4) for s in outcome.scores[:5]],
        "frames": len(outcome.frames), "boxes": sum(len(f.returned) for f in outcome.frames),
        "latency_ms": round(outcome.latency_ms, 2), "pipeline_ms": round(outcome.pipeline_ms, 2),
    }


def plot_r_at_k(report: Mapping[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for summary in report["streams"].values():
        curve = summary["r_at_k"]
        if curve:
            ax.plot(range(1, len(curve) + 1), curve, color="0.75", linewidth=0.8)
    curve = report["summary"]["r_at_k"]
    if curve:
        ax.plot(range(1, len(curve) + 1), curve, color="C0", linewidth=2.2, marker="o", markersize=3,
                label=f"all streams ({report['summary']['positive_clips']} clips)")
    ax.set_xlabel("k")
    ax.set_ylabel("R@k")
    ax.set_ylim(0, 1)
    ax.set_xticks(range(1, max(len(curve), 1) + 1, 2))
    ax.grid(alpha=0.3)
    ax.set_title(f"{report['dataset']}: recall at k (grey: single streams)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _thresholds_used(report: Mapping[str, Any]) -> list[float]:
    """The thresholds the service abstained by: the one setting, or each stream's calibrated one."""
    calibrated = {s.get("calibrated_threshold") for s in report["streams"].values()}
    used = sorted(float(t) for t in calibrated if t is not None)
    return used or [float(report["config"]["abstain_threshold"])]


def plot_f1_threshold(report: Mapping[str, Any], path: Path) -> None:
    rows = report["threshold_sweep"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    if rows:
        t = [r["threshold"] for r in rows]
        ax.plot(t, [r["clip_f1"] for r in rows], color="C0", linewidth=2.2, label="clip F1 (normal + held-out)")
        ax.plot(t, [r["clip_f1_normal"] for r in rows], color="C2", label="clip F1 (normal only)")
        ax.plot(t, [r["abstain_recall"] for r in rows], color="C1", linestyle="--", label="abstain rate, held-out")
        ax.plot(t, [r["abstain_rate_normal"] for r in rows], color="C3", linestyle=":", label="abstain rate, normal")
        for threshold in _thresholds_used(report):
            ax.axvline(threshold, color="0.4", linewidth=0.8)
    ax.set_xlabel("abstain threshold (top product score)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(f"{report['dataset']}: F1 against the abstain threshold")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(report: Mapping[str, Any], outcomes: Sequence[ClipOutcome], out_dir: Path) -> list[Path]:
    """Write every report file into `out_dir` (created); returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in (REPORT_JSON, REPORT_MD, CLIPS_JSONL, R_AT_K_PNG, F1_THRESHOLD_PNG)]
    paths[0].write_text(json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(report), encoding="utf-8")
    paths[2].write_text("".join(json.dumps(_clip_row(o), ensure_ascii=False) + "\n" for o in outcomes),
                        encoding="utf-8")
    plot_r_at_k(report, paths[3])
    plot_f1_threshold(report, paths[4])
    return paths
