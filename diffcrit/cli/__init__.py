"""Command-line interface: a thin layer over the library."""

from __future__ import annotations

from ._app import app, handle_sigterm
from . import analyze as _analyze  # noqa: F401  (registers `analyze`)
from . import models as _models  # noqa: F401  (registers `models`)
from . import check as _check  # noqa: F401  (registers `check`)
from . import plot as _plot  # noqa: F401  (registers `plot`)
from . import predict as _predict  # noqa: F401  (registers `predict`)
from . import guide as _guide  # noqa: F401  (registers `guide`)
from . import reproduce as _reproduce  # noqa: F401  (registers `reproduce`)


def main() -> None:
    handle_sigterm()
    app()
