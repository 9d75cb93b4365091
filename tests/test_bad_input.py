"""Bad input that used to reach deep code (a traceback) or pass silently: one line, exit 2."""

from __future__ import annotations

import shutil

import pytest

import diffcrit
from diffcrit.config import make_config
from diffcrit.errors import ConditioningError, UserError
from cli_checks import RUN_SIZE, one_line_error, run

FAST = {"analyze": RUN_SIZE, "guide": RUN_SIZE, "predict": ["--quiet"]}
SMALL = "builtin:mixture?size=8"


CASES = [
    (["analyze", "-m", SMALL, "--seed", "-1"], ["'--seed'", "greater than or equal to 0"]),
    (["guide", "-m", "builtin:digits", "--at", "all", "--seed", "-1"], ["'--seed'", "greater than or equal to 0"]),
    (["analyze", "-m", SMALL, "--shells", "100"], ["cannot probe 100 shells", "8x8 field", "--shells 7 or fewer"]),
    (["predict", "-d", SMALL, "--shells", "100"], ["cannot probe 100 shells", "8x8 field", "--shells 7 or fewer"]),
    (["analyze", "-m", "builtin:mixture?size=3"], ["cannot probe 4 shells", "3x3 field", "--shells 2 or fewer"]),
    (["analyze", "-m", "builtin:mixture?m2=-4"], ["builtin:mixture option m2=-4.0", "a finite number > 0"]),
    (["analyze", "-m", "builtin:mixture?m2=nan"], ["builtin:mixture option m2=nan", "a finite number > 0"]),
    (["predict", "-d", "builtin:mixture?m2=-4"], ["builtin:mixture option m2=-4.0", "a finite number > 0"]),
    (["analyze", "-m", "builtin:mixture?size=0"], ["builtin:mixture option size=0", "an integer >= 2"]),
    (["analyze", "-m", "builtin:mixture?channels=0"], ["builtin:mixture option channels=0", "an integer >= 1"]),
    (["analyze", "-m", "builtin:gaussian?xi=-1"], ["builtin:gaussian option xi=-1.0", "a finite number >= 0"]),
    (["analyze", "-m", "builtin:gaussian?variance=0"], ["builtin:gaussian option variance=0.0", "a finite number > 0"]),
    (["analyze", "-m", "builtin:patch?xi=nan"], ["builtin:patch", "xi"]),
    (["analyze", "-m", SMALL, "--class-label", "3"], ["builtin:mixture?size=8 is not class-conditional",
                                                      "drop --class-label"]),
    (["analyze", "-m", SMALL, "--prompt", "a cat"], ["takes no prompt", "drop --prompt"]),
    (["analyze", "-m", SMALL, "--rho", "nan"], ["--rho"]),
    (["analyze", "-m", SMALL, "--sigma-max", "inf"], ["--sigma-max"]),
    (["guide", "-m", "builtin:digits", "--at", "all", "--scale", "inf"], ["--guidance-scale", "finite"]),
]


