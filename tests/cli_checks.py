"""What the CLI tests share: ``run`` (``diffcrit ARGS`` in process), the fast analyze options, and the
one-line-error assertion."""

from typer.testing import CliRunner

# The smallest analyze run that still probes: few steps and samples, one direction on two shells, no
# bootstrap. RUN_SIZE alone where a test sets the probe options itself.
RUN_SIZE = ["--steps", "6", "--samples", "3", "--bootstrap", "0", "--quiet"]
FAST = [*RUN_SIZE[:4], "--probe-samples", "1", "--directions", "1", "--shells", "2", *RUN_SIZE[4:]]


def fast(model: str, steps: int = 6) -> list[str]:
    """``--model MODEL`` and FAST, with ``steps`` steps."""
    return ["--model", model, "--steps", str(steps), *FAST[2:]]


def run(*args, **kwargs):
    """``diffcrit ARGS`` through CliRunner (paths and numbers passed as text); ``kwargs`` go to ``invoke``."""
    from diffcrit.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


def one_line_error(result, *fragments):
    """Exit 2 with exactly one non-empty line, starting 'error:', holding every fragment, no traceback."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
