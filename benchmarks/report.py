"""A benchmark's result → `report.json`, `report.md` (one table) and `plot.png`, plus the machine it ran on.

Every benchmark returns a `BenchReport`; `write_report` puts its three files under `<out>/<name>/`. The JSON
holds everything (machine, parameters, rows, summary, notes), the markdown is what docs/PERFORMANCE.md
quotes, the PNG draws the `plots` named in the report.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker

REPORT_JSON, REPORT_MD, PLOT_PNG = "report.json", "report.md", "plot.png"
PROJECT_DIR = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Plot:
    """One panel: `y` against `x` over the rows, one line per value of `series` (None: one line)."""

    x: str
    y: str
    series: str | None = None
    title: str = ""
    logx: bool = False
    logy: bool = False
    hlines: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class BenchReport:
    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    params: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["plots"] = [asdict(p) for p in self.plots]
        return body


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_DIR, capture_output=True,
                             text=True, timeout=5, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=PROJECT_DIR, capture_output=True,
                               text=True, timeout=5, check=True).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    """Where the numbers come from: CPU, cores, memory, load, library versions, providers, commit."""
    import faiss
    import onnxruntime as ort

    from models.sessions.backend import choose_backend

    backend = choose_backend()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "faiss": faiss.__version__,
        "faiss_threads": faiss.omp_get_max_threads(),
        "faiss_gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0,
        "backend": backend.backend,
        "backend_reason": backend.reason,
        "commit": _git_commit(),
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, dict):
        return " ".join(f"{k}:{v}" for k, v in value.items())
    return str(value)


def markdown(report: BenchReport) -> str:
    m = report.machine
    lines = [
        f"# {report.title}",
        "",
        (f"{report.created_at} · {m.get('cpu')} · {m.get('cores')} cores · {m.get('memory_gib')} GiB · "
        f"backend {m.get('backend')} · load average at start {m.get('load_average')} · commit {m.get('commit')}"),
        "",
        "| " + " | ".join(report.columns) + " |",
        "|" + "---|" * len(report.columns),
    ]
    for row in report.rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in report.columns) + " |")
    if report.summary:
        lines += ["", "## Summary", ""]
        lines += [f"- **{key}**: {_fmt(value) if not isinstance(value, (list, dict)) else json.dumps(value)}"
                  for key, value in report.summary.items()]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    lines += ["", "## Parameters", "", "```json", json.dumps(report.params, indent=2, default=str), "```", ""]
    return "\n".join(lines)


def plot(report: BenchReport, path: Path) -> None:
    panels = report.plots or [Plot(x=report.columns[0], y=report.columns[-1])]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 4.2), dpi=110, squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        groups: dict[Any, list[dict[str, Any]]] = {}
        for row in report.rows:
            if row.get(panel.x) is None or row.get(panel.y) is None:
                continue
            groups.setdefault(row.get(panel.series) if panel.series else panel.y, []).append(row)
        for label, rows in groups.items():
            rows = sorted(rows, key=lambda r: r[panel.x])
            ax.plot([r[panel.x] for r in rows], [r[panel.y] for r in rows], marker="o", markersize=3,
                    label=str(label))
        for i, (label, value) in enumerate(panel.hlines.items()):
            ax.axhline(value, color=f"C{len(groups) + i}", linestyle="--", linewidth=1, label=label)
        xs = sorted({r[panel.x] for rows in groups.values() for r in rows})
        if panel.logx:
            ax.set_xscale("log")
            if xs and all(isinstance(x, (int, float)) for x in xs):
                ax.set_xticks(xs, [f"{x:,}" if isinstance(x, int) else f"{x:g}" for x in xs])
                ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        if panel.logy:
            ax.set_yscale("log")
        elif groups or panel.hlines:
            ax.set_ylim(bottom=0)
        ax.set_xlabel(panel.x)
        ax.set_ylabel(panel.y)
        ax.set_title(panel.title or f"{panel.y} vs {panel.x}", fontsize=10)
        ax.grid(alpha=0.3)
        if groups or panel.hlines:
            ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(report: BenchReport, out_root: Path) -> list[Path]:
    """Write `<out_root>/<name>/{report.json, report.md, plot.png}` (JSON last written atomically)."""
    out_dir = out_root / report.name
    out_dir.mkdir(parents=True, exist_ok=True)
    if not report.machine:
        report.machine = machine_info()
    if not report.created_at:
        report.created_at = datetime.now(UTC).isoformat(timespec="seconds")
    md_path, png_path, json_path = out_dir / REPORT_MD, out_dir / PLOT_PNG, out_dir / REPORT_JSON
    md_path.write_text(markdown(report), encoding="utf-8")
    plot(report, png_path)
    tmp = json_path.with_name(f".{json_path.name}.tmp")
    tmp.write_text(json.dumps(report.to_json(), indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, json_path)
    return [json_path, md_path, png_path]


def read_report(out_root: Path, name: str) -> dict[str, Any] | None:
    """A report written earlier (e.g. the bare pipeline's, for the HTTP ratios), or None."""
    path = out_root / name / REPORT_JSON
    try:
        report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return report


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0–100, linear interpolation), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 3)