@pytest.mark.parametrize("args,fragments", CASES, ids=[" ".join(args) for args, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(args, fragments):
    result = run(*args, *FAST[args[0]])
    one_line_error(result, *fragments)
    assert "--dtype" not in result.output  # a parameter error, not the NaN checkpoint's hint


def test_the_python_api_validates_the_same_values():
    with pytest.raises(UserError, match="`seed` must be an integer >= 0") as caught:
        make_config(seed=-1)
    assert caught.value.option == "seed" and "--" not in str(caught.value)
    with pytest.raises(ConditioningError, match="not class-conditional"):
        diffcrit.analyze(SMALL, class_label=3, steps=3, samples=1, bootstrap=0)
    with pytest.raises(UserError, match="m2"):
        diffcrit.analyze("builtin:mixture?m2=0", steps=3, samples=1, bootstrap=0)


# -- bounds, values no float can hold, options that do not apply (issue 23) -------------------------

HUGE = "99999999999999999999"
GAUSSIAN = "builtin:gaussian?size=8"
BOUNDS = [
    (["analyze", "-m", SMALL, "--steps", HUGE], ["'--steps'", "less than or equal to 1000000"]),
    (["analyze", "-m", SMALL, "--seed", HUGE + "99"], ["seed must be at most 2**63 - 3"]),
    (["analyze", "-m", SMALL, "--samples", "1000000000000"], ["--samples 1000000000000 needs about", "memory"]),
    (["analyze", "-m", SMALL, "--fd-step", "1e-9"], ["'--fd-step'", "greater than or equal to 0.00001"]),
    (["analyze", "-m", SMALL, "--fd-step", "1"], ["--fd-step must be in [1e-05, 1)", "round-off", "--probe jvp"]),
    (["analyze", "-m", SMALL, "--fd-step", "0"], ["--fd-step"]),
    (["analyze", "-m", SMALL, "--sigma-max", "1e400"], ["--sigma-max < inf, got 0.002 and inf"]),
    (["analyze", "-m", SMALL, "--churn", "nan"], ["--churn"]),
    (["guide", "-m", "builtin:digits", "--steps", HUGE], ["'--steps'", "less than or equal to 1000000"]),
    (["guide", "-m", "builtin:digits", "--seed", HUGE + "99"], ["seed must be at most 2**63"]),
    (["predict", "-d", SMALL, "--rho", "nan"], ["--rho > 0, got nan"]),
    (["predict", "-d", SMALL, "--sigma-max", "1e400"], ["--sigma-max < inf, got 0.002 and inf"]),
    (["predict", "-d", SMALL, "--sigma-min", "-1"], ["0 < --sigma-min", "got -1.0"]),
    (["predict", "-d", SMALL, "--steps", HUGE], ["'--steps'", "less than or equal to 1000000"]),
    (["predict", "-d", GAUSSIAN, "--draws", "100000000000"], ["--draws 100000000000 needs about", "memory"]),
    (["predict", "-d", GAUSSIAN, "--seed", HUGE + "99"], ["seed must be at most 2**63 - 1"]),
    (["predict", "-d", SMALL, "--draws", "10"], ["--draws", "builtin:gaussian only", "drop --draws"]),
    (["predict", "-d", SMALL, "--seed", "3"], ["--seed", "builtin:gaussian only"]),
    (["analyze", "-m", SMALL, "--scheduler", "DDIMScheduler"], ["--scheduler applies to diffusers models only"]),
    (["analyze", "-m", SMALL, "--prediction-type", "epsilon"], ["--prediction-type applies to diffusers"]),
    (["analyze", "-m", SMALL, "--guidance-scale", "3"], ["no conditioning to guide"]),
    (["analyze", "-m", "builtin:digits", "--sigma-min", "0.01"], ["--sigma-min applies to callable and analytic"]),
    (["analyze", "-m", "builtin:digits", "--churn", "1"], ["--churn applies to callable and analytic"]),
    (["analyze", "-m", "builtin:mixture?size=32&size=16"], ["option 'size' is given twice"]),
    (["predict", "-d", "builtin:mixture?m2=2&m2=3"], ["option 'm2' is given twice"]),
    (["guide", "-m", "builtin:digits", "--suggest", "--at", "all"], ["--suggest", "ignores --at"]),
    (["guide", "-m", "builtin:digits", "--suggest", "--compare", "none"], ["ignores --compare"]),
    (["guide", "-m", "builtin:digits", "--suggest", "--save-images", "g"], ["ignores --save-images"]),
]


@pytest.mark.parametrize("args,fragments", BOUNDS, ids=[" ".join(args) for args, _ in BOUNDS])
def test_bounds_and_options_that_do_not_apply(args, fragments):
    one_line_error(run(args[0], *FAST[args[0]], *args[1:]), *fragments)  # the case's own values come last


@pytest.fixture(scope="module")
def broken_models(tmp_path_factory):
    """Tiny DDPM pipelines: ``m`` sound, and one copy per fault a hand-edited folder can carry."""
    import json

    from safetensors.torch import save_file
    import torch

    from tiny_models import save_ddpm_pipeline

    home = tmp_path_factory.mktemp("models")
    save_ddpm_pipeline(home / "m")
    faults = {"steps_text": ("scheduler/scheduler_config.json", {"num_train_timesteps": "lots"}),
              "negative_size": ("unet/config.json", {"sample_size": -4})}
    for name, (file, change) in faults.items():
        shutil.copytree(home / "m", home / name)
        config = json.loads((home / name / file).read_text())
        (home / name / file).write_text(json.dumps({**config, **change}))
    shutil.copytree(home / "m", home / "other_weights")
    save_file({"foo": torch.zeros(3)}, str(home / "other_weights" / "unet" / "diffusion_pytorch_model.safetensors"))
    return home


MODEL_FAULTS = [
    ("m", ["--guidance-scale", "3"], ["unconditional", "drop --guidance-scale"]),
    ("m", ["--sigma-min", "0.01"], ["--sigma-min applies to callable and analytic models only"]),
    ("m", ["--sigma-max", "10"], ["--sigma-max applies"]),
    ("m", ["--rho", "3"], ["--rho applies"]),
    ("m", ["--churn", "0.5"], ["--churn applies"]),
    ("m", ["--steps", "100000"], ["DDPMScheduler takes at most 100 steps", "--steps 100 or fewer"]),
    ("m", ["--steps", "101"], ["takes at most 100 steps"]),
    ("steps_text", [], ["cannot build DDPMScheduler", "scheduler_config.json"]),
    ("negative_size", [], ["gives samples of shape (1, -4, -4)"]),
    ("other_weights", [], ["lack", "of UNet2DModel's tensors", "belongs to another model"]),
]


@pytest.mark.parametrize("name,extra,fragments", MODEL_FAULTS, ids=[f"{n} {' '.join(e)}" for n, e, _ in MODEL_FAULTS])
def test_model_folder_faults_are_one_line_and_change_nothing(broken_models, name, extra, fragments):
    folder = broken_models / name
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}
    result = run("analyze", "-m", folder, *RUN_SIZE, *extra)
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()} == before


