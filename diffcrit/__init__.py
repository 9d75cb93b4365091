"""diffcrit: when does a diffusion model decide what it draws?

    import diffcrit
    result = diffcrit.analyze("builtin:mixture", steps=50, samples=16)
    result.critical["t"], result.to_json("out.json")

The public names load on first use (PEP 562): ``import diffcrit`` does not import torch, so
``diffcrit check``, ``plot`` and ``--help`` start without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "analyze": ".analysis.engine",
    "AnalyzeConfig": ".config",
    "guide": ".guidance.engine",
    "suggest": ".guidance.engine",
    "check": ".release.checking",
    "reproduce": ".reproduction.battery",
    "log_result": ".report.trackers",
    "LoadOptions": ".models.loading",
    "Result": ".report.document",
    "UserError": ".errors",
}

__all__ = ["analyze", "AnalyzeConfig", "guide", "suggest", "check", "reproduce", "log_result", "Result", "UserError",
           "LoadOptions", "__version__"]

if TYPE_CHECKING:
    from .analysis.engine import analyze
    from .config import AnalyzeConfig
    from .errors import UserError
    from .guidance.engine import guide, suggest
    from .release.checking import check
    from .models.loading import LoadOptions
    from .report.document import Result
    from .report.trackers import log_result
    from .reproduction.battery import reproduce


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
