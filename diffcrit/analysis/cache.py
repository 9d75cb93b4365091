"""The result cache: analyze documents kept where the hub keeps a library's assets, so that ``guide`` and
``reproduce`` take a t_c an earlier analyze of the same weights and config measured instead of sampling again
(docs/outputs.md "The result cache").

Where: ``huggingface_hub.cached_assets_path("diffcrit", "results", "analyze")``, i.e. HF_ASSETS_CACHE (by default
HF_HOME/assets)/diffcrit/results/analyze/<key>.json, each entry an analyze document as ``--out`` writes it.
Key: sha256 of what decides the document's numbers (``key_material``) — the weights (``model.revision``: the hub
commit or the folder's fingerprint, models/revision.py; the subfolder and variant), every field of the resolved
config with ``device`` as resolved (the device type, and the GPU's name: another device changes the floats), the
files the config names (``prompt_embeds``, ``classifier``: their fingerprints), and the diffcrit, torch and
diffusers versions. A model without a revision (a callable, an analytic built-in) is never cached.
Failures never fail a run: an entry that cannot be read as an analyze document is ignored with a warning (and
written anew by the next analyze), a cache that cannot be written is a warning.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from ..config import AnalyzeConfig
from ..errors import DiffcritWarning, UserError
from ..io import atomic_write_text
from ..models.loading import LoadedModel
from ..models.revision import fingerprint
from ..models.scorers import classifier_path
from ..report.document import KIND_ANALYZE, read_document, write_document

LIBRARY, NAMESPACE, SUBFOLDER = "diffcrit", "results", "analyze"  # cached_assets_path's three levels
SOURCE = "result cache"  # how a guide document's critical.source names a t_c read from here


def cache_folder() -> Path:
    """The folder of cached analyze documents (created): under HF_ASSETS_CACHE as huggingface_hub resolved it from
    the environment (``constants``, read when called: its own default is bound when its module is first imported).
    A folder that cannot be made is an ``OSError``."""
    from huggingface_hub import cached_assets_path, constants

    try:
        return cached_assets_path(library_name=LIBRARY, namespace=NAMESPACE, subfolder=SUBFOLDER,
                                  assets_dir=constants.HF_ASSETS_CACHE)
    except ValueError as err:  # huggingface_hub's word for a file where a folder should be
        raise NotADirectoryError(str(err)) from None


def entry_key(loaded: LoadedModel, config: AnalyzeConfig) -> str | None:
    """The entry's name (sha256 hex of ``key_material``); None where the run is not cached (no revision)."""
    material = key_material(loaded, config)
    if material is None:
        return None
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode("utf-8")).hexdigest()


def key_material(loaded: LoadedModel, config: AnalyzeConfig) -> dict | None:
    """What a cached document must share with the run (see the module docstring); None without a revision."""
    import diffusers

    from .. import __version__

    info = loaded.info
    if not info.get("revision"):  # callables, analytic built-ins, held objects
        return None
    return {"weights": {name: info.get(name) for name in ("revision", "subfolder", "variant")},
            "config": {**config.to_dict(), "device": device_name(loaded.device)},
            "files": _named_files(config, loaded.root),
            "versions": {"diffcrit": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__}}


def device_name(device: torch.device) -> str:
    """The device as it changes floats: its type, and the GPU's name for CUDA (not its index)."""
    return f"cuda {torch.cuda.get_device_name(device)}" if device.type == "cuda" else device.type


def _named_files(config: AnalyzeConfig, root: Path | None) -> dict[str, str | None]:
    """The fingerprints of the files the config names: ``prompt_embeds``; ``classifier`` (``builtin``: the model's
    own classifier/ folder)."""
    classifier = classifier_path(config.classifier)
    if config.classifier is not None and classifier is None and root is not None:
        classifier = Path(root) / "classifier"
    paths = {"prompt_embeds": None if config.prompt_embeds is None else Path(config.prompt_embeds),
             "classifier": classifier}
    return {name: fingerprint(path) if path is not None and path.exists() else None for name, path in paths.items()}


def read_entry(key: str) -> tuple[dict, Path] | None:
    """The cached analyze document named ``key`` and its path; None when there is none or it cannot be read as
    one (a warning then: it is written anew by the next analyze of this key)."""
    try:
        path = cache_folder() / f"{key}.json"
        if not path.is_file():
            return None
    except OSError:
        return None  # no cache folder can be made: a miss (writing warns)
    try:
        return read_document(path, KIND_ANALYZE, role="result cache entry"), path
    except UserError as err:
        warnings.warn(f"ignored a result cache entry that is not a readable analyze result ({err.message}); it is "
                      "measured again and overwritten", DiffcritWarning, stacklevel=2)
        return None


def write_entry(key: str, document: dict[str, Any]) -> Path | None:
    """Keep ``document`` as the entry ``key`` (atomically); a cache that cannot be written is a warning -> None."""
    try:
        path = cache_folder() / f"{key}.json"
        atomic_write_text(path, write_document(document), durable=False)
    except (OSError, UserError) as err:  # UserError: io's OutputError (a full disk, a read-only folder)
        warnings.warn(f"the result cache could not be written ({getattr(err, 'message', None) or err}); the result "
                      "is unaffected", DiffcritWarning, stacklevel=2)
        return None
    return path
