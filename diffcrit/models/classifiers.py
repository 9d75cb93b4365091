"""Small image classifiers shipped beside diffusion checkpoints (clone scoring, guidance alignment, sample checks).

Interface: ``classifier(x) -> logits``; x float32 NCHW in the model's own data range [-1, 1]
(clean images, i.e. x0 or D(y), not noisy states); logits (B, n_classes) over the real classes
only — the null class used for classifier-free guidance has no logit.

On disk a classifier is a folder holding ``config.json`` (architecture, class names, held-out
accuracy) and ``model.safetensors`` (weights), normally the ``classifier/`` subfolder of a
diffusers pipeline folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
SUBFOLDER = "classifier"


class SmallCNN(nn.Module):
    """Stages of two 3x3 conv + GroupNorm + SiLU, 2x average pooling between stages, then global
    average pooling and a linear head. Translation-equivariant up to the global pool."""

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 10,
        channels: tuple[int, ...] = (16, 32, 64),
        norm_groups: int = 4,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for i, ch in enumerate(channels):
            if i > 0:
                layers.append(nn.AvgPool2d(2))
            layers += [
                nn.Conv2d(prev, ch, 3, padding=1),
                nn.GroupNorm(norm_groups, ch),
                nn.SiLU(),
                nn.Conv2d(ch, ch, 3, padding=1),
                nn.GroupNorm(norm_groups, ch),
                nn.SiLU(),
            ]
            prev = ch
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(prev, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) in [-1, 1] -> logits (B, n_classes)."""
        return self.head(self.features(x.contiguous()).mean(dim=(2, 3)))


ARCHITECTURES = {"SmallCNN": SmallCNN}
ARCH_KEYS = ("in_channels", "n_classes", "channels", "norm_groups")


def classifier_folder(folder: str | Path) -> Path:
    """The folder holding config.json + model.safetensors: ``folder`` itself or its
    ``classifier/`` subfolder (a pipeline folder)."""
    folder = Path(folder)
    if (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file():
        return folder
    if (folder / SUBFOLDER / CONFIG_NAME).is_file():
        return folder / SUBFOLDER
    raise FileNotFoundError(
        f"no classifier in {folder}: expected {CONFIG_NAME} and {WEIGHTS_NAME} there or in "
        f"{SUBFOLDER}/"
    )


def classifier_config(folder: str | Path) -> dict[str, Any]:
    """The classifier's config.json: architecture keys, ``classes``, ``heldout_accuracy``, ..."""
    return json.loads((classifier_folder(folder) / CONFIG_NAME).read_text())


def build_classifier(config: dict[str, Any]) -> nn.Module:
    """An untrained classifier from the architecture keys of ``config``."""
    name = config.get("_class_name", "SmallCNN")
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown classifier class {name!r}; allowed: {sorted(ARCHITECTURES)}")
    kwargs = {k: config[k] for k in ARCH_KEYS if k in config}
    if "channels" in kwargs:
        kwargs["channels"] = tuple(kwargs["channels"])
    return ARCHITECTURES[name](**kwargs)


def load_classifier(folder: str | Path) -> nn.Module:
    """Load a shipped classifier in eval mode, gradients off for its parameters.

    The module carries ``classes`` (names, logit order), ``heldout_accuracy`` (the accuracy on
    held-out data recorded at training time) and ``config`` (the whole config.json)."""
    from safetensors.torch import load_file

    path = classifier_folder(folder)
    config = classifier_config(path)
    model = build_classifier(config)
    model.load_state_dict(load_file(str(path / WEIGHTS_NAME)))
    model.eval().requires_grad_(False)
    model.classes = list(config["classes"])
    model.heldout_accuracy = float(config["heldout_accuracy"])
    model.config = config
    return model


def save_classifier(model: nn.Module, config: dict[str, Any], folder: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``folder`` (created). Returns it."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME))
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return folder
