"""Classifiers as scorers: any classifier form -> logits of clean images, and the decoding that gets images.

A scorer maps images to logits: ``logits = scorer.fn(images)``, images (B, C, H, W) float32 in [-1, 1] (the model's
data range: decoded through the VAE for latent models, ``latent_decoder``), logits (B, K). Used by ``guide`` (class
alignment, guidance/alignment.py) and by ``analyze --clones --classifier`` (the class of each clone's final sample,
analysis/class_decision.py), so it lives below both.

Classifier forms accepted by ``load_scorer`` (``classifier``):
  - a diffcrit classifier folder (config.json + model.safetensors, or a pipeline folder with
    ``classifier/``; what the built-ins ship, ``diffcrit.models.classifiers``);
  - a TorchScript file (``torch.jit.save``) taking the images above and returning logits;
  - a transformers image-classification folder (needs transformers): images are mapped to
    [0, 1] and passed through the folder's image processor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import UserError, shorten
from .families import pipeline_index
from .loading import LoadedModel, LoadOptions, download, library_logs

BUILTIN = "builtin"  # ``classifier="builtin"``: the classifier shipped in the model's pipeline folder


@dataclass
class Scorer:
    """``fn(images) -> logits``; images (B, C, H, W) float32 in [-1, 1], logits (B, K)."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    info: dict
    classes: list[str] | None = None  # names in logit order, where the classifier says
    label_map: dict[int, int] | None = None  # model class id -> logit index
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def index_of(self, targets: np.ndarray) -> np.ndarray:
        """Logit index of each model class id."""
        if self.label_map is None:
            return np.asarray(targets)
        return np.array([self.label_map[int(c)] for c in targets])


def parse_label_map(text: str | Path | None) -> dict[int, int] | None:
    """``--label-map``: a JSON file {"model class id": logit index} or inline ``0=207,1=3``."""
    if text is None:
        return None
    text = str(text)
    path = Path(text)
    try:
        if path.suffix == ".json" or path.is_file():
            raw = json.loads(path.read_text())
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            return {int(k): int(v) for k, v in raw.items()}
        pairs = [part.split("=") for part in text.split(",") if part.strip()]
        return {int(a): int(b) for a, b in pairs}
    except (OSError, ValueError, TypeError) as err:
        raise UserError(f"cannot read `label_map` {text!r}: {err}",
                        'give a JSON file {"model id": classifier index} or pairs like 0=207,1=3') from None


