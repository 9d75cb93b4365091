"""The result document of ``analyze`` (DESIGN.md §7, schema_version 1) and the ``Result`` object."""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from .io import atomic_write_text

SCHEMA_VERSION = 1
SCHEMA_FILE = "result.schema.json"

TIME_CONVENTION = {
    "frame": "variance-exploding: y = x0 + sigma * n (DESIGN.md §2)",
    "t": "t = log(1 + sigma^2) = -log(alpha_bar), the OU time of dx = -x/2 dt + dW",
    "vp_models": "y = x_t / sqrt(alpha_bar), sigma^2 = (1 - alpha_bar) / alpha_bar",
    "order": "steps are listed in generation order (sigma and t decreasing)",
    "stiffness": "s(k) = 1 - <v_k, J v_k>, J = dD/dy; s < 0: the mode grows as noise is removed",
    "k_units": "radians per pixel; shells[n] = 2 pi n / L",
    "lengths": "pixels",
}


SCHEMA_FILES = {"analyze": SCHEMA_FILE, "guide": "guide.schema.json"}


def schema(kind: str = "analyze") -> dict:
    """The JSON Schema shipped with the package for a result ``kind`` (analyze or guide)."""
    return json.loads(resources.files("diffcrit").joinpath("schema", SCHEMA_FILES[kind]).read_text())


def clean(value: Any) -> Any:
    """JSON-safe copy: NaN/Inf -> None, tensors and numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "tolist"):
        return clean(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def environment(device: torch.device, probe_method: str, dtype: str, probe_note: str | None = None) -> dict:
    import diffusers
    import numpy

    from . import __version__

    env = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
           "diffusers": diffusers.__version__, "numpy": numpy.__version__, "diffcrit": __version__,
           "device": str(device), "dtype": dtype, "threads": torch.get_num_threads(), "probe_method": probe_method}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    if probe_note:
        env["probe_note"] = probe_note
    return env


def write_document(document: dict, path: Path | str | None = None, indent: int = 2) -> str:
    """The JSON text of a result document (NaN is an error: ``clean`` first); written atomically to ``path``."""
    text = json.dumps(document, indent=indent, allow_nan=False) + "\n"
    if path is not None:
        atomic_write_text(path, text)
    return text


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class Result:
    """What ``analyze`` returns: the JSON document plus the final samples (not serialised)."""

    document: dict
    samples: torch.Tensor | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return self.document

    def to_json(self, path: Path | str | None = None, indent: int = 2) -> str:
        return write_document(self.document, path, indent)

    @property
    def critical(self) -> dict:
        return self.document["critical"]

    @property
    def steps(self) -> list[dict]:
        return self.document["steps"]
