"""A broad sweep of bad inputs and unsafe outputs across every command (issue 23): each case must be clean.

Clean: exit 2 (130/143 on signals), exactly one non-empty line of output and it starts with "error:", no
traceback, and no file that was there before changed (bytes and mtime of the model folder, the results, the
data and the existing outputs).

    PYTHONPATH=. python bench/sweep_bad_inputs.py [--markdown] [-k SUBSTRING] [--processes-every K]

Runs in one process through Typer's CliRunner, in a scratch folder holding a tiny DDPM pipeline ``m`` (and links
to it), results, data and old outputs. Prints one line per case that is not clean, then the table by class.
``--processes-every K`` also runs every K-th case as its own ``python -m diffcrit`` process (its real stdout and
stderr: what another library prints straight to file descriptor 2 shows there), counted as class "real process".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="sweep-hf-"))  # no case writes the user's hub cache
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

FAST = ["--steps", "4", "--samples", "2", "--bootstrap", "0", "--quiet"]
ANALYZE = ["analyze", *FAST, "--shells", "2", "--directions", "1", "--probe-samples", "1"]
GUIDE = ["guide", *FAST, "--at", "all", "--compare", "none"]
PREDICT = ["predict", "--quiet"]
SMALL = "builtin:mixture?size=8"
HUGE = "9" * 22


def build_workspace(home: Path) -> None:
    """The model, its links, results, data and old outputs the cases must leave untouched."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from result_factory import make_analyze_result
    from tiny_models import save_ddpm_pipeline

    save_ddpm_pipeline(home / "m")
    (home / "mlink").symlink_to(home / "m", target_is_directory=True)
    (home / "link.json").symlink_to(home / "m" / "unet" / "config.json")
    (home / "dangling.json").symlink_to(home / "m" / "unet" / "new.json")
    os.link(home / "m" / "unet" / "diffusion_pytorch_model.safetensors", home / "hard.safetensors")
    os.link(home / "m" / "model_index.json", home / "hard.json")
    result = make_analyze_result(1.5)
    (home / "base.json").write_text(json.dumps(result))
    (home / "cand.json").write_text(json.dumps(result))
    (home / "old.json").write_text("old output")
    (home / "old.png").write_bytes(b"old figure")
    nan_t = json.loads(json.dumps(result))
    nan_t["steps"][0]["t"] = float("nan")
    docs = {"nan.json": json.dumps(nan_t), "deep.json": "[" * 100_000 + "]" * 100_000, "empty.json": "",
            "text.json": "not json", "list.json": "[1, 2]", "v9.json": json.dumps({**result, "schema_version": 9}),
            "kind.json": json.dumps({**result, "kind": "predict"}), "nokey.json": json.dumps({"schema_version": 1}),
            "inf.json": json.dumps({**result, "critical": {**result["critical"], "t": float("inf")}})}
    for name, text in docs.items():
        (home / name).write_text(text)
    (home / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    (home / "docdir").mkdir()
    np.save(home / "complex.npy", np.ones((4, 1, 8, 8)) * (1 + 2j))
    np.save(home / "flat.npy", np.ones(10))
    np.save(home / "nan.npy", np.full((4, 1, 8, 8), np.nan))
    np.save(home / "strings.npy", np.array(["a", "b"]))
    np.save(home / "good.npy", np.random.default_rng(0).standard_normal((8, 1, 8, 8)))
    (home / "empty_folder").mkdir()
    (home / "notes.txt").write_text("notes")
    for name, (file, change) in {"steps_text": ("scheduler/scheduler_config.json", {"num_train_timesteps": "lots"}),
                                 "negative_size": ("unet/config.json", {"sample_size": -4}),
                                 "bad_class": ("unet/config.json", {"_class_name": "NoSuchModel"}),
                                 "bad_scheduler": ("scheduler/scheduler_config.json", {"_class_name": "Nope"})
                                 }.items():
        shutil.copytree(home / "m", home / name)
        config = json.loads((home / name / file).read_text())
        (home / name / file).write_text(json.dumps({**config, **change}))
    shutil.copytree(home / "m", home / "other_weights")
    save_file({"foo": torch.zeros(3)}, str(home / "other_weights" / "unet" / "diffusion_pytorch_model.safetensors"))
    shutil.copytree(home / "m", home / "no_weights")
    (home / "no_weights" / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (home / "tol.yaml").write_text("check: [1, 2\n")
    configs = {"cfg_type.yaml": "analyze:\n  steps: many\n", "cfg_range.yaml": "analyze:\n  steps: 1\n",
               "cfg_unknown.yaml": "analyze:\n  batch_size: 4\n", "cfg_config.yaml": "analyze:\n  config: x.yaml\n",
               "cfg_list.yaml": "analyze: [1, 2]\n", "cfg_section.yaml": "analyse:\n  steps: 4\n",
               "cfg_broken.yaml": "analyze: [1, 2\n", "cfg_inf.yaml": "analyze:\n  fd-step: .inf\n",
               "cfg_switch.yaml": "analyze:\n  offline: maybe\n", "cfg_guide.yaml": "guide:\n  base: nowhere\n",
               "cfg_top.yaml": "[1, 2]\n", "cfg_empty.yaml": ""}
    for name, text in configs.items():
        (home / name).write_text(text)
    (home / "imgs" / "critical").mkdir(parents=True)  # another run's samples: seeds this run does not draw
    (home / "imgs" / "critical" / "000099.png").write_bytes(b"another run's sample")


def cases() -> list[tuple[str, list[str]]]:
    """(class, argv) for every case."""
    model_files = ["m/model_index.json", "m/unet/config.json", "m/scheduler/scheduler_config.json",
                   "m/unet/diffusion_pytorch_model.safetensors", "m/new.json", "m/unet/new.png", "mlink/x.json",
                   "mlink/unet/config.json", "link.json", "dangling.json", "hard.json", "hard.safetensors", "m",
                   "m/unet", "mlink", "m/./unet/../model_index.json", "./m/unet/config.json"]
    out: list[tuple[str, list[str]]] = []
    add = out.append
    # 1. outputs that are, or lie inside, the model folder: every output option of every command
    for target in model_files:
        for model in ("m", "mlink", "m/"):
            add(("output in the model folder: analyze --out", [*ANALYZE, "-m", model, "--out", target]))
        add(("output in the model folder: analyze --plot", [*ANALYZE, "-m", "m", "--plot", target]))
        add(("output in the model folder: analyze --save-samples", [*ANALYZE, "-m", "m", "--save-samples", target]))
        add(("output in the model folder: analyze --save-states", [*ANALYZE, "-m", "m", "--save-states", target]))
        add(("output in the model folder: guide", [*GUIDE, "-m", "m", "--out", target]))
        add(("output in the model folder: guide", [*GUIDE, "-m", "m", "--save-samples", target]))
        add(("output in the model folder: guide", [*GUIDE, "-m", "m", "--save-images", target]))
        for option in ("--save-candidate", "--report", "--junit"):
            add(("output in the model folder: check --model", ["check", "-b", "base.json", "--model", "m", option,
                                                               target]))
        add(("output in the model folder: predict --data", [*PREDICT, "--data", "m", "--out", target]))
    for folder in (".", "..", "/"):
        add(("output folder holding an input", [*ANALYZE, "-m", "m", "--save-states", folder]))
        add(("output folder holding an input", [*GUIDE, "-m", "m", "--save-images", folder]))
    # 2. outputs that are another input or another output
    for option, doc in (("--out", "base.json"), ("--out", "cand.json")):
        add(("output is an input", [*GUIDE, "-m", "builtin:digits", "--critical-from", doc, option, doc]))
        add(("output is an input", [*PREDICT, "--data", SMALL, "--compare", doc, option, doc]))
    for option in ("--report", "--junit"):
        for doc in ("base.json", "cand.json", "tol.yaml"):
            add(("output is an input", ["check", "cand.json", "-b", "base.json", "-c", "tol.yaml", option, doc]))
    add(("output is an input", ["plot", "base.json", "-o", "base.json"]))
    add(("output is an input", [*ANALYZE, "-m", SMALL, "--prompt-embeds", "old.json", "--out", "old.json"]))
    for a, b in (("--out", "--save-samples"), ("--out", "--plot"), ("--plot", "--save-samples")):
        add(("two outputs, one file", [*ANALYZE, "-m", SMALL, a, "x.safetensors", b, "x.safetensors"]))
    add(("two outputs, one file", [*ANALYZE, "-m", SMALL, "--save-states", "d", "--out", "d/index.json"]))
    add(("two outputs, one file", [*ANALYZE, "-m", SMALL, "--save-states", "s.npy", "--out", "s.npy.json"]))
    add(("two outputs, one file", [*GUIDE, "-m", "builtin:digits", "--save-images", "g", "--out", "g/all.png"]))
    add(("two outputs, one file", ["check", "cand.json", "-b", "base.json", "--report", "r", "--junit", "r"]))
    # 3. outputs checked before the work: an existing --out stays as it was when a later output is bad
    for bad in (["--plot", "p.xyz"], ["--plot", "p.gif"], ["--plot", "p"], ["--plot", "old.json"],
                ["--plot", "missing/p.png"], ["--plot", "docdir"], ["--save-samples", "s.npy"],
                ["--save-samples", "missing/s.safetensors"], ["--save-samples", "docdir"],
                ["--save-states", "notes.txt"], ["--save-states", "empty_folder/../m"], ["--save-states", "docdir/x/"
                                                                                         "../../m"],
                ["--save-states", "old.json"], ["--out", "a" * 300 + ".json"], ["--plot", "b" * 300 + ".png"]):
        add(("later output refused, old output kept", [*ANALYZE, "-m", SMALL, "--out", "old.json", *bad]))
    for bad in (["--save-samples", "missing/s.safetensors"], ["--save-samples", "s.npy"],
                ["--save-images", "old.png"], ["--out", "missing/g.json"]):
        add(("later output refused, old output kept", [*GUIDE, "-m", "builtin:digits", "--out", "old.json", *bad]))
    for bad in (["--report", "missing/r.md"], ["--junit", "docdir"], ["--save-candidate", "x.json"]):
        add(("later output refused, old output kept", ["check", "cand.json", "-b", "base.json", "--report",
                                                      "old.json", *bad]))
    for bad in ("p.xyz", "p.gif", "missing/p.png", "docdir", "c" * 300 + ".svg"):
        add(("later output refused, old output kept", ["plot", "base.json", "-o", bad]))
    # 4. counts and numbers
    numbers = {"--steps": ["-1", "0", "1", HUGE, "1000001"], "--samples": ["0", "-3", "1000000000000"],
               "--seed": ["-1", HUGE], "--batch-size": ["0", "-1"], "--shells": ["0", "1", "100"],
               "--directions": ["0"], "--probe-samples": ["0"], "--bootstrap": ["-1"], "--clones": ["-1"],
               "--fd-step": ["0", "1e-9", "-1", "2", "nan", "inf"], "--sigma-min": ["0", "-1", "nan", "100"],
               "--sigma-max": ["1e400", "nan", "0"], "--rho": ["nan", "0", "-1", "inf"], "--churn": ["-1", "nan"],
               "--guidance-scale": ["0", "nan", "inf"], "--probe-every": ["0"], "--decision-shell": ["-1", "9"],
               "--height": ["0"], "--width": ["-8"]}
    for option, values in numbers.items():
        for value in values:
            add(("counts and numbers: analyze", [*ANALYZE, "-m", SMALL, option, value]))
    for option, values in {"--steps": ["1", HUGE], "--samples": ["0"], "--seed": ["-1", HUGE],
                           "--scale": ["1", "0", "nan", "inf"], "--width": ["0", "nan", "inf"],
                           "--batch-size": ["0"], "--analyze-samples": ["0"], "--bootstrap": ["-1"]}.items():
        for value in values:
            add(("counts and numbers: guide", [*GUIDE, "-m", "builtin:digits", option, value]))
    for option, values in {"--steps": ["1", HUGE], "--rho": ["nan", "0"], "--sigma-max": ["1e400", "nan"],
                           "--sigma-min": ["-1", "0"], "--shells": ["1", "100"], "--directions": ["0"],
                           "--patch": ["2", "0", "-1", "99"]}.items():
        for value in values:
            add(("counts and numbers: predict", [*PREDICT, "--data", SMALL, option, value]))
    for option, values in {"--draws": ["1", "100000000000"], "--seed": [HUGE]}.items():
        for value in values:
            add(("counts and numbers: predict", [*PREDICT, "--data", "builtin:gaussian?size=8", option, value]))
    for value in ("100000", "101"):
        add(("counts and numbers: steps beyond the scheduler", [*ANALYZE, "-m", "m", "--steps", value]))
    # 5. text where a number or choice is wanted (the parser)
    for option in ("--steps", "--samples", "--seed", "--fd-step", "--guidance-scale", "--shells"):
        add(("parser errors", [*ANALYZE, "-m", SMALL, option, "abc"]))
    for argv in (["analyze", "--no-such-option"], ["analyze", "--steps"], ["nosuchcommand"], ["plot"],
                 ["check", "cand.json"], ["predict"], ["guide"], ["plot", "base.json"], ["models", "--json", "x"],
                 ["guide", "-m", "builtin:digits", "--scale", "x"], ["predict", "-d", SMALL, "--patch", "x"]):
        add(("parser errors", argv))
    for option, value in (("--probe", "magic"), ("--linearize-at", "nowhere"), ("--probe-schedule", "never"),
                          ("--device", "tpu"), ("--dtype", "float8"), ("--scheduler", "NoSuchScheduler"),
                          ("--prediction-type", "noise")):
        add(("choices", [*ANALYZE, "-m", "m" if option in ("--scheduler", "--prediction-type") else SMALL, option,
                         value]))
    for option, value in (("--at", "sometimes"), ("--at", "3:1"), ("--compare", "random,bogus"), ("--compare", ","),
                          ("--classes", "a,b"), ("--classes", "99"), ("--class-label", "99"),
                          ("--label-map", "3=x"), ("--label-map", "missing.json")):
        add(("choices", [*GUIDE, "-m", "builtin:digits", option, value]))
    # 6. models that are not there or not models
    for model in ("missing", "./missing", "/nonexistent/model", "owner", "a/b/c", "builtin:nosuch",
                  "builtin:mixture?nosuch=1", "builtin:mixture?size=x", "builtin:mixture?size=0",
                  "builtin:mixture?m2=nan", "builtin:mixture?size=32&size=16", "builtin:gaussian?xi=-1",
                  "builtin:digits?size=3", "notes.txt", "empty_folder", "base.json", "docdir", "steps_text",
                  "negative_size", "bad_class", "bad_scheduler", "other_weights", "no_weights"):
        add(("models that are not models", [*ANALYZE, "-m", model]))
    for model in ("missing", "builtin:nosuch", "empty_folder", "m", "builtin:mixture?size=8"):
        add(("models that are not models", [*GUIDE, "-m", model]))
    # 7. documents diffcrit never wrote
    for doc in ("missing.json", "docdir", "empty.json", "text.json", "list.json", "v9.json", "kind.json",
                "nokey.json", "nan.json", "deep.json", "binary.json", "inf.json", "good.npy"):
        add(("documents diffcrit never wrote", ["check", doc, "-b", "base.json"]))
        add(("documents diffcrit never wrote", ["check", "cand.json", "-b", doc]))
        add(("documents diffcrit never wrote", ["plot", doc, "-o", "f.png"]))
        add(("documents diffcrit never wrote", [*GUIDE, "-m", "builtin:digits", "--critical-from", doc]))
        add(("documents diffcrit never wrote", [*PREDICT, "--data", SMALL, "--compare", doc]))
    for config in ("tol.yaml", "missing.yaml", "docdir", "binary.json"):
        add(("documents diffcrit never wrote", ["check", "cand.json", "-b", "base.json", "-c", config]))
    # 8. data that is not data
    for data in ("missing", "complex.npy", "flat.npy", "nan.npy", "strings.npy", "empty_folder", "notes.txt",
                 "builtin:nosuch", "builtin:mixture?m2=-1", "builtin:mixture?m2=2&m2=3"):
        add(("data that is not data", [*PREDICT, "--data", data]))
    # 9. options that do not apply
    for extra in (["--guidance-scale", "3"], ["--sigma-min", "0.01"], ["--sigma-max", "10"], ["--rho", "3"],
                  ["--churn", "0.5"], ["--class-label", "1"], ["--prompt", "a cat"], ["--negative-prompt", "x"]):
        add(("options that do not apply", [*ANALYZE, "-m", "m", *extra]))
    for extra in (["--scheduler", "DDIMScheduler"], ["--prediction-type", "epsilon"], ["--guidance-scale", "3"],
                  ["--class-label", "1"], ["--prompt", "x"], ["--prompt-embeds", "old.json"]):
        add(("options that do not apply", [*ANALYZE, "-m", SMALL, *extra]))
    for extra in (["--draws", "10"], ["--seed", "1"]):
        for data in (SMALL, "good.npy", "builtin:digits"):
            add(("options that do not apply", [*PREDICT, "--data", data, *extra]))
    for extra in (["--at", "all"], ["--compare", "none"], ["--save-images", "g"], ["--save-samples", "s.safetensors"],
                  ["--classifier", "m"]):
        add(("options that do not apply", ["guide", "-m", "builtin:digits", "--suggest", *extra]))
    add(("options that do not apply", ["check", "cand.json", "-b", "base.json", "--save-candidate", "c.json"]))
    add(("options that do not apply", ["check", "cand.json", "-b", "base.json", "--device", "cpu"]))
    add(("options that do not apply", ["check", "cand.json", "-b", "base.json", "--model", "m"]))
    # 10. the ecosystem's options: config files, trackers, devices, per-sample images, reproduce's ranges
    for config in ("cfg_type.yaml", "cfg_range.yaml", "cfg_unknown.yaml", "cfg_config.yaml", "cfg_list.yaml",
                   "cfg_section.yaml", "cfg_broken.yaml", "cfg_inf.yaml", "cfg_switch.yaml", "cfg_top.yaml",
                   "missing.yaml", "docdir", "binary.json", "m/model_index.json"):
        add(("ecosystem: config files", [*ANALYZE, "-m", SMALL, "--config", config]))
    for config in ("cfg_guide.yaml", "cfg_broken.yaml", "missing.yaml"):
        add(("ecosystem: config files", [*GUIDE, "-m", "builtin:digits", "--config", config]))
    for extra in (["--report-to", "bogus"], ["--report-to", "wandb"], ["--report-to", "tensorboard"],
                  ["--logging-dir", "runs"], ["--report-to", ""], ["--report-to", "tensorboard,bogus"]):
        add(("ecosystem: trackers", [*ANALYZE, "-m", SMALL, *extra]))
        add(("ecosystem: trackers", [*GUIDE, "-m", "builtin:digits", *extra]))
    for folder in ("m", "m/unet", ".", "old.json", "mlink"):
        add(("ecosystem: trackers", [*ANALYZE, "-m", "m", "--report-to", "tensorboard", "--logging-dir", folder]))
    add(("ecosystem: trackers", ["guide", "-m", "builtin:digits", "--suggest", "--report-to", "tensorboard",
                                 "--logging-dir", "runs"]))
    for device in ("cuda:0", "cuda:x", "cuda:-1", "mps", "cuda:99", "gpu"):
        add(("ecosystem: devices", [*ANALYZE, "-m", SMALL, "--device", device]))
        add(("ecosystem: devices", [*GUIDE, "-m", "builtin:digits", "--device", device]))
    add(("ecosystem: per-sample images", [*GUIDE, "-m", "builtin:digits", "--samples", "2", "--save-images", "imgs"]))
    for seed in ("-1", HUGE, "x"):
        add(("ecosystem: reproduce ranges", ["reproduce", "--quick", "--quiet", "--seed", seed]))
    return out


def snapshot(home: Path) -> dict:
    """Every file (links not followed) -> (bytes or link target, mtime)."""
    state = {}
    for path in sorted(home.rglob("*")):
        if path.is_symlink():
            state[str(path)] = ("link", os.readlink(path))
        elif path.is_file():
            state[str(path)] = (path.read_bytes(), path.stat().st_mtime_ns)
    return state


INPUT_FOLDERS = ("m", "steps_text", "negative_size", "bad_class", "bad_scheduler", "other_weights", "no_weights",
                 "docdir", "empty_folder")


def verdict(result, before: dict, after: dict, home: Path) -> str:
    """'' when clean, else why not."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    changed = sorted(k for k in before if before[k] != after.get(k))
    if changed:
        return f"changed {changed[:3]}"
    added = sorted(k for k in set(after) - set(before) if Path(k).relative_to(home).parts[0] in INPUT_FOLDERS)
    if added:
        return f"added {added[:3]} inside an input folder"
    if "Traceback" in result.output or (result.exception and not isinstance(result.exception, SystemExit)):
        return f"traceback {type(result.exception).__name__}: {str(result.exception)[:120]}"
    if result.exit_code != 2:
        return f"exit {result.exit_code}"
    if len(lines) != 1 or not lines[0].startswith("error:"):
        return f"{len(lines)} lines: {' | '.join(lines)[:200]}"
    return ""


class _Done:
    """A finished process in CliRunner's terms, for ``verdict``."""

    def __init__(self, done):
        self.output, self.exit_code, self.exception = done.stdout + done.stderr, done.returncode, None


def run_process(argv: list[str], home: Path) -> _Done:
    import subprocess

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    return _Done(subprocess.run([sys.executable, "-m", "diffcrit", *argv], cwd=home, env=env, capture_output=True,
                                text=True, timeout=600))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-k", default="", help="only cases whose class or argv holds this")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--processes-every", type=int, default=0, help="also run every K-th case as a process")
    args = parser.parse_args()

    from typer.testing import CliRunner

    from diffcrit.cli import app

    runner = CliRunner()
    home = Path(tempfile.mkdtemp(prefix="sweep-"))
    build_workspace(home)
    os.chdir(home)
    counts: Counter = Counter()
    clean: Counter = Counter()
    selected = [(k, a) for k, a in cases() if args.k in k or args.k in " ".join(a)]
    if args.processes_every > 0:
        selected += [("real process", argv) for _, argv in selected[::args.processes_every]]
    for kind, argv in selected:
        before, names = snapshot(home), set(home.rglob("*"))
        result = run_process(argv, home) if kind == "real process" else runner.invoke(app, argv)
        after = snapshot(home)
        why = verdict(result, before, after, home)
        counts[kind] += 1
        if why:
            print(f"NOT CLEAN [{kind}] diffcrit {' '.join(a[:60] for a in argv)}\n    {why}", flush=True)
        else:
            clean[kind] += 1
        for path in sorted(set(home.rglob("*")) - names, reverse=True):  # what a case made: gone before the next
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    shutil.rmtree(home, ignore_errors=True)
    rows = [(kind, counts[kind], clean[kind]) for kind in counts]
    total, total_clean = sum(counts.values()), sum(clean.values())
    if args.markdown:
        print("| class | cases | clean | not clean |\n|---|---:|---:|---:|")
        for kind, n, c in rows:
            print(f"| {kind} | {n} | {c} | {n - c} |")
        print(f"| **all** | **{total}** | **{total_clean}** | **{total - total_clean}** |")
    else:
        for kind, n, c in rows:
            print(f"{kind:55s} {n:4d} {c:4d}")
        print(f"{'all':55s} {total:4d} {total_clean:4d}")
    return 0 if total == total_clean else 1


if __name__ == "__main__":
    sys.exit(main())