def load_scorer(spec: str | Path, device: torch.device, label_map: dict[int, int] | None = None) -> Scorer:
    """A classifier in one of the forms of the module docstring; anything else is a user error."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(f"`classifier` {spec} does not exist",
                        "give a diffcrit classifier folder, a TorchScript file or a transformers folder",
                        option="classifier")
    if path.is_file():
        return _torchscript(path, device, label_map)
    config = _folder_config(path)
    if config is not None and "architectures" not in config and "id2label" not in config:
        return _diffcrit_classifier(path, device, label_map)
    if config is not None:
        return _transformers(path, device, label_map)
    raise UserError(f"`classifier` {spec} is a folder without a classifier config.json",
                    "give a diffcrit classifier folder, a TorchScript file or a transformers folder",
                    option="classifier")


def _folder_config(path: Path) -> dict | None:
    for candidate in (path / "config.json", path / "classifier" / "config.json"):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise UserError(f"cannot read {candidate}: {err}") from None
    return None


def _diffcrit_classifier(path: Path, device, label_map) -> Scorer:
    from .classifiers import load_classifier

    try:
        model = load_classifier(path).to(device)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise UserError(f"cannot load the classifier in {path}: {shorten(str(err), 200)}") from None
    info = {"form": "diffcrit", "path": str(path), "classes": model.classes,
            "heldout_accuracy": model.heldout_accuracy}
    return Scorer(model, info, list(model.classes), label_map, device)


def _torchscript(path: Path, device, label_map) -> Scorer:
    try:
        model = torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as err:
        raise UserError(f"`classifier` {path} is not a TorchScript file: {shorten(str(err), 160)}",
                        "save it with torch.jit.save(torch.jit.script(model), path)", option="classifier") from None
    return Scorer(model, {"form": "torchscript", "path": str(path)}, None, label_map, device)


def _transformers(path: Path, device, label_map) -> Scorer:
    try:
        from transformers import AutoImageProcessor, AutoModelForImageClassification
    except ImportError:
        raise UserError("a transformers classifier folder needs the transformers package",
                        "pip install 'diffcrit[text]'") from None
    try:
        model = AutoModelForImageClassification.from_pretrained(path).to(device).eval()
        processor = AutoImageProcessor.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load a transformers classifier from {path}: {shorten(str(err), 160)}") from None
    channels = int(getattr(model.config, "num_channels", 3))

    def fn(images: torch.Tensor) -> torch.Tensor:
        unit = ((images.float() + 1) / 2).clamp(0, 1)  # [-1, 1] -> [0, 1]
        if unit.shape[1] == 1 and channels == 3:
            unit = unit.expand(-1, 3, -1, -1)
        inputs = processor(images=list(unit.cpu()), do_rescale=False, return_tensors="pt")
        return model(**{k: v.to(device) for k, v in inputs.items()}).logits

    id2label = getattr(model.config, "id2label", None) or {}
    classes = [id2label[i] for i in sorted(id2label)] if id2label else None
    return Scorer(fn, {"form": "transformers", "path": str(path)}, classes, label_map, device)


def check_runs(scorer: Scorer, image_shape: tuple[int, ...]) -> int:
    """Cheap check before sampling: the classifier takes one image of ``image_shape`` (C, H, W) in [-1, 1] and
    returns logits (1, K). Returns K."""
    try:
        with torch.no_grad():
            logits = scorer.fn(torch.zeros(1, *image_shape, device=scorer.device))
    except Exception as err:  # a foreign classifier can fail in many ways; say which input it got
        raise UserError(f"the classifier failed on a {tuple(image_shape)} image in [-1, 1]: "
                        f"{type(err).__name__}: {shorten(str(err), 160)}",
                        "it must take (B, C, H, W) float32 images in [-1, 1] and return logits (B, K)") from None
    if logits.ndim != 2 or logits.shape[0] != 1:
        raise UserError(f"the classifier returned shape {tuple(logits.shape)} for one image", "expected logits (B, K)")
    return int(logits.shape[1])


def check_scorer(scorer: Scorer, n_classes: int, targets: list[int], image_shape: tuple[int, ...],
                 class_names: list[str] | None = None) -> int:
    """Cheap check before sampling: the classifier runs on one image and its outputs cover the
    target classes. Returns K, the number of logits."""
    k = check_runs(scorer, image_shape)
    if scorer.label_map is None:
        if k != n_classes:
            raise UserError(f"the classifier has {k} outputs but the model has {n_classes} classes",
                            "pass `label_map` to say which output scores which class")
        if class_names and scorer.classes and list(scorer.classes) != list(class_names):
            raise UserError(f"the classifier's classes {scorer.classes} differ from the model's {class_names}",
                            "pass `label_map` or the matching classifier")
        return k
    missing = sorted({int(c) for c in targets} - set(scorer.label_map))
    if missing:
        raise UserError(f"`label_map` has no entry for class id(s) {missing}", "map every target class",
                        option="label_map")
    bad = sorted(v for v in scorer.label_map.values() if not 0 <= v < k)
    if bad:
        raise UserError(f"`label_map` points at classifier output(s) {bad}, but the classifier has {k} outputs",
                        f"use indices 0..{k - 1}", option="label_map")
    return k


def classify(scorer: Scorer, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits (N, K) float32 on the CPU for images (N, C, H, W) in [-1, 1]."""
    out = []
    with torch.no_grad():
        for lo in range(0, len(images), batch_size):
            out.append(scorer.fn(images[lo: lo + batch_size].to(scorer.device).float()).float().cpu())
    return torch.cat(out)


