"""Wrapped messages of other libraries are shortened at a sentence or word, never mid-word."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import diffcrit
from cli_checks import one_line_error, run
from diffcrit.errors import shorten

# diffusers' message for a checkpoint whose weights do not fit its config (models/model_loading_utils.py)
DIFFUSERS = ("Cannot load /tmp/pipe/unet because conv_in.weight expected shape torch.Size([32, 1, 3, 3]), but got "
             "torch.Size([32, 3, 3, 3]). If you want to instead overwrite randomly initialized weights, please make "
             "sure to pass both `low_cpu_mem_usage=False` and `ignore_mismatched_sizes=True`. For more information, "
             "see also: https://github.com/huggingface/diffusers/issues/1619#issuecomment-1345604389 as an example.")


def test_short_text_is_its_first_line_unchanged():
    assert shorten("no such file") == "no such file"
    assert shorten("  first line\nsecond line\n") == "first line"
    assert shorten("") == ""


def test_long_text_keeps_whole_sentences():
    cut = shorten(DIFFUSERS, 200)
    assert cut == ("Cannot load /tmp/pipe/unet because conv_in.weight expected shape torch.Size([32, 1, 3, 3]), "
                   "but got torch.Size([32, 3, 3, 3]). …")
    assert len(cut) <= 200


@pytest.mark.parametrize("limit", [40, 61, 97, 120, 160])
def test_without_a_sentence_end_the_cut_is_at_a_word(limit):
    text = "forward AD is not implemented for aten::_scaled_dot_product_flash_attention " * 4
    cut = shorten(text, limit)
    assert len(cut) <= limit and cut.endswith("…")
    kept = cut[:-1]
    assert text.startswith(kept) and text[len(kept)] == " " and not kept.endswith(" ")


def test_one_long_word_is_cut_hard():
    assert shorten("x" * 500, 50) == "x" * 49 + "…"


def _fused_attention_model(y, sigma):
    """A callable denoiser whose forward derivative fails with a long, diffusers-like message."""
    if torch._C._functorch.is_functorch_wrapped_tensor(y):
        raise RuntimeError(DIFFUSERS.replace("Cannot load /tmp/pipe/unet", "Cannot differentiate the fused kernel"))
    return y / (1 + sigma.view(-1, 1, 1, 1) ** 2)


def _whole_words(cut: str, original: str) -> bool:
    """Every word of ``cut`` (less the ellipsis) is a whole word of ``original``."""
    words = set(original.split())
    return all(word in words for word in cut.replace("…", " ").split())


def test_wrapped_forward_ad_messages_end_at_a_word():
    message = DIFFUSERS.replace("Cannot load /tmp/pipe/unet", "Cannot differentiate the fused kernel")
    with pytest.raises(diffcrit.UserError) as caught:
        diffcrit.analyze(_fused_attention_model, shape=(1, 8, 8), steps=3, samples=2, bootstrap=0, probe="jvp")
    reason = caught.value.message.split("RuntimeError: ", 1)[1]
    assert reason.endswith("…") and _whole_words(reason, message), reason
    result = diffcrit.analyze(_fused_attention_model, shape=(1, 8, 8), steps=3, samples=2, bootstrap=0, probe="auto")
    note = result.to_dict()["environment"]["probe_note"]
    reason = note.split("RuntimeError: ", 1)[1].removesuffix("); used finite differences")
    assert reason.endswith("…") and _whole_words(reason, message), note


def test_mismatched_weights_message_ends_at_a_sentence(ddpm_folder, tmp_path):
    folder = tmp_path / "pipe"
    shutil.copytree(ddpm_folder, folder)
    config = folder / "unet" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "in_channels": 3, "out_channels": 3}))
    result = run("analyze", "--model", folder, "--steps", "3", "--samples", "1", "--quiet")
    one_line_error(result, "cannot load UNet2DModel", "expected shape")
    assert "please make sure to pass bo" not in result.output
    assert result.output.strip().endswith("]). …"), result.output


# -- the library names parameters as Python passes them; the CLI writes them as flags (docs/design.md §10) ------

def test_a_python_caller_reads_the_parameter_name_never_the_flag():
    with pytest.raises(diffcrit.UserError) as caught:
        diffcrit.analyze("builtin:mixture?size=8", batch_size=0, steps=3, samples=1, bootstrap=0)
    assert caught.value.option == "batch_size"
    assert "`batch_size` must be an integer >= 1, got 0" in str(caught.value) and "--" not in str(caught.value)


def test_the_cli_prints_the_flag_for_the_same_mistake():
    with pytest.raises(diffcrit.UserError, match="`decision_shell` must be below `shells`"):
        diffcrit.analyze("builtin:mixture?size=8", decision_shell=2, shells=2, steps=3, samples=1, bootstrap=0)
    result = run("analyze", "--model", "builtin:mixture?size=8", "--decision-shell", "2", "--shells", "2", "--steps",
                 "3", "--quiet")
    one_line_error(result, "error: --decision-shell must be below --shells (2), got 2")
    assert "`" not in result.output and "decision_shell" not in result.output


def test_a_value_out_of_its_declared_range_is_typers_error_naming_the_flag():
    result = run("analyze", "--model", "builtin:mixture?size=8", "--batch-size", "0", "--steps", "3", "--quiet")
    one_line_error(result, "error: invalid value for '--batch-size': Input should be greater than or equal to 1")


def test_the_cli_writes_every_named_parameter_of_message_and_hint_as_its_flag():
    result = run("analyze", "--model", "builtin:mixture?size=8", "--classifier", "builtin", "--steps", "3", "--quiet")
    one_line_error(result, "--classifier scores the clones' final samples", "set --clones to G branch steps",
                   "or drop --classifier")


def test_a_name_the_command_has_no_flag_for_is_left_as_the_library_wrote_it():
    from diffcrit.cli._app import render_parameters

    flags = {"batch_size": "--batch-size", "save_samples": "--save-samples"}
    assert render_parameters("`batch_size` / `probe_batch` set the rows", flags) == \
        "--batch-size / `probe_batch` set the rows"
    assert render_parameters("S = 1 is the `none` arm; `diffcrit models` lists", flags) == \
        "S = 1 is the `none` arm; `diffcrit models` lists"


def test_the_library_speaks_no_flags():
    """No string in the library (outside cli/ and training/'s own command line) names a flag, bar docstrings."""
    import ast
    import re
    from pathlib import Path

    root = Path(diffcrit.__file__).parent
    flag = re.compile(r"(?<![\w-])--[a-z]")
    found = []
    for path in root.rglob("*.py"):
        if {"cli", "training"} & set(path.relative_to(root).parts):
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        found += [f"{path.relative_to(root)}:{node.lineno}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                  and flag.search(node.value)]
    assert not found, found


def test_the_out_of_memory_advice_names_options_analyze_has():
    """The warning advises `batch_size` / `probe_batch`: both are analyze flags."""
    from diffcrit.cli.analyze import analyze
    import inspect

    names = inspect.signature(analyze).parameters
    assert "batch_size" in names and "probe_batch" in names
    result = run("analyze", "--model", "builtin:mixture?size=8", "--probe-batch", "0", "--steps", "3", "--quiet")
    one_line_error(result, "'--probe-batch'", "greater than or equal to 1")
