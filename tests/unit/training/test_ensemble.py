"""Ensembles of trained weights: recorded in the weights manifest with their members pinned, rebuilt as
one net whose similarity is the weighted mean of the members' cosines, and exported as one ONNX."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training import trained  # noqa: E402 - after the torch check
from training.cli import ensemble_main  # noqa: E402 - after the torch check
from training.export import export_embedder  # noqa: E402 - after the torch check
from training.nets.ensemble import EnsembleNet  # noqa: E402 - after the torch check
from training.train import TrainConfig, build_model  # noqa: E402 - after the torch check


@pytest.fixture
def weights_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two small trained entries ("a": 16-d, "b": 8-d) in a weights manifest of their own."""
    monkeypatch.setattr(trained, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(trained, "WEIGHTS_MANIFEST", tmp_path / "manifest.json")
    for name, dim, seed in (("a", 16, 0), ("b", 8, 1)):
        torch.manual_seed(seed)
        model = build_model(TrainConfig(datasets=(), val_streams=(), dim=dim)).eval()
        trained.save_weights(model, tmp_path / f"{name}.npz", {"config": {"dim": dim}})
    return tmp_path


def test_ensemble_scores_are_the_weighted_mean_of_member_cosines(weights_dir: Path) -> None:
    assert ensemble_main(["ab", "a=1", "b=0.5"]) == 0
    entry = json.loads((weights_dir / "manifest.json").read_text())["ab"]
    assert entry["config"]["dim"] == 24 and [m["name"] for m in entry["members"]] == ["a", "b"]
    assert trained.is_ensemble("ab") and not trained.is_ensemble("a")

    net = trained.load_trained("ab")
    assert isinstance(net, EnsembleNet)
    a, b = trained.load_trained("a"), trained.load_trained("b")
    x, y = torch.rand(3, 3, 224, 224), torch.rand(3, 3, 224, 224)
    with torch.no_grad():
        got = (net(x) * net(y)).sum(1)
        cos_a, cos_b = (a(x) * a(y)).sum(1), (b(x) * b(y)).sum(1)
    torch.testing.assert_close(got, (1.0 * cos_a + 0.5 * cos_b) / 1.5, atol=1e-5, rtol=0)

    import onnxruntime as ort

    path = export_embedder(weights_dir / "embedder.onnx", net)
    (out,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})
    np.testing.assert_allclose(out, net(x).detach().numpy(), atol=1e-4)


def test_ensemble_refuses_changed_members_and_bad_specs(weights_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert ensemble_main(["ab", "a=1", "b=1"]) == 0
    # a member retrained (new file, new sha256 in its entry) is not the member the ensemble was made with
    torch.manual_seed(7)
    trained.save_weights(build_model(TrainConfig(datasets=(), val_streams=(), dim=8)).eval(),
                         weights_dir / "b.npz", {"config": {"dim": 8}})
    with pytest.raises(ValueError, match="not the weights it was made with"):
        trained.load_trained("ab")

    assert ensemble_main(["nested", "ab=1", "a=1"]) == 1
    assert "must be a trained entry" in capsys.readouterr().err
    assert ensemble_main(["nope", "missing=1"]) == 1
    with pytest.raises(SystemExit):
        ensemble_main(["bad", "a=0"])
    with pytest.raises(SystemExit):
        ensemble_main(["bad", "a"])
    with pytest.raises(ValueError, match="cannot be fine-tuned"):
        build_model(TrainConfig(datasets=(), val_streams=(), init="ab"))
