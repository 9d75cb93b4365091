"""``diffcrit predict``: data statistics, predictions, data loading and the CLI contract."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import diffcrit
import diffcrit.cli.predict  # noqa: F401  (registers `predict` on the app)
from diffcrit.analysis import predict as library
from diffcrit.models.builtins.patch import PatchModel
from diffcrit.models.datasets import open_data
from diffcrit.report.document import read_document, validate_document
from cli_checks import run

def run_cli(*args: str):
    return run("predict", *args, "--quiet")


def known_covariance_data(n: int = 600, side: int = 6, spike: float = 37.5, seed: int = 0) -> tuple[np.ndarray, float]:
    """(n, 1, side, side) data whose empirical covariance (1/n) is exactly I + (spike - 1) u u^T."""
    rng = np.random.default_rng(seed)
    d = side * side
    z = rng.standard_normal((n, d))
    z -= z.mean(0)
    q, _ = np.linalg.qr(z)  # (n, d) orthonormal, zero-mean columns: (1/n) (sqrt(n) q)^T (sqrt(n) q) = I
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    root = np.eye(d) + (math.sqrt(spike) - 1) * np.outer(u, u)  # symmetric square root of the covariance
    x = math.sqrt(n) * q @ root + 0.25  # an offset: the covariance must subtract the mean
    return x.reshape(n, 1, side, side).astype(np.float64), spike


@pytest.mark.parametrize("limit", [library.COVARIANCE_LIMIT, 8])  # full covariance / block power iteration
def test_top_eigenvalue_of_a_known_covariance(tmp_path, monkeypatch, limit):
    monkeypatch.setattr(library, "COVARIANCE_LIMIT", limit)
    x, spike = known_covariance_data()
    np.save(tmp_path / "x.npy", x)
    result = run_cli("--data", str(tmp_path / "x.npy"), "--batch-size", "128")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["speciation"]["top_eigenvalue"] == pytest.approx(spike, rel=0.01)
    assert doc["speciation"]["t"] == pytest.approx(math.log1p(doc["speciation"]["top_eigenvalue"]))
    assert ("power iteration" in doc["speciation"]["method"]) == (limit == 8)


def test_document_contract(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((10, 8, 8)))
    out = tmp_path / "p.json"
    result = run_cli("--data", str(tmp_path / "x.npy"), "--patch", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == 1 and doc["kind"] == "predict"
    assert doc["created"] and doc["diffcrit_version"]
    assert doc["config"]["patch"] == 3 and doc["config"]["shells"] == 4
    assert doc["data"]["shape"] == [1, 8, 8] and doc["data"]["count"] == 10
    assert len(doc["gaussian"]["stiffness"]) == 50 and len(doc["gaussian"]["stiffness"][0]) == 4
    assert doc["power_spectrum"]["shell"][0] == 0 and "Biroli" in doc["speciation"]["frames"]
    assert validate_document(doc, "predict") == "predict"  # the shipped schema covers it
    assert read_document(out, "predict")["kind"] == "predict"


def test_mixture_speciation_time_is_its_exact_critical_time():
    source = open_data("builtin:mixture?m2=9&size=8")
    grid = library.default_grid(source.shape, steps=5)
    body = library.predict(source, grid)
    assert body["speciation"]["top_eigenvalue"] == pytest.approx(9.0, rel=1e-9)
    assert body["speciation"]["t"] == pytest.approx(math.log(10.0), rel=1e-9)


@pytest.mark.parametrize("p", [3, 5])
def test_patch_prediction_equals_the_patch_models_theory(p):
    model = PatchModel(L=16, p=p, random=3, xi=2.0)
    source = open_data(f"builtin:patch?L=16&p={p}&random=3&xi=2.0")
    grid = library.default_grid(source.shape, steps=8)
    body = library.predict(source, grid, patch=p)
    theory = model.theory(grid.sigmas, grid.probe)
    assert body["patch"]["C_Omega_0"] == pytest.approx(theory["C_Omega_0"], rel=1e-12)
    assert body["patch"]["critical_t"] == pytest.approx(theory["critical_t"], rel=1e-12)
    assert np.allclose(body["patch"]["stiffness"], theory["stiffness"], rtol=1e-10)


def test_gaussian_curves_equal_analyze_on_builtin_gaussian(tmp_path):
    spec = "builtin:gaussian?size=16&xi=3.0"
    measured = diffcrit.analyze(spec, steps=20, samples=2, bootstrap=0)
    measured.to_json(tmp_path / "result.json")
    result = run_cli("--data", spec, "--compare", str(tmp_path / "result.json"))
    assert result.exit_code == 0, result.output
    compare = json.loads(result.stdout)["compare"]
    assert compare["gaussian_max_abs_difference"] < 1e-3
    assert len(compare["gaussian_stiffness"]) == 20


def test_compare_with_another_lattice_is_a_user_error(tmp_path):
    from result_factory import make_analyze_result

    (tmp_path / "r.json").write_text(json.dumps(make_analyze_result(shape=(1, 16, 16))))
    np.save(tmp_path / "x.npy", np.zeros((4, 1, 8, 8)))
    result = run_cli("--data", str(tmp_path / "x.npy"), "--compare", str(tmp_path / "r.json"))
    assert result.exit_code == 2 and "1x16x16" in result.output


def test_image_folder_is_read_in_batches_and_scaled(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5, 12, 12, 3), dtype=np.uint8)
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    source = open_data(str(tmp_path))
    assert source.shape == (3, 12, 12) and source.count == 5
    batch = torch.cat(list(source.batches(2)))
    assert torch.allclose(batch, torch.from_numpy(pixels.transpose(0, 3, 1, 2) / 127.5 - 1).float(), atol=1e-6)


def test_bad_image_and_mixed_sizes_exit_2_with_one_line(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not a png")
    result = run_cli("--data", str(tmp_path))
    assert result.exit_code == 2 and "b.png" in result.output and "Traceback" not in result.output
    (tmp_path / "b.png").unlink()
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(tmp_path / "c.png")
    result = run_cli("--data", str(tmp_path))
    assert result.exit_code == 2 and "c.png" in result.output


@pytest.mark.parametrize("make, message", [
    (lambda d: np.save(d / "x.npy", np.zeros((2, 3))), "expected (N, C, H, W)"),
    (lambda d: np.savez(d / "x.npz", a=np.zeros((2, 4, 4)), b=np.zeros(3)), "name it"),
    (lambda d: (d / "x.txt").write_text("1"), "not a folder"),
])
def test_bad_arrays_are_user_errors(tmp_path, make, message):
    make(tmp_path)
    target = next(tmp_path.iterdir())
    result = run_cli("--data", str(target))
    assert result.exit_code == 2 and message in result.output


def test_bad_patch_side_and_unknown_builtin():
    assert run_cli("--data", "builtin:mixture?size=8", "--patch", "4").exit_code == 2
    result = run_cli("--data", "builtin:nope")
    assert result.exit_code == 2 and "unknown built-in" in result.output


def test_trained_builtin_data_when_scikit_learn_is_there():
    pytest.importorskip("sklearn")  # the [train] extra
    source = open_data("builtin:digits")
    assert source.shape == (1, 16, 16) and source.count == 1797
    body = library.predict(source, library.default_grid(source.shape, steps=5), patch=3)
    assert body["speciation"]["top_eigenvalue"] > 0 and body["patch"]["C_Omega_0"] > 0
