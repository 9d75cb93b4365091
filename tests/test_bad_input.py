"""Bad input that used to reach deep code (a traceback) or pass silently: one line, exit 2."""

from __future__ import annotations

import pytest

import diffcrit
from diffcrit.config import make_config
from diffcrit.errors import ConditioningError, UserError
from cli_checks import RUN_SIZE, one_line_error, run

FAST = {"analyze": RUN_SIZE, "guide": RUN_SIZE, "predict": ["--quiet"]}
SMALL = "builtin:mixture?size=8"


CASES = [
    (["analyze", "-m", SMALL, "--seed", "-1"], ["seed must be an integer >= 0", "-1"]),
    (["guide", "-m", "builtin:digits", "--at", "all", "--seed", "-1"], ["seed must be an integer >= 0"]),
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
    (["analyze", "-m", SMALL, "--rho", "nan"], ["rho"]),
    (["analyze", "-m", SMALL, "--sigma-max", "inf"], ["sigma_max"]),
    (["guide", "-m", "builtin:digits", "--at", "all", "--scale", "inf"], ["guidance scale", "finite"]),
]


@pytest.mark.parametrize("args,fragments", CASES, ids=[" ".join(args) for args, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(args, fragments):
    result = run(*args, *FAST[args[0]])
    one_line_error(result, *fragments)
    assert "--dtype" not in result.output  # a parameter error, not the NaN checkpoint's hint


def test_the_python_api_validates_the_same_values():
    with pytest.raises(UserError, match="seed must be an integer >= 0"):
        make_config(seed=-1)
    with pytest.raises(ConditioningError, match="not class-conditional"):
        diffcrit.analyze(SMALL, class_label=3, steps=3, samples=1, bootstrap=0)
    with pytest.raises(UserError, match="m2"):
        diffcrit.analyze("builtin:mixture?m2=0", steps=3, samples=1, bootstrap=0)
