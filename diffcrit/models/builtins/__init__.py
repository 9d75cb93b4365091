"""Registry of built-in models: ``builtin:NAME`` or ``builtin:NAME?key=value&key=value``.

Analytic built-ins are exact callables (docs/design.md §7); checkpoint built-ins are diffusers
pipeline folders shipped in the package and loaded exactly like a local folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl

from ...errors import UserError

PREFIX = "builtin:"
# The model `diffcrit analyze` uses when no --model is given.
DEFAULT_MODEL = "builtin:textures"
CHECKPOINT_ROOT = Path(__file__).resolve().parent / "checkpoints"

# The shipped checkpoint folders, for ``diffcrit models`` and the registry (plain data: no torch);
# ``diffcrit.training`` rebuilds them (``python -m diffcrit.training train NAME``).
CHECKPOINTS: dict[str, dict] = {
    "digits": {
        "path": CHECKPOINT_ROOT / "digits",
        "summary": "Class-conditional DDPM on scikit-learn's 8x8 digits upsampled to 16x16 "
                   "(1.1M params, attention at 4x4): fast offline tests, CFG and guidance timing.",
        "conditioning": "class: 10 digits + null 10",
        "classes": [str(i) for i in range(10)],
        "null_class": 10,
        "shape": [1, 16, 16],
    },
    "textures": {
        "path": CHECKPOINT_ROOT / "textures",
        "summary": "Class-conditional DDPM on 32x32 grayscale crops of scikit-image's brick, "
                   "grass and gravel photos (1.1M params, 4 levels, attention at 4x4): stationary "
                   "textures, pattern formation at a characteristic scale.",
        "conditioning": "class: 3 textures (brick, grass, gravel) + null 3",
        "classes": ["brick", "grass", "gravel"],
        "null_class": 3,
        "shape": [1, 32, 32],
    },
}


@dataclass(frozen=True)
class BuiltinEntry:
    name: str
    kind: str  # "analytic" or "checkpoint"
    summary: str
    conditioning: str
    factory: Callable[..., Any] | None = None  # analytic: keyword options -> model
    path: Path | None = None  # checkpoint: pipeline folder
    null_class: int | None = None  # checkpoint: the class id used when no --class-label is given

    def options(self) -> dict[str, Any]:
        """Documented options of an analytic model with their defaults."""
        if self.factory is None:
            return {}
        return {f.name: f.default for f in dataclasses.fields(self.factory) if f.init and f.name != "name"}


REGISTRY: dict[str, BuiltinEntry] = {}


def register(entry: BuiltinEntry) -> None:
    REGISTRY[entry.name] = entry


def _register_analytic() -> None:
    """The analytic models, registered on first use: their modules import torch, this package must not
    (``DEFAULT_MODEL`` and ``PREFIX`` are read by commands that never load a model)."""
    if "mixture" in REGISTRY:
        return
    from .analytic import GaussianField, TwoPointMixture
    from .patch import PatchModel

    for entry in [
        BuiltinEntry("mixture", "analytic", "two-point mixture x0 = ±m: exact t_c = log(1+|m|^2) (docs/design.md §7)",
                     "none", factory=TwoPointMixture),
        BuiltinEntry("gaussian", "analytic", "stationary Gaussian field: exact stiffness, no critical point "
                     "(negative control)", "none", factory=GaussianField),
        BuiltinEntry("patch", "analytic", "local patch (ELS) denoiser on ±1 images: at y = 0 t_c = log(1+C_Ω(0)) "
                     "(docs/design.md §7)", "none", factory=PatchModel),
    ]:
        register(entry)


def _register_checkpoints() -> None:
    _register_analytic()  # analytic entries first, as listed
    for name, card in CHECKPOINTS.items():
        if Path(card["path"]).joinpath("model_index.json").exists():
            register(BuiltinEntry(name, "checkpoint", card["summary"], card["conditioning"], path=Path(card["path"]),
                                  null_class=card.get("null_class")))


def _coerce(value: str, default: Any, key: str, name: str) -> Any:
    try:
        if isinstance(default, bool):
            return value.lower() in ("1", "true", "yes")
        return type(default)(value) if default is not None else value
    except ValueError:
        kind = {int: "an integer", float: "a number"}.get(type(default), type(default).__name__)
        raise UserError(f"builtin:{name} option {key}={value!r} is not {kind}") from None


def parse_spec(spec: str) -> tuple[BuiltinEntry, dict[str, Any]]:
    """``builtin:NAME?k=v&...`` -> (entry, typed options). Unknown names or keys are user errors."""
    _register_checkpoints()
    body = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    name, _, query = body.partition("?")
    if name not in REGISTRY:
        raise UserError(f"unknown built-in model {name!r}", f"choose one of: {', '.join(sorted(REGISTRY))}")
    entry = REGISTRY[name]
    allowed = entry.options()
    options = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in allowed:
            raise UserError(f"builtin:{name} has no option {key!r}",
                            f"allowed: {', '.join(allowed) or 'none'}")
        if key in options:
            raise UserError(f"builtin:{name} option {key!r} is given twice", "give each option once")
        options[key] = _coerce(value, allowed[key], key, name)
    return entry, options


def make_analytic(spec: str):
    entry, options = parse_spec(spec)
    if entry.factory is None:
        raise UserError(f"builtin:{entry.name} is a checkpoint, not an analytic model")
    return entry.factory(**options)


def entries() -> list[BuiltinEntry]:
    _register_checkpoints()
    return list(REGISTRY.values())
