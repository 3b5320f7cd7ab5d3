"""`make demo`: build a stream's index, start the real server, identify labelled clips, print the results.

Run after `make models`; settings come from the `WATCHBUY_*` environment (the Makefile exports them).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from watchbuy.server_process import ServerNotReady, ServerProcess


@dataclass(frozen=True)
class Clip:
    clip_id: str
    product_id: str | None
    frames: list[Path]


@dataclass(frozen=True)
class Outcome:
    clip: Clip
    response: dict[str, Any]
    status: int


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stream", default="viton-dev-00", help="stream id")
    parser.add_argument(
        "--catalogue", type=Path, help="catalogue folder (default: $WATCHBUY_CATALOGUE_ROOT/<stream>)"
    )
    parser.add_argument("--clips", type=int, default=20, help="clips sent to /identify")
    parser.add_argument("--max-frames", type=int, default=32, help="frames sent per clip at most")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for /readyz")
    args = parser.parse_args(argv)
    if args.catalogue is None:
        root = os.environ.get("WATCHBUY_CATALOGUE_ROOT")
        if not root:
            parser.error("no --catalogue given and WATCHBUY_CATALOGUE_ROOT is not set")
        args.catalogue = Path(root) / args.stream
    return args


def build_index(stream: str, catalogue: Path) -> None:
    cmd = [sys.executable, "-m", "watchbuy", "build-index", "--stream", stream, "--catalogue", str(catalogue)]
    subprocess.run(cmd, check=True)


def read_clips(catalogue: Path, limit: int, max_frames: int) -> list[Clip]:
    """Labelled clips from queries.jsonl, or the catalogue's own images when there is none."""
    queries = catalogue / "queries.jsonl"
    source = queries if queries.is_file() else catalogue / "catalogue.jsonl"
    clips: list[Clip] = []
    with source.open(encoding="utf-8") as handle:
        for line in handle:
            if len(clips) >= limit:
                break
            if not line.strip():
                continue
            row = json.loads(line)
            items = row["frames"] if source is queries else row["images"]
            paths = [catalogue / item["path"] for item in items][:max_frames]
            clips.append(Clip(row.get("clip_id", row["product_id"]), row["product_id"], paths))
    return clips


def identify(client: httpx.Client, stream: str, clip: Clip) -> Outcome:
    frames = [
        {"image": base64.b64encode(path.read_bytes()).decode("ascii"), "frame_index": i}
        for i, path in enumerate(clip.frames)
    ]
    response = client.post("/identify", json={"stream_id": stream, "frames": frames, "top_k": 5}, timeout=120)
    try:
        body = response.json()
    except ValueError:
        body = {"raw": response.text[:500]}
    return Outcome(clip, body, response.status_code)


def show_results(console: Console, outcomes: list[Outcome], products: int) -> bool:
    """Print the per-clip table and the summary; True when every request succeeded."""
    table = Table(title="POST /identify")
    for column in ("clip", "true product", "top-1", "score", "hit", "abstain", "boxes", "ms"):
        table.add_column(column, justify="right" if column in ("score", "boxes", "ms") else "left")
    top1 = top5 = labelled = 0
    latencies: list[float] = []
    for out in outcomes:
        if out.status != 200:
            table.add_row(
                out.clip.clip_id, str(out.clip.product_id), f"[red]HTTP {out.status}[/red]", *[""] * 5
            )
            continue
        ranked = [p["product_id"] for p in out.response["products"]]
        best = out.response["products"][0] if ranked else None
        truth, abstain = out.clip.product_id, out.response["abstain"]
        hit = (abstain or not ranked) if truth is None else (ranked[:1] == [truth])
        if truth is not None:
            labelled += 1
            top1 += ranked[:1] == [truth]
            top5 += truth in ranked[:5]
        latencies.append(out.response["timings_ms"]["total"])
        table.add_row(
            out.clip.clip_id,
            str(truth),
            best["product_id"] if best else "—",
            f"{best['score']:.3f}" if best else "",
            "[green]✓[/green]" if hit else "[red]✗[/red]",
            "yes" if abstain else "no",
            str(sum(len(f["boxes"]) for f in out.response["frames"])),
            f"{out.response['timings_ms']['total']:.0f}",
        )
    console.print(table)
    failed = sum(out.status != 200 for out in outcomes)
    rate = (lambda n: f"{n / labelled:.0%} ({n}/{labelled})") if labelled else (lambda n: "n/a")
    median = f"{statistics.median(latencies):.0f} ms" if latencies else "n/a"
    chance = f"{1 / products:.1%} (1/{products})" if products else "n/a"
    console.print(
        f"[bold]top-1 {rate(top1)}  top-5 {rate(top5)}  chance {chance}  "
        f"median latency {median}  failed requests {failed}[/bold]"
    )
    return failed == 0


def show_example(console: Console, outcomes: list[Outcome]) -> None:
    for out in outcomes:
        if out.status == 200:
            example = json.loads(json.dumps(out.response))
            example["frames"] = example["frames"][:1]
            for frame in example["frames"]:
                frame["boxes"] = frame["boxes"][:2]
            console.print(f"example response (clip {out.clip.clip_id}, first frame, first 2 boxes):")
            console.print_json(json.dumps(example))
            return


def run_demo(args: argparse.Namespace, console: Console) -> int:
    build_index(args.stream, args.catalogue)
    clips = read_clips(args.catalogue, args.clips, args.max_frames)
    log_fd, log_name = tempfile.mkstemp(prefix="watchbuy-demo-", suffix=".log")
    os.close(log_fd)
    log_path = Path(log_name)
    with ServerProcess(log_path, stop_timeout_s=10) as server:
        try:
            server.wait_ready(args.ready_timeout)
        except ServerNotReady as exc:
            console.print(f"[red]error:[/red] {exc}")
            return 1
        console.print(f"server ready on port {server.port}; sending {len(clips)} clips of {args.stream}")
        with httpx.Client(base_url=server.base_url) as client:
            info = client.get(f"/streams/{args.stream}", timeout=30)
            info.raise_for_status()
            outcomes = [identify(client, args.stream, clip) for clip in clips]
        ok = show_results(console, outcomes, int(info.json()["products"]))
        show_example(console, outcomes)
        if not ok:
            console.print(f"[red]some requests failed[/red]; server log tail:\n{server.log_tail()}")
            return 1
        log_path.unlink(missing_ok=True)
        return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:  # piped or logged: do not squeeze the table into 80 columns
        console = Console(width=120)
    try:
        return run_demo(args, console)
    except subprocess.CalledProcessError as exc:
        console.print(f"[red]error:[/red] index build failed (exit {exc.returncode})")
        return 1
    except (httpx.HTTPError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("interrupted; server stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
