"""Two CPU processes (torchrun, gloo) give the single-process document (docs/design.md §9 seeds).

Samples are split 2/2 and the probe points 0..2 straddle the ranks, so the per-step merges
(structure-factor sums, probe points, direction-split gains) and the final gathers are all exercised.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.torch import load_file

from diffcrit.distributed import Ranks
from cli_checks import run

ARGS = ["--steps", "12", "--samples", "4", "--probe-samples", "3", "--directions", "2", "--shells", "3",
        "--bootstrap", "20", "--probe-schedule", "auto", "--clones", "2", "--quiet"]


def _close(a, b, tol, path="document"):
    """Every number equal within tol (relative above 1), every other value equal."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _close(a[key], b[key], tol, f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, tol, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert abs(a - b) <= tol * max(1.0, abs(a)), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _torchrun(args, cwd, command_name="analyze"):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "diffcrit", command_name, *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_processes_write_the_single_process_document(tmp_path):
    import torch
    from test_forward_backward import SignClassifier

    model = "builtin:mixture?size=8&m2=6"
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
    classifier = tmp_path / "sign.pt"  # with a classifier: the clones' classes and the forward-backward regenerations
    torch.jit.save(torch.jit.script(SignClassifier()), str(classifier))
    args = [*ARGS, "--classifier", str(classifier)]
    outputs = ["--out", "r.json", "--save-samples", "s.safetensors", "--save-states", "states"]
    single = run("analyze", "--model", model, *args,
                 *[one / o if not o.startswith("--") else o for o in outputs])
    assert single.exit_code == 0, single.output
    loud = [a for a in args if a != "--quiet"]  # rank 0 alone may talk on stderr
    done = _torchrun(["--model", model, *loud, *outputs], two)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == ""  # rank 0 wrote --out; nobody printed data
    assert done.stderr.count("wrote r.json") == 1  # only rank 0 talks

    expected, got = json.loads((one / "r.json").read_text()), json.loads((two / "r.json").read_text())
    assert got["environment"]["distributed"] == {"processes": 2, "backend": "gloo"}
    assert expected["critical"]["markers"]["decision"] and expected["probe"]["schedule"]["refined_steps"]
    _close(expected["steps"], got["steps"], 1e-6, "steps")
    _close(expected["critical"], got["critical"], 1e-6, "critical")
    _close(expected["transition"], got["transition"], 1e-6, "transition")
    assert got["probe"] == expected["probe"]
    assert expected["clones"]["branch_steps"] == [3, 7]  # clone noise is per sample: the split changes nothing
    _close(expected["clones"], got["clones"], 1e-6, "clones")
    assert len(expected["clones"]["forward_backward"]["keep_rate"]) == 2

    samples = [load_file(str(f / "s.safetensors"))["samples"] for f in (one, two)]
    np.testing.assert_array_equal(samples[0].numpy(), samples[1].numpy())
    for name in ("step_0000.safetensors", "step_0011.safetensors"):
        a, b = (load_file(str(f / "states" / name)) for f in (one, two))
        assert a["y"].shape == (4, 1, 8, 8)
        np.testing.assert_array_equal(a["y"].numpy(), b["y"].numpy())
        np.testing.assert_array_equal(a["denoised"].numpy(), b["denoised"].numpy())


# Each rank r holds r + 1 complex rows (rank 1: 2 rows, rank 0: 1) of r + i*(row index): the gathers must put them in
# rank order, drop the padding and keep the imaginary parts.
_GATHERS = """
import json, sys, torch
from diffcrit.distributed import current
ranks = current("cpu")
r = ranks.rank
rows = torch.stack([torch.full((2,), complex(r, i)) for i in range(r + 1)]).to(torch.complex64)
gathered = ranks.all_rows(rows)
summed = ranks.all_sum(torch.tensor([1 + 2j, r + 0j]))
objects = ranks.all_objects({"rank": r})
flags = [ranks.any(r == 1), ranks.any(False)]
if r == 0:
    json.dump({"rows": [[z.real, z.imag] for z in gathered[:, 0].tolist()], "cols": gathered.shape[1],
               "dtype": str(gathered.dtype), "sum": [[z.real, z.imag] for z in summed.tolist()],
               "objects": objects, "any": flags}, open(sys.argv[1], "w"))
ranks.state.destroy_process_group()  # both ranks leave together (else gloo may abort the one that ends first)
"""


@pytest.mark.slow
def test_two_processes_gather_uneven_complex_rows(tmp_path):
    """all_rows of 1 and 2 complex rows, all_sum of complex values, all_objects and any, under torchrun (gloo)."""
    script, out = tmp_path / "gathers.py", tmp_path / "out.json"
    script.write_text(_GATHERS)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["rows"] == [[0, 0], [1, 0], [1, 1]] and got["cols"] == 2 and got["dtype"] == "torch.complex64"
    assert got["sum"] == [[2, 4], [1, 0]]
    assert got["objects"] == [{"rank": 0}, {"rank": 1}]
    assert got["any"] == [True, False]


def test_one_process_ranks_are_identities():
    import torch

    ranks = Ranks()
    assert (ranks.rank, ranks.world, ranks.is_main) == (0, 1, True)
    assert ranks.split(5) == range(5)
    x = torch.randn(3, 2, dtype=torch.complex128)
    assert ranks.all_sum(x) is x and ranks.all_rows(x) is x and ranks.all_objects(7) == [7]
    assert ranks.any(False) is False and ranks.any(True) is True


@pytest.mark.slow
def test_two_processes_guide_like_one(tmp_path):
    """guide under torchrun: samples split 3/2 over the ranks, same arms, scores and statistics."""
    args = ["--model", "builtin:digits", "--at", "0.9:1.5", "--compare", "random,none", "--samples", "5",
            "--steps", "8", "--bootstrap", "50", "--classes", "1,7", "--quiet", "--out", "g.json",
            "--save-samples", "s.safetensors"]
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
    single = run("guide", *[one / a if a in ("g.json", "s.safetensors") else a for a in args])
    assert single.exit_code == 0, single.output
    done = _torchrun(args, two, "guide")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == ""
    expected, got = json.loads((one / "g.json").read_text()), json.loads((two / "g.json").read_text())
    assert got["environment"]["distributed"]["processes"] == 2
    for key in ("arms", "comparisons"):
        _close(expected[key], got[key], 1e-5, key)
    a, b = load_file(str(one / "s.safetensors")), load_file(str(two / "s.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), atol=1e-5)
