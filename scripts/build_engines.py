"""`make engines`: build the TensorRT FP16 engines of the verified model files, cached on disk.

Engines go to `WATCHBUY_MODEL_DIR/engines/<role>-<sha256[:16]>-<gpu>-trt<version>.engine`; an engine
already there for this model, GPU and TensorRT version is kept (`--force` rebuilds). The service
builds a missing engine at start-up too (before /readyz turns 200), so running this first only moves
that wait out of the deployment. Exit status 2 when TensorRT cannot run here (no GPU, or the `.[gpu]`
extra is not installed).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.artifacts import SPECS, ModelArtifactError, read_manifest, verify_file
from models.sessions.trt import (
    DEFAULT_MAX_BATCH,
    ENGINE_DIR_NAME,
    TensorRTError,
    build_engine,
    engine_path,
    probe,
)
from watchbuy.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="rebuild even when a cached engine exists")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, help="largest batch of dynamic inputs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    found = probe()
    if not found.available:
        print(found.refusal("build TensorRT engines"), file=sys.stderr)
        return 2
    settings = get_settings()
    try:
        records = read_manifest(settings.model_dir)
        for role in SPECS:
            record = records[role]
            onnx = verify_file(settings.model_dir, record)
            target = engine_path(settings.model_dir / ENGINE_DIR_NAME, role, record.sha256,
                                 found.gpu_name or "gpu", found.trt_version or "unknown")
            if target.is_file() and not args.force:
                print(f"{role:9s} cached  {target}")
                continue
            began = time.perf_counter()
            build_engine(onnx, target, max_batch=args.max_batch)
            print(f"{role:9s} built   {target} ({target.stat().st_size / 2**20:.1f} MiB, "
                  f"{time.perf_counter() - began:.0f} s)")
    except (ModelArtifactError, TensorRTError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"engines ready for {found.gpu_name}, TensorRT {found.trt_version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
