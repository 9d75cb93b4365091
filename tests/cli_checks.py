"""Assertions shared by the CLI tests."""


def one_line_error(result, *fragments):
    """Exit 2 with exactly one non-empty line, starting 'error:', holding every fragment, no traceback."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
