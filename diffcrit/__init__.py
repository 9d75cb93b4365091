"""diffcrit: when does a diffusion model decide what it draws?

    import diffcrit
    result = diffcrit.analyze("builtin:mixture", steps=50, samples=16)
    result.critical["t"], result.to_json("out.json")
"""

__version__ = "0.1.0"

from .engine import analyze  # noqa: E402
from .errors import UserError  # noqa: E402
from .guide_engine import guide  # noqa: E402
from .loading import LoadOptions  # noqa: E402
from .report import Result  # noqa: E402

__all__ = ["analyze", "guide", "Result", "UserError", "LoadOptions", "__version__"]
