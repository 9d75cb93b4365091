"""Resolve what ``--model`` names into a ``LoadedModel`` (docs/design.md §9).

Accepted: a callable ``denoise(y, sigma)`` (with ``shape``), ``builtin:NAME[?k=v]``, a local
pipeline folder (model_index.json), a bare model folder (config.json, optional subfolder), a folder
of component folders only (unet/ or transformer/, scheduler/), or a hub id (downloaded once into the
hub cache, only what analysis reads: ``hub_files``; ``offline`` uses the cache only). Weights may be
safetensors or .bin, sharded, and of a ``variant``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from . import builtins
from ..config import ConditioningConfig, KarrasConfig, ModelConfig
from .denoisers import CallableDenoiser, Denoiser, DiffusersDenoiser
from .families import Family, check_generative, family_named, latent_grid, model_family
from ..errors import LibraryWarning, UserError, shorten
from .revision import folder_revision
from .schedulers import check_supported, family_of

DENOISER_COMPONENTS = ("unet", "transformer")
# What analysis reads from a hub repo: the denoiser, scheduler, text encoders and tokenizers (no VAE: latent
# models are analysed in latent space), top-level configs, and a bare model repo's own weights.
HUB_FOLDERS = ("unet", "transformer", "scheduler", "text_encoder*", "tokenizer*")
ROOT_FILES = ("*.json", "diffusion_pytorch_model*")
log = logging.getLogger("diffcrit")  # status lines (e.g. the hub being contacted); the CLI shows INFO unless --quiet
OTHER_FORMATS = (".msgpack", ".onnx", ".onnx_data", ".pb", ".ckpt", ".h5")  # weights torch does not load
HUB_PATTERNS = [*ROOT_FILES, *(f"{folder}/*" for folder in HUB_FOLDERS)]  # offline: whatever the cache holds


@dataclass
class LoadOptions:
    """Where and how to load: not part of the analysis config (they do not change results)."""

    subfolder: str | None = None
    revision: str | None = None
    variant: str | None = None
    offline: bool = False

    def __post_init__(self) -> None:
        self.offline = self.offline or hub_offline_by_environment()


def hub_offline_by_environment() -> bool:
    """``HF_HUB_OFFLINE=1`` (or ON, YES, TRUE), which huggingface_hub obeys too: the same as ``--offline``."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


@dataclass
class LoadedModel:
    """Everything the engine needs, whatever the family.

    denoiser: the docs/design.md §2 contract; ``scheduler`` (diffusers models) or none (a bare denoiser, sampled on
    the Karras schedule): what ``sampling.steppers.make_stepper`` builds a sampler from;
    conditioning(n) -> per-sample conditioning dict for n samples (or None);
    theory(sigmas, directions) -> exact predictions (analytic models) or None.
    """

    denoiser: Denoiser
    shape: tuple[int, int, int]
    info: dict
    device: torch.device
    conditioning: Callable[[int], dict | None] = lambda n: None
    theory: Callable | None = None
    module: torch.nn.Module | None = None
    half_precision: bool = False
    scheduler: Any = None  # diffusers models: the scheduler their stepper follows
    set_timesteps: Callable[[Any, int], None] | None = None  # diffusers models: as their pipeline sets them
    root: Path | None = None  # diffusers models: the pipeline or model folder (a hub snapshot)


