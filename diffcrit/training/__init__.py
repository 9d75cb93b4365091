"""Training of the built-in checkpoints (``builtin:NAME``) and what ships beside them.

``CHECKPOINTS`` describes the shipped folders for ``diffcrit models`` and the builtin registry;
it is plain data, so importing this package stays cheap (torch, sklearn and skimage load only
when training). Rebuild a folder with ``python -m diffcrit.training train NAME``.
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS_DIR = Path(__file__).resolve().parent.parent / "builtins" / "checkpoints"

CHECKPOINTS: dict[str, dict] = {
    "digits": {
        "path": CHECKPOINTS_DIR / "digits",
        "summary": "Class-conditional DDPM on scikit-learn's 8x8 digits upsampled to 16x16 "
                   "(1.1M params, attention at 4x4): fast offline tests, CFG and guidance timing.",
        "conditioning": "class: 10 digits + null 10",
        "classes": [str(i) for i in range(10)],
        "null_class": 10,
        "shape": [1, 16, 16],
    },
    "textures": {
        "path": CHECKPOINTS_DIR / "textures",
        "summary": "Class-conditional DDPM on 32x32 grayscale crops of scikit-image's brick, "
                   "grass and gravel photos (1.1M params, 4 levels, attention at 4x4): stationary "
                   "textures, pattern formation at a characteristic scale.",
        "conditioning": "class: 3 textures (brick, grass, gravel) + null 3",
        "classes": ["brick", "grass", "gravel"],
        "null_class": 3,
        "shape": [1, 32, 32],
    },
}

__all__ = ["CHECKPOINTS", "CHECKPOINTS_DIR"]
