"""The project's own trained embedder weights: fp16 numpy archives under `models/weights/`, pinned by a
manifest (training data, command, seed, metrics, sha256). No pickle: `np.load(allow_pickle=False)`.

A training run saves into its own folder (`<work dir>/<name>.npz` and a one-entry `manifest.json`); only
`adopt` copies a run into `models/weights/`, so the package holds the weights the project uses, not every run.

A manifest entry may also name an ensemble instead of a file: `"members": [{"name", "weight", "sha256"}]`,
trained entries pinned by their sha256, exported together as one embedder (training/nets/ensemble.py).
An entry may carry a `"cohort"`: the file of livestream crops embedded with those weights (models/cohort.py),
pinned to them by `embedder_source` (what `describe` said when it was made).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.artifacts import copy_atomic, sha256_file
from models.cohort import write_cohort

if TYPE_CHECKING:
    from torch import nn

    from training.nets.efficientnet_lite import EmbeddingNet
    from training.nets.ensemble import EnsembleNet

#: The adopted weights: data beside the run-time model code (`make models` exports them), not code.
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "models" / "weights"
WEIGHTS_MANIFEST = WEIGHTS_DIR / "manifest.json"
RUN_MANIFEST = "manifest.json"


def save_weights(
    model: nn.Module, path: Path, info: dict[str, Any], manifest: Path | None = None
) -> dict[str, Any]:
    """Write the model's parameters and buffers as fp16 and record them in `manifest` (default: the weights
    manifest; a training run passes its own folder's)."""
    state = {
        k: v.detach().cpu().numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")
    }
    arrays = {k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        np.savez_compressed(handle, **arrays)
    tmp.replace(path)
    entry = {**info, "file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    target = manifest or WEIGHTS_MANIFEST
    entries = _read_json(target)
    entries[path.stem] = entry
    _write_manifest(entries, target)
    return entry


def adopt(run_dir: Path) -> list[str]:
    """Copy a training run's weights (verified by sha256) into models/weights/ and record them there."""
    run = _read_json(run_dir / RUN_MANIFEST)
    if not run:
        raise ValueError(f"no trained weights recorded in {run_dir / RUN_MANIFEST}")
    manifest = read_weights_manifest()
    for name, entry in run.items():
        source = run_dir / entry["file"]
        if not source.is_file() or sha256_file(source) != entry["sha256"]:
            raise ValueError(f"{source} is missing or does not match the sha256 in {run_dir / RUN_MANIFEST}")
        copy_atomic(source, WEIGHTS_DIR / entry["file"])
        manifest[name] = entry
    _write_manifest(manifest)
    return sorted(run)


def _read_json(path: Path) -> dict[str, Any]:
    entries: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    return entries


def _write_manifest(manifest: dict[str, Any], path: Path | None = None) -> None:
    """Replace a weights manifest (default: models/weights/'s) atomically (a temp file renamed over it)."""
    target = path or WEIGHTS_MANIFEST
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(target)


def read_weights_manifest() -> dict[str, Any]:
    return _read_json(WEIGHTS_MANIFEST)


def _entry(name: str, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """`name`'s entry of `manifest` (read from disk when not given)."""
    entry: dict[str, Any] | None = (manifest if manifest is not None else read_weights_manifest()).get(name)
    if entry is None:
        raise FileNotFoundError(f"no trained weights named {name!r} in {WEIGHTS_MANIFEST}")
    return entry


def is_ensemble(name: str) -> bool:
    return "members" in _entry(name)


def save_ensemble(name: str, members: list[tuple[str, float]], info: dict[str, Any]) -> dict[str, Any]:
    """Record an ensemble of trained entries (each pinned by its sha256) in the weights manifest."""
    manifest = read_weights_manifest()
    pinned, dim = [], 0
    for member, weight in members:
        entry = manifest.get(member)
        if entry is None or "members" in entry:
            raise ValueError(f"ensemble member {member!r} must be a trained entry of {WEIGHTS_MANIFEST}")
        pinned.append({"name": member, "weight": weight, "sha256": entry["sha256"]})
        dim += int(entry["config"]["dim"])
    entry = {**info, "name": name, "members": pinned, "config": {"dim": dim}}
    manifest[name] = entry
    _write_manifest(manifest)
    return entry


def describe(name: str) -> str:
    """Where the exported weights come from, for the model manifest's `source`."""
    entry = _entry(name)
    if "members" in entry:
        return "ensemble:" + "+".join(f"{m['weight']:g}×{m['name']} sha256 {m['sha256']}" for m in entry["members"])
    return f"{WEIGHTS_DIR.name}/{entry['file']} sha256 {entry['sha256']}"


def save_cohort(name: str, vectors: np.ndarray, info: dict[str, Any]) -> dict[str, Any]:
    """Write `name`'s cohort to models/weights/cohort-<name>.npz and record it under `name`'s entry."""
    description = describe(name)
    path = WEIGHTS_DIR / f"cohort-{name}.npz"
    write_cohort(path, vectors)
    manifest = read_weights_manifest()
    cohort = {
        **info, "file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path),
        "vectors": len(vectors), "dim": int(vectors.shape[1]), "embedder_source": description,
    }
    manifest[name]["cohort"] = cohort
    _write_manifest(manifest)
    return cohort


def cohort_of(name: str) -> tuple[Path, dict[str, Any]] | None:
    """`name`'s verified cohort file and its record; None when it has none (or is "imagenet")."""
    cohort = read_weights_manifest().get(name, {}).get("cohort")
    if cohort is None:
        return None
    if cohort.get("embedder_source") != describe(name):
        raise ValueError(f"the cohort of {name!r} was made with other weights; run `watchbuy cohort` again")
    path = WEIGHTS_DIR / cohort["file"]
    if not path.is_file() or sha256_file(path) != cohort["sha256"]:
        raise ValueError(f"{path} is missing or does not match the sha256 in {WEIGHTS_MANIFEST}")
    return path, cohort


def backbone_of(name: str) -> str:
    """The EfficientNet-Lite variant a single weights entry was trained from ("lite0", "lite1")."""
    return _backbone(_entry(name))


def _backbone(entry: dict[str, Any]) -> str:
    return str(entry.get("config", {}).get("backbone", "lite0"))  # entries before the option were all Lite0


def load_trained(name: str) -> EmbeddingNet | EnsembleNet:
    """Rebuild the trained net (float32) from its verified fp16 archive, or the ensemble of its members."""
    manifest = read_weights_manifest()
    entry = _entry(name, manifest)
    if "members" in entry:
        return _load_ensemble(name, entry, manifest)
    return _load_single(entry)


def _load_ensemble(name: str, entry: dict[str, Any], manifest: dict[str, Any]) -> EnsembleNet:
    from training.nets.ensemble import EnsembleNet

    members = []
    for member in entry["members"]:
        trained = _entry(member["name"], manifest)
        if trained.get("sha256") != member["sha256"]:
            raise ValueError(f"ensemble {name!r}: member {member['name']!r} is not the weights it was made with")
        members.append(_load_single(trained))
    return EnsembleNet(members, [float(m["weight"]) for m in entry["members"]]).eval()


def _load_single(entry: dict[str, Any]) -> EmbeddingNet:
    import torch
    from torch import nn

    from training.nets.efficientnet_lite import BACKBONES, EfficientNetLite, EmbeddingNet

    path = WEIGHTS_DIR / entry["file"]
    if sha256_file(path) != entry["sha256"]:
        raise ValueError(f"{path} does not match the sha256 in {WEIGHTS_MANIFEST}")
    with np.load(path, allow_pickle=False) as archive:
        state = {k: torch.from_numpy(archive[k].astype(np.float32)) for k in archive.files}
    head = nn.Linear(state["head.weight"].shape[1], state["head.weight"].shape[0])
    model = EmbeddingNet(EfficientNetLite(BACKBONES[_backbone(entry)]), head)
    model.load_state_dict(state, strict=False)  # num_batches_tracked counters are not stored
    missing = [k for k in model.state_dict() if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{path} lacks parameters: {missing[:5]}")
    return model.eval()

