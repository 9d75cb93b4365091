"""Analysis: the run's records, pure estimators, curves, marker detection, exact theory, the analyze engine,
prediction from data."""