def with_class_label(loaded: LoadedModel, label: int, conditioning: ConditioningConfig | None = None) -> LoadedModel:
    """The same loaded class-conditional diffusers model, conditioned on class ``label`` (and otherwise as
    ``conditioning`` says) instead: no second load."""
    from .conditioning import build_conditioning

    wanted = dataclasses.replace(conditioning or ConditioningConfig(), class_label=label)
    conditioning, info = build_conditioning(loaded.module, loaded.root, wanted)
    return dataclasses.replace(loaded, conditioning=conditioning, info={**loaded.info, "conditioning": info})


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` (``config.DEVICES``) names, checked to exist: one line naming what is missing."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"`device` {name}: no CUDA device is available", "use `device` cpu or auto",
                            option="device")
        count, index = torch.cuda.device_count(), torch.device(name).index
        if index is not None and index >= count:
            raise UserError(f"`device` {name}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}",
                            "name one of them, or `device` cuda for the current one", option="device")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("`device` mps: no MPS device is available (Apple silicon, with a torch built for it)",
                        "use `device` cpu or auto", option="device")
    return torch.device(name)


class _AsWarnings(logging.Handler):
    """Log records of another library, re-issued as ``LibraryWarning``s (first line of the message)."""

    def emit(self, record: logging.LogRecord) -> None:
        warnings.warn(shorten(record.getMessage()), LibraryWarning, stacklevel=2)


@contextlib.contextmanager
def library_logs():
    """While a model loads: what diffusers and transformers log at WARNING and above comes as ``LibraryWarning``s
    instead of their own stderr lines (the caller decides what to show: the CLI, one "warning:" line each)."""
    import importlib

    handler = _AsWarnings(logging.WARNING)
    libraries = [importlib.import_module(f"{name}.utils.logging") for name in ("diffusers", "transformers")
                 if importlib.util.find_spec(name) is not None]
    for library in libraries:
        library.disable_default_handler()
        library.add_handler(handler)
    try:
        yield
    finally:
        for library in libraries:
            library.remove_handler(handler)
            library.enable_default_handler()


def load_model(model: Any, config: ModelConfig, conditioning: ConditioningConfig | None = None,
               shape: tuple[int, int, int] | None = None, options: LoadOptions | None = None) -> LoadedModel:
    """``model`` (hub id, folder, ``builtin:NAME`` or a callable ``denoise(y, sigma)`` with ``shape``) loaded on
    ``config``'s device and dtype, with its scheduler, conditioned as ``conditioning`` says; ``conditioning=None``:
    no conditioning is built (the caller conditions every step itself, as guide does)."""
    options = options or LoadOptions()
    device = resolve_device(config.device)
    if callable(model) and not isinstance(model, (str, Path)):
        _refuse_changed(config, SCHEDULER_OPTIONS, ModelConfig, "diffusers models", "a callable denoiser")
        if shape is None:
            raise UserError("a callable denoiser needs shape=(C, H, W)")
        name = getattr(model, "__name__", type(model).__name__)
        return _karras_model(CallableDenoiser(model), tuple(shape), conditioning, device,
                             {"id": name, "kind": "callable", "class": type(model).__name__}, model=model)
    spec = str(model)
    if spec.startswith(builtins.PREFIX):
        entry, kwargs = builtins.parse_spec(spec)
        if entry.path is not None:
            if conditioning is not None and conditioning.class_label is None and entry.null_class is not None:
                conditioning = dataclasses.replace(conditioning, class_label=entry.null_class)  # unconditional
            loaded = load_diffusers(entry.path, config, conditioning, device, options)
            loaded.info.update(id=spec, kind="builtin")
            return loaded
        _refuse_changed(config, SCHEDULER_OPTIONS, ModelConfig, "diffusers models", spec)
        analytic = entry.factory(**kwargs)
        info = {"id": spec, "kind": "builtin", "class": type(analytic).__name__, "parameters": analytic.describe()}
        return _karras_model(CallableDenoiser(analytic), analytic.shape, conditioning, device, info, model=analytic)
    path = Path(spec).expanduser()
    if path.exists():
        return load_diffusers(path, config, conditioning, device, options)
    return load_diffusers(download(_hub_id(spec), options), config, conditioning, device, options, hub_id=spec)


SCHEDULER_OPTIONS = ("scheduler", "prediction_type")  # a diffusers model's scheduler


def has_scheduler(model: Any) -> bool:
    """Whether ``model`` is sampled by a diffusers scheduler of its own (else Euler on the Karras schedule), read
    from the name alone."""
    if callable(model) and not isinstance(model, (str, Path)):
        return False
    spec = str(model)
    return not spec.startswith(builtins.PREFIX) or builtins.parse_spec(spec)[0].path is not None


def refuse_unused_karras(model: Any, karras: KarrasConfig) -> None:
    """A Karras setting changed for a model with a scheduler of its own would be recorded but never used: refused,
    before anything is loaded."""
    if has_scheduler(model):
        _refuse_changed(karras, tuple(karras.karras), KarrasConfig, "callable and analytic models", model)


def _refuse_changed(config: Any, names: tuple[str, ...], defaults: type, users: str, model: Any) -> None:
    """An option of ``config`` set away from its default (``defaults``' field) that ``model`` does not use is
    refused, not recorded (it applies to ``users`` only)."""
    for name in names:
        if getattr(config, name) != getattr(defaults, name):
            raise UserError(f"`{name}` applies to {users} only; {model} does not use it", f"drop `{name}`",
                            option=name)


@dataclass
class SchedulerOnly:
    """What counting steps needs of a diffusers model, read from its folder without weights: its scheduler as its
    pipeline has it and the pipeline's ``set_timesteps``; ``info`` as ``LoadedModel.info`` (id, class, scheduler)."""

    scheduler: Any
    set_timesteps: Callable[[Any, int], None]
    info: dict
    root: Path


def load_scheduler(model: Any, config: ModelConfig, options: LoadOptions | None = None) -> SchedulerOnly:
    """The scheduler of a diffusers model (folder, hub id or built-in) for step counts; no weights are read (a hub
    model: its JSON files only). A model without one (analytic built-ins, callables) is a user error."""
    from diffusers.configuration_utils import FrozenDict

    options = options or LoadOptions()
    spec = str(model)
    if spec.startswith(builtins.PREFIX):
        entry, _ = builtins.parse_spec(spec)
        if entry.path is None:
            raise UserError(f"{spec} is an analytic model without a diffusers scheduler",
                            "give a diffusers model folder or hub id")
        root = Path(entry.path)
    elif Path(spec).expanduser().exists():
        root = Path(spec).expanduser()
    elif isinstance(model, (str, Path)):
        root = download(_hub_id(spec), options, ["*.json"])
    else:
        raise UserError(f"{type(model).__name__} has no diffusers scheduler", "give a diffusers model folder or hub id")
    model_folder, scheduler_folder = _model_folder(root, options)
    class_name, family = _model_family(model_folder)
    scheduler = family.pipeline_scheduler(_load_scheduler(scheduler_folder, config), root)
    module_config = FrozenDict(_read_json(model_folder / "config.json"))  # attribute access, as a module's config
    grid, _ = latent_grid(family, module_config, root, config.height, config.width)
    info = {"id": spec, "kind": "builtin" if spec.startswith(builtins.PREFIX) else "diffusers", "class": class_name,
            "scheduler": type(scheduler).__name__, **revision_info(root, options)}
    return SchedulerOnly(scheduler, functools.partial(family.set_timesteps, grid=grid, config=module_config), info,
                         root)


def model_shape(model: str, options: LoadOptions | None = None, height: int | None = None,
                width: int | None = None) -> tuple[int, int, int] | None:
    """The (C, H, W) ``load_model`` would give (at --height/--width where the family takes them), read cheaply for
    checks before an analysis: an analytic built-in's options, a folder's (or cached hub snapshot's) config.json;
    no weights. None when unstated."""
    from diffusers.configuration_utils import FrozenDict

    options = options or LoadOptions()
    spec = str(model)
    if spec.startswith(builtins.PREFIX):
        entry, kwargs = builtins.parse_spec(spec)
        if entry.path is None:
            return tuple(entry.factory(**kwargs).shape)
        root = entry.path
    else:
        path = Path(spec).expanduser()
        root = path if path.exists() else download(_hub_id(spec), options)
    folder, _ = _model_folder(Path(root), options)
    config = FrozenDict(_read_json(folder / "config.json"))  # attribute access, as a loaded module's config
    try:
        family = family_named(str(config.get("_class_name")))
        grid, _ = latent_grid(family, config, Path(root), height, width)
        return family.channels(config), *grid
    except (KeyError, TypeError, ValueError, AttributeError, UserError):
        return None


def model_source(model: Any) -> Path | None:
    """The local folder (or file) ``model`` reads: a folder as given, a built-in checkpoint's folder, a hub id's
    cache folder (models--owner--name); None for a callable or an analytic built-in. Nothing is loaded: this is
    what outputs are checked against before any work (``io.check_outputs``)."""
    if callable(model) and not isinstance(model, (str, Path)):
        return None
    spec = str(model)
    if spec.startswith(builtins.PREFIX):
        return builtins.parse_spec(spec)[0].path
    path = Path(spec).expanduser()
    if os.path.lexists(path) or spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        return path
    from huggingface_hub.constants import HF_HUB_CACHE

    return Path(HF_HUB_CACHE) / ("models--" + spec.replace("/", "--"))


def _hub_id(spec: str) -> str:
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise UserError(f"model {spec!r} is neither a folder nor a hub id (owner/name) nor builtin:NAME",
                        "check the path; `diffcrit models` lists the built-ins")
    return spec


def _karras_model(denoiser: CallableDenoiser, shape, conditioning: ConditioningConfig | None, device, info: dict,
                  model: Any) -> LoadedModel:
    from .conditioning import check_unconditional

    if conditioning is not None:
        check_unconditional(conditioning, info["id"])
    if isinstance(model, torch.nn.Module):
        model.to(device)
    info.update(shape=list(shape), scheduler="KarrasEuler", prediction_type="denoised", conditioning=None)

    return LoadedModel(denoiser, tuple(shape), info, device, module=denoiser.module,
                       theory=getattr(model, "theory", None))


def hub_files(filenames: list[str], variant: str | None = None, subfolder: str | None = None) -> list[str]:
    """The files of a hub repo (its listing) that analysis needs, weights in one format and variant.

    Weights are safetensors when every needed component has them, else .bin, and of ``variant`` where it
    exists, as diffusers itself chooses (``is_safetensors_compatible``, ``variant_compatible_siblings``).
    """
    from diffusers.pipelines.pipeline_loading_utils import (filter_model_files, is_safetensors_compatible,
                                                            variant_compatible_siblings)

    folders = (*HUB_FOLDERS, subfolder) if subfolder else HUB_FOLDERS
    needed = [f for f in filenames if _hub_needed(f, folders) and not f.endswith(OTHER_FORMATS)]
    weights = sorted(filter_model_files(needed))
    components = {f.split("/")[0] for f in weights if "/" in f}
    safe = is_safetensors_compatible(weights, folder_names=components or None, variant=variant)
    ignore = ["*.bin", "*.msgpack", "*.onnx", "*.pb"] if safe else ["*.safetensors", "*.msgpack", "*.onnx", "*.pb"]
    try:
        chosen, _ = variant_compatible_siblings(weights, variant=variant, ignore_patterns=ignore)
    except ValueError:
        raise UserError(f"the repo has no weights of variant {variant!r}", "drop `variant` or pick another") from None
    return sorted((set(needed) - set(weights)) | set(chosen))


def revision_info(root: Path, options: LoadOptions) -> dict:
    """``revision``: which weights were read (``models/revision.py``: the hub commit, or the fingerprint of the files
    analysis reads from a folder); ``revision_requested``: the ``revision`` asked for (a branch, tag or commit)."""
    folders = (*HUB_FOLDERS, options.subfolder) if options.subfolder else HUB_FOLDERS
    return {"revision": folder_revision(root, lambda path: _hub_needed(path, folders)),
            "revision_requested": options.revision}


def _hub_needed(path: str, folders: tuple[str, ...]) -> bool:
    parts = path.split("/")
    if len(parts) == 1:
        return any(fnmatch.fnmatch(path, pattern) for pattern in ROOT_FILES)
    return any(fnmatch.fnmatch(parts[0], folder) for folder in folders)


def download(repo_id: str, options: LoadOptions, patterns: list[str] | None = None, what: str | None = None,
             hint: str | None = None) -> Path:
    """Fetch the files of a hub repo matching ``patterns`` into the cache; the snapshot folder. Default: what
    analysis needs (``hub_files``; ``offline``: whatever the cache holds). ``what``/``hint``: the error's words."""
    from huggingface_hub import HfApi, snapshot_download

    log.info(f"reading {repo_id} from the local hub cache" if options.offline else f"contacting the hub for {repo_id}")
    try:
        with _quiet_hub_retries():
            if patterns is None:
                patterns = HUB_PATTERNS if options.offline else hub_files(
                    HfApi().list_repo_files(repo_id, revision=options.revision), options.variant, options.subfolder)
            return Path(snapshot_download(repo_id, revision=options.revision, allow_patterns=patterns,
                                          local_files_only=options.offline))
    except UserError:
        raise
    except Exception as err:  # hub errors come in many types: offline, 404, gated, no network
        reason = shorten(str(err), 160) if str(err) else type(err).__name__
        if hint is None and options.offline:
            hint = ("`offline` (or HF_HUB_OFFLINE=1) reads the local cache only: run once without it to download, "
                    "or pass a local folder")
        raise UserError(f"{what or f'could not get hub model {repo_id!r}'}: {reason}",
                        hint or "check the id, or pass a local folder (save_pretrained), "
                        "or `offline` with a cached copy") from None


@contextlib.contextmanager
def _quiet_hub_retries():
    """huggingface_hub logs each retry of a failing request as a warning; the failure itself becomes one line here."""
    from huggingface_hub.utils import logging as hub_logging

    verbosity = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()
    try:
        yield
    finally:
        hub_logging.set_verbosity(verbosity)


def _read_json(path: Path) -> dict:
    """A JSON object of a model folder; an unreadable, empty, invalid or non-object file is a user error."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    if not text.strip():
        raise UserError(f"{path} is empty", "write the folder again (save_pretrained)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    except RecursionError:
        raise UserError(f"{path} is nested too deeply to be a model config") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} holds a JSON {type(data).__name__}, not an object",
                        "write the folder again (save_pretrained)")
    return data


def _model_folder(root: Path, options: LoadOptions) -> tuple[Path, Path | None]:
    """(denoiser folder, scheduler folder or None) of a pipeline, bare model or component-only folder."""
    if options.subfolder:
        folder = root / options.subfolder
        if not (folder / "config.json").exists():
            raise UserError(f"{folder} has no config.json", "check `subfolder`")
        return folder, _scheduler_folder(root)
    if (root / "model_index.json").exists():
        index = _read_json(root / "model_index.json")
        names = [c for c in DENOISER_COMPONENTS if c in index]
        if not names:
            raise UserError(f"{root}/model_index.json names no denoiser component",
                            f"expected one of: {', '.join(DENOISER_COMPONENTS)}")
        return root / names[0], _scheduler_folder(root)
    if (root / "config.json").exists():
        return root, None
    folder = next((root / c for c in DENOISER_COMPONENTS if (root / c / "config.json").exists()), None)
    if folder is not None:  # a repo of component folders only (unet/, scheduler/), no model_index.json
        return folder, _scheduler_folder(root)
    raise UserError(f"{root} has neither model_index.json nor config.json",
                    "pass a pipeline folder, a model folder, or use `subfolder`")


def _scheduler_folder(root: Path) -> Path | None:
    scheduler = root / "scheduler"
    return scheduler if (scheduler / "scheduler_config.json").exists() else None


def _load_scheduler(folder: Path | None, config: ModelConfig):
    """The folder's scheduler (or ``--scheduler``, which overrides it), checked to be one diffcrit can follow."""
    import diffusers

    name = config.scheduler
    if folder is None and name is None:
        raise UserError("this model folder has no scheduler",
                        "pass `scheduler` (a diffusers scheduler class, e.g. DDPMScheduler)")
    stored = _read_json(folder / "scheduler_config.json") if folder is not None else {}
    wanted = name or stored.get("_class_name")
    check_supported(str(wanted))
    cls = getattr(diffusers, str(wanted), None)
    if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        raise UserError(f"unknown scheduler {wanted}", "name a diffusers scheduler class, e.g. `scheduler` "
                        "DDPMScheduler")
    overrides = {"prediction_type": config.prediction_type} if config.prediction_type else {}
    try:
        scheduler = cls.from_config({**stored, **overrides}) if stored else cls(**overrides)
    except (TypeError, ValueError, RuntimeError) as err:  # a value of the wrong type or range
        where = folder / "scheduler_config.json" if folder is not None else wanted
        raise UserError(f"cannot build {wanted} from {where}: {shorten(str(err), 160)}",
                        "check its values, or write the folder again (save_pretrained)") from None
    family_of(scheduler)  # refuses, naming why, a scheduler outside every family
    return scheduler


def _model_family(folder: Path) -> tuple[str, Family]:
    """The denoiser's ``_class_name`` from its config.json and its family, checked before anything else is read."""
    stored = _read_json(folder / "config.json")
    class_name = stored.get("_class_name")
    if class_name is None:
        raise UserError(f"{folder / 'config.json'} has no _class_name", "write the folder again (save_pretrained)")
    family = family_named(class_name, folder / "config.json")
    check_generative(family, class_name, stored)
    return class_name, family


def _load_denoiser_module(folder: Path, class_name: str, config: ModelConfig, options: LoadOptions, device):
    import diffusers

    dtype = getattr(torch, config.dtype)
    try:  # diffusers itself remaps a hub DiT config class to its DiT class (``Family.remapped``)
        module = getattr(diffusers, class_name).from_pretrained(folder, variant=options.variant, torch_dtype=dtype)
    except (OSError, ValueError, EnvironmentError) as err:
        raise UserError(f"cannot load {class_name} from {folder}: {shorten(str(err), 200)}") from None
    model_family(module, class_name)  # refuses what loaded as a class no family covers
    missing = [name for name, tensor in module.state_dict().items() if tensor.is_meta]
    if missing:  # diffusers leaves tensors the weights file lacks on the meta device
        raise UserError(f"the weights in {folder} lack {len(missing)} of {class_name}'s tensors (e.g. {missing[0]})",
                        "the weights file belongs to another model: write the folder again (save_pretrained)")
    return module.to(device).eval().requires_grad_(False)


def load_diffusers(root: Path, config: ModelConfig, conditioning: ConditioningConfig | None, device: torch.device,
                   options: LoadOptions, hub_id: str | None = None) -> LoadedModel:
    """A diffusers UNet or transformer and its scheduler, sampled exactly as its pipeline does, on its family's
    latent grid (``families.latent_grid``: unpacked, at --height/--width where the family takes them)."""
    with library_logs():
        return _load_diffusers(Path(root), config, conditioning, device, options, hub_id)


def _load_diffusers(root: Path, config: ModelConfig, conditioning: ConditioningConfig | None, device: torch.device,
                    options: LoadOptions, hub_id: str | None) -> LoadedModel:
    from .conditioning import build_conditioning

    if not root.is_dir():
        raise UserError(f"model folder {root} does not exist")
    model_folder, scheduler_folder = _model_folder(root, options)
    class_name, family = _model_family(model_folder)
    scheduler = family.pipeline_scheduler(_load_scheduler(scheduler_folder, config), root)
    module = _load_denoiser_module(model_folder, class_name, config, options, device)
    denoiser = DiffusersDenoiser(module, frame=family_of(scheduler).frame(scheduler))
    prediction_type = denoiser.prediction_type
    grid, pixels = latent_grid(family, module.config, root, config.height, config.width)
    shape = (family.channels(module.config), *grid)
    if min(shape) < 1:
        raise UserError(f"{model_folder / 'config.json'} gives samples of shape {shape}", "every size must be >= 1")
    make_cond, cond_info = build_conditioning(module, root, conditioning, pixels) if conditioning is not None \
        else ((lambda n: None), None)
    info = {"id": hub_id or str(root), "kind": "diffusers", "class": type(module).__name__,
            "scheduler": type(scheduler).__name__, "prediction_type": prediction_type, "shape": list(shape),
            "conditioning": cond_info, "dtype": config.dtype,
            "subfolder": options.subfolder, "variant": options.variant, **revision_info(root, options)}
    if pixels is not None:
        info["pixels"] = list(pixels)
    set_timesteps = functools.partial(family.set_timesteps, grid=grid, config=module.config)
    return LoadedModel(denoiser, shape, info, device, conditioning=make_cond, module=module,
                       half_precision=config.dtype != "float32", scheduler=scheduler, root=root,
                       set_timesteps=set_timesteps)
