"""Timed guidance: pulse windows, the guide engine, class alignment and its classifiers."""
