"""``diffcrit reproduce``: the claims of arXiv:2603.20092 run as tests that can come out either way
(docs/reproduce.md). ``verdicts`` (pure verdict rules), ``claims`` (one row from result documents), ``battery``
(runs the models), ``table`` (the Markdown table)."""