def latent_decoder(loaded: LoadedModel,
                   load_options: LoadOptions | None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """For a latent pipeline (model_index.json lists a vae): z -> images in [-1, 1]; else None."""
    root = loaded.root
    if "vae" not in pipeline_index(root):
        return None
    from diffusers import AutoencoderKL

    folder = Path(root) / "vae"
    if not (folder / "config.json").is_file():
        if loaded.info["id"] == str(root):  # a local folder, not a hub snapshot
            raise UserError(f"{root} lists a vae but has no vae/ folder to decode samples for scoring",
                            "add the VAE to the folder, or run without a classifier")
        folder = _download_vae(loaded.info["id"], load_options or LoadOptions())
    with library_logs():
        vae = AutoencoderKL.from_pretrained(folder).to(loaded.device).eval().requires_grad_(False)

    def decode(z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            images = vae.decode(z.to(loaded.device, vae.dtype) / vae.config.scaling_factor).sample
        return images.float().clamp(-1, 1).cpu()

    return decode


def _download_vae(repo_id: str, options: LoadOptions) -> Path:
    return download(repo_id, options, ["vae/*"], f"cannot get the VAE of {repo_id} to decode samples for scoring",
                    "run without a classifier, or make the VAE available (`offline` needs a cached copy)") / "vae"


def decode_all(samples: torch.Tensor, decode: Callable | None, batch_size: int) -> torch.Tensor:
    if decode is None:
        return samples.float().clamp(-1, 1)
    return torch.cat([decode(samples[lo: lo + batch_size]) for lo in range(0, len(samples), batch_size)])


def image_shape(loaded: LoadedModel, decode: Callable | None) -> tuple[int, ...]:
    if decode is None:
        return tuple(loaded.shape)
    return tuple(decode(torch.zeros(1, *loaded.shape)).shape[1:])


def resolve_scorer(loaded: LoadedModel, classifier: str | Path | None,
                   label_map: dict[int, int] | None) -> Scorer | None:
    """``--classifier``, else the classifier shipped in the pipeline folder (built-ins), else None."""
    if classifier is not None:
        return load_scorer(classifier, loaded.device, label_map)
    scorer = shipped_scorer(loaded)
    if scorer is not None:
        scorer.label_map = label_map
    return scorer


def classifier_path(classifier: str | Path | None) -> Path | None:
    """The file or folder a ``classifier`` option reads (an input of the output check); None for ``BUILTIN``."""
    return None if classifier is None or str(classifier) == BUILTIN else Path(classifier)


def shipped_scorer(loaded: LoadedModel) -> Scorer | None:
    """The classifier shipped in the model's pipeline folder (``classifier/``; the built-ins), else None."""
    root = loaded.root
    if root is not None and (Path(root) / "classifier" / "config.json").is_file():
        return load_scorer(Path(root) / "classifier", loaded.device)
    return None


def required_scorer(loaded: LoadedModel, classifier: str | Path) -> Scorer:
    """``classifier``: a path in one of the forms above, or ``BUILTIN`` for the one the model ships (a user error
    where it ships none)."""
    if str(classifier) != BUILTIN:
        return load_scorer(classifier, loaded.device)
    scorer = shipped_scorer(loaded)
    if scorer is None:
        raise UserError(f"{loaded.info['id']} ships no classifier (no classifier/ in its folder)",
                        "give `classifier` PATH: a diffcrit classifier folder, a TorchScript file or a transformers "
                        "folder")
    return scorer


def predicted_classes(scorer: Scorer, samples: torch.Tensor, decode: Callable | None,
                      batch_size: int) -> np.ndarray:
    """The classifier's class (argmax logit index) (N,) int of final samples (N, C, H, W) in the model's frame
    (latents decoded first)."""
    return classify(scorer, decode_all(samples, decode, batch_size), batch_size).argmax(1).numpy()


__all__ = ["BUILTIN", "Scorer", "check_runs", "check_scorer", "classifier_path", "classify", "decode_all",
           "image_shape", "latent_decoder", "load_scorer", "parse_label_map", "predicted_classes", "required_scorer",
           "resolve_scorer", "shipped_scorer"]