def test_documents_no_diffcrit_writes_are_one_line(tmp_path):
    import json

    from result_factory import make_analyze_result

    nan_t = make_analyze_result(1.5)
    nan_t["steps"][0]["t"] = float("nan")
    (tmp_path / "nan.json").write_text(json.dumps(nan_t))
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "ok.json").write_text(json.dumps(make_analyze_result(1.5)))
    for args in (["check", "nan.json", "-b", "ok.json"], ["check", "ok.json", "-b", "nan.json"],
                 ["plot", "nan.json", "-o", "f.png"]):
        one_line_error(run(*(tmp_path / a if a.endswith(".json") else a for a in args)), "holds NaN",
                       "never writes")
    one_line_error(run("plot", tmp_path / "deep.json", "-o", tmp_path / "f.png"), "nested too deeply")
    one_line_error(run("check", tmp_path / "deep.json", "-b", tmp_path / "ok.json"), "nested too deeply")
    assert not (tmp_path / "f.png").exists()


def test_complex_data_is_refused(tmp_path):
    import numpy as np

    np.save(tmp_path / "c.npy", np.ones((4, 1, 8, 8)) * (1 + 2j))
    one_line_error(run("predict", "-d", tmp_path / "c.npy", "--quiet"), "complex dtype complex128", "real")


def test_a_name_too_long_for_the_filesystem_is_one_line(tmp_path):
    one_line_error(run("analyze", "-m", SMALL, *RUN_SIZE, "--out", tmp_path / ("a" * 300 + ".json")),
                   "File name too long", "shorter name")
    assert not any(tmp_path.iterdir())


def test_guide_critical_from_another_model_is_noted(tmp_path):
    import json

    from result_factory import make_analyze_result

    other = make_analyze_result(1.5)
    (tmp_path / "other.json").write_text(json.dumps(other))
    result = run("guide", "-m", "builtin:digits", "--suggest", "--critical-from", tmp_path / "other.json", "--steps",
                 "10")
    assert result.exit_code == 0, result.output
    note = f"t_c was measured on {other['model']['id']}, not on builtin:digits"
    assert [line for line in result.output.splitlines() if line.startswith("note:") and note in line], result.output
    assert note in json.loads(result.stdout)["notes"][0]


# -- noise: parser errors, --help, the hub, other libraries' logs (issue 23) -------------------------

PARSER = [
    (["analyze", "--steps", "abc"], ["invalid value for '--steps'", "see", "analyze --help"]),
    (["analyze", "--fd-step", "x"], ["invalid value for '--fd-step'"]),
    (["analyze", "--no-such-option"], ["no such option: --no-such-option"]),
    (["analyze", "--steps"], ["option '--steps' requires an argument"]),
    (["nosuchcommand"], ["no such command 'nosuchcommand'"]),
    (["plot"], ["missing argument"]),
    (["plot", "r.json"], ["missing option '--out'"]),
    (["check", "r.json"], ["missing option '--baseline'"]),
    (["predict"], ["missing option '--data'"]),
    (["guide"], ["missing option '--model'"]),
    (["models", "x"], ["unexpected extra argument"]),
]


@pytest.mark.parametrize("args,fragments", PARSER, ids=[" ".join(args) for args, _ in PARSER])
def test_parser_errors_are_the_one_error_line(args, fragments):
    one_line_error(run(*args), *fragments)


def test_help_shows_no_python_types():
    for command in ("analyze", "plot", "check", "guide", "predict"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "<bool>" not in result.output and "list[" not in result.output, command
    assert "<bool>" not in run("--help").output
    assert "<path>..." in run("plot", "--help").output


def test_hf_hub_offline_is_offline(monkeypatch):
    from diffcrit.models.loading import LoadOptions

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert LoadOptions().offline
    result = run("analyze", "--model", "someone/missing-model", *RUN_SIZE)
    one_line_error(result, "could not get hub model", "reads the local cache only")
    assert "or --offline with a cached copy" not in result.output
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not LoadOptions().offline


def test_the_hub_is_announced_unless_quiet(monkeypatch):
    import huggingface_hub

    def no_network(self, repo_id, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", no_network)
    lines = [line for line in run("analyze", "--model", "someone/model").output.splitlines() if line.strip()]
    assert lines[0] == "contacting the hub for someone/model" and lines[-1].startswith("error:"), lines


def test_other_libraries_warnings_show_once_after_success_never_quiet_or_before_an_error(broken_models, tmp_path):
    import json

    extra = tmp_path / "extra"
    shutil.copytree(broken_models / "m", extra)
    config = json.loads((extra / "unet" / "config.json").read_text())
    (extra / "unet" / "config.json").write_text(json.dumps({**config, "foo": 1}))
    size = RUN_SIZE[:6]
    loud = run("analyze", "-m", extra, *size, "--out", tmp_path / "r.json")
    warnings = [line for line in loud.output.splitlines() if line.startswith("warning:")]
    assert loud.exit_code == 0 and len(warnings) == 1 and "{'foo': 1}" in warnings[0], loud.output
    assert loud.output.rstrip().splitlines()[-1] == warnings[0]  # after the run, not in front of the summary
    quiet = run("analyze", "-m", extra, *RUN_SIZE, "--out", tmp_path / "r.json")
    assert quiet.exit_code == 0 and quiet.output.strip() == "", quiet.output
    failed = run("analyze", "-m", broken_models / "other_weights", *size)
    one_line_error(failed, "lack")  # the weights' "newly initialized" log is not printed before it
