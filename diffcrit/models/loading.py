"""Resolve what ``--model`` names into a ``LoadedModel`` (docs/design.md §9).

Accepted: a callable ``denoise(y, sigma)`` (with ``shape``), a diffusers pipeline or denoiser module the caller holds
(``hold``: docs/models.md, "Objects you hold"), ``builtin:NAME[?k=v]``, a local
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
import sys
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


@dataclass(eq=False)
class HeldModel:
    """A diffusers denoiser the caller holds in memory (docs/models.md, "Objects you hold"), as ``hold`` makes it:
    ``module`` (a UNet or transformer), the ``scheduler`` it is sampled by (read, never changed: a copy is built
    from its config), ``kind`` "pipeline" (taken from a ``DiffusionPipeline``, class ``pipeline``) or "module",
    ``name`` (its ``name_or_path``, else its class) and ``root``, the folder it came from (a pipeline's, or the
    pipeline folder a component was loaded from; None): what conditioning, the VAE scale and ``model_source`` read."""

    module: torch.nn.Module
    scheduler: Any
    kind: str
    name: str
    root: Path | None = None
    pipeline: str | None = None

    def __str__(self) -> str:
        return self.name


def hold(model: Any, scheduler: Any = None) -> Any:
    """``model`` as ``load_model`` takes it: a ``DiffusionPipeline`` (its unet or transformer and its scheduler) or
    a denoiser ``ModelMixin`` with ``scheduler`` becomes a ``HeldModel``; a scheduler given with a pipeline replaces
    its own. Anything else (hub id, folder, built-in, callable) is returned as it is. A module of a class no family
    covers (a VAE), or without a scheduler, is a user error."""
    if isinstance(model, HeldModel):
        return model if scheduler is None else dataclasses.replace(model, scheduler=scheduler)
    found = _diffusers_object(model)
    if found is None:
        if scheduler is not None:
            raise UserError(f"a `scheduler` object goes with a diffusers pipeline or denoiser module, not {model}",
                            "name its class instead (e.g. `scheduler` DDIMScheduler)", option="scheduler")
        return model
    kind, obj = found
    module = _denoiser_of(kind, obj)
    if module is None:
        raise UserError(f"{type(obj).__name__} has no {' or '.join(DENOISER_COMPONENTS)} to analyse",
                        "pass a diffusion pipeline or its denoiser")
    model_family(module)  # a class no family covers (a VAE, a text encoder) is refused before anything else
    scheduler = scheduler if scheduler is not None else getattr(obj, "scheduler", None)
    if scheduler is None:
        raise UserError(f"a {type(module).__name__} alone has no scheduler to sample it by",
                        "pass the pipeline, or the module with `scheduler` (e.g. scheduler=pipe.scheduler)",
                        option="scheduler")
    import diffusers

    if not isinstance(scheduler, diffusers.SchedulerMixin):
        raise UserError(f"`scheduler` is a {type(scheduler).__name__}, not a diffusers scheduler",
                        "pass a scheduler object (e.g. pipe.scheduler) or a scheduler class name", option="scheduler")
    return HeldModel(module, scheduler, kind, _name_or_path(obj) or type(obj).__name__, _object_root(kind, obj),
                     type(obj).__name__ if kind == "pipeline" else None)


def held_model(model: Any, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(``model`` as ``load_model`` takes it, the other options) for the API's entry points: a ``scheduler`` object
    among ``options`` goes with the model (``hold``); a class name stays an option, overriding the model's own."""
    scheduler = options.get("scheduler")
    if scheduler is None or isinstance(scheduler, str):
        return hold(model), options
    return hold(model, scheduler), {name: value for name, value in options.items() if name != "scheduler"}


def takes_held_models(entry: Callable) -> Callable:
    """An entry point ``entry(model, **keywords)`` (analyze, guide, suggest) that also takes the objects a caller
    holds: ``model`` made a ``HeldModel`` with a ``scheduler`` object among the keywords (``held_model``), borrowed
    for the call (``borrowed``)."""
    @functools.wraps(entry)
    def wrapper(model: Any, **keywords: Any) -> Any:
        model, keywords = held_model(model, keywords)
        with borrowed(model):
            return entry(model, **keywords)

    return wrapper


@contextlib.contextmanager
def borrowed(model: Any):
    """While diffcrit works with a held module: eval mode and no gradients (dropout off, no autograd graph); on
    exit, errors too, every submodule's training flag and every parameter's ``requires_grad`` are as they were.
    Nothing for other models."""
    if not isinstance(model, HeldModel):
        yield
        return
    training = [(m, m.training) for m in model.module.modules()]
    grads = [(p, p.requires_grad) for p in model.module.parameters()]
    model.module.eval().requires_grad_(False)
    try:
        yield
    finally:
        for m, flag in training:
            m.training = flag
        for p, flag in grads:
            p.requires_grad_(flag)


def _diffusers_object(model: Any) -> tuple[str, Any] | None:
    """("pipeline", a DiffusionPipeline) or ("module", a ModelMixin); None for anything else. Only once diffusers is
    imported can such an object exist, so names and callables never import it here."""
    diffusers = sys.modules.get("diffusers")
    if diffusers is None or isinstance(model, (str, Path)):
        return None
    if isinstance(model, diffusers.DiffusionPipeline):
        return "pipeline", model
    if isinstance(model, diffusers.ModelMixin):
        return "module", model
    return None


def _denoiser_of(kind: str, obj: Any) -> torch.nn.Module | None:
    """A pipeline's unet or transformer (None: it has neither); a module itself (``_diffusers_object``'s kinds)."""
    if kind == "module":
        return obj
    return next((getattr(obj, c) for c in DENOISER_COMPONENTS if getattr(obj, c, None) is not None), None)


def _object_root(kind: str, obj: Any) -> Path | None:
    """The folder a pipeline or module came from (``_held_root``): its own ``name_or_path``, else its denoiser's (a
    pipeline read from a hub id loaded its components from the snapshot folder of the revision it read)."""
    module = _denoiser_of(kind, obj)
    return _held_root(_name_or_path(obj)) or (_held_root(_name_or_path(module)) if module is not None else None)


def _name_or_path(obj: Any) -> str | None:
    """What a pipeline or module was loaded from (``from_pretrained``'s argument), None for one built in memory."""
    source = obj.config.get("_name_or_path")
    return str(source) if source else None


def _held_root(source: str | None) -> Path | None:
    """The folder a held object reads besides its weights: a pipeline folder as it is; a module's folder, or the
    pipeline folder it is a component of (its parent has model_index.json), as the folder run of that pipeline
    reads it. None when it came from no local folder (built in memory, or a hub id: ``_object_root``)."""
    path = Path(source).expanduser() if source else None
    if path is None or not path.is_dir():
        return None
    return path.parent if (path.parent / "model_index.json").is_file() and not (path / "model_index.json").is_file() \
        else path


def _held_device(module: torch.nn.Module, config: ModelConfig) -> torch.device:
    """The device of a held module (``device`` auto means it); another device or dtype than the module's is refused:
    diffcrit neither moves nor copies what the caller holds."""
    have = module.device
    if config.device != "auto":
        wanted = resolve_device(config.device)
        if wanted.type != have.type or wanted.index not in (None, have.index):
            raise UserError(f"`device` {config.device}: the {type(module).__name__} you hold is on {have}",
                            f"pass `device` {have} (or auto), or move it first (pipe.to(\"{config.device}\"))",
                            option="device")
    if getattr(torch, config.dtype) != module.dtype:
        dtype = str(module.dtype).removeprefix("torch.")
        raise UserError(f"`dtype` {config.dtype}: the {type(module).__name__} you hold is {dtype}",
                        f"pass `dtype` {dtype}, or convert it first (pipe.to(torch.{config.dtype}))", option="dtype")
    return have


def _held_family(held: HeldModel) -> Family:
    """The held module's family, checked as a folder's is; a latent family (VAE scale, text encoders) needs the
    folder the object came from."""
    module = held.module
    family = model_family(module)
    check_generative(family, type(module).__name__, dict(module.config))
    if family.vae_scale is not None and held.root is None:
        raise UserError(f"{held.name} came from no local folder: diffcrit reads a {family.label}'s VAE scale and "
                        "text encoders from the folder its pipeline was loaded from",
                        "load it with from_pretrained(FOLDER), or save_pretrained it and pass the folder")
    return family


def _held_scheduler(held: HeldModel, config: ModelConfig):
    """A new scheduler from the held one's config (``scheduler`` overrides its class, ``prediction_type`` its
    value, as for a folder's): the caller's own keeps its state (set_timesteps changes a scheduler)."""
    return _build_scheduler(dict(held.scheduler.config), config.scheduler or type(held.scheduler).__name__, config,
                            f"the {type(held.scheduler).__name__} of {held.name}")


def _load_held(held: HeldModel, config: ModelConfig, conditioning: ConditioningConfig | None,
               options: LoadOptions) -> LoadedModel:
    """A held module as it is (``_held_device``) with a copy of its scheduler, sampled as the folder it came from
    would be (``_diffusers_model``)."""
    given = [name for name in ("subfolder", "revision", "variant") if getattr(options, name) is not None]
    if given:
        raise UserError(f"`{given[0]}` chooses what to read from a folder or the hub; {held.name} is already loaded",
                        f"drop `{given[0]}`", option=given[0])
    family = _held_family(held)
    device = _held_device(held.module, config)
    identity = {"id": held.name, "kind": held.kind, "pipeline": held.pipeline}
    return _diffusers_model(held.module, family, _held_scheduler(held, config), held.root, config, conditioning,
                            device, identity, type(held.module).__name__)


def load_model(model: Any, config: ModelConfig, conditioning: ConditioningConfig | None = None,
               shape: tuple[int, int, int] | None = None, options: LoadOptions | None = None) -> LoadedModel:
    """``model`` (hub id, folder, ``builtin:NAME``, a callable ``denoise(y, sigma)`` with ``shape``, or a diffusers
    pipeline or ``HeldModel``: ``hold``) loaded on ``config``'s device and dtype, with its scheduler, conditioned as
    ``conditioning`` says; ``conditioning=None``: no conditioning is built (the caller conditions every step itself,
    as guide does). A held module is used as it is, on its own device and dtype (``_held_device``), not moved, copied
    or switched to eval mode: the API's entry points do that for the call (``borrowed``)."""
    options = options or LoadOptions()
    model = hold(model)
    if isinstance(model, HeldModel):
        with library_logs():
            return _load_held(model, config, conditioning, options)
    device = resolve_device(config.device)
    if callable(model) and not isinstance(model, (str, Path)):
        _refuse_changed(config, SCHEDULER_OPTIONS, ModelConfig, "diffusers models", "a callable denoiser")
        if shape is None:
            raise UserError(f"a callable denoiser ({type(model).__name__}) needs `shape` (C, H, W)",
                            "pass shape=, or a diffusers pipeline, or its denoiser with `scheduler`", option="shape")
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
    if isinstance(model, HeldModel) or _diffusers_object(model) is not None:
        return True
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
    root: Path | None


def load_scheduler(model: Any, config: ModelConfig, options: LoadOptions | None = None) -> SchedulerOnly:
    """The scheduler of a diffusers model (folder, hub id or built-in) for step counts; no weights are read (a hub
    model: its JSON files only). A model without one (analytic built-ins, callables) is a user error."""
    from diffusers.configuration_utils import FrozenDict

    options = options or LoadOptions()
    model = hold(model)
    if isinstance(model, HeldModel):
        family = _held_family(model)
        scheduler = family.pipeline_scheduler(_held_scheduler(model, config), model.root)
        return _scheduler_only(family, scheduler, model.module.config, model.root, config,
                               {"id": model.name, "kind": model.kind, "class": type(model.module).__name__})
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
    info = {"id": spec, "kind": "builtin" if spec.startswith(builtins.PREFIX) else "diffusers", "class": class_name,
            **revision_info(root, options)}
    return _scheduler_only(family, scheduler, module_config, root, config, info)


def _scheduler_only(family: Family, scheduler: Any, module_config: Any, root: Path | None, config: ModelConfig,
                    info: dict) -> SchedulerOnly:
    grid, _ = latent_grid(family, module_config, root, config.height, config.width)
    return SchedulerOnly(scheduler, functools.partial(family.set_timesteps, grid=grid, config=module_config),
                         {**info, "scheduler": type(scheduler).__name__}, root)


def model_shape(model: Any, options: LoadOptions | None = None, height: int | None = None,
                width: int | None = None) -> tuple[int, int, int] | None:
    """The (C, H, W) ``load_model`` would give (at --height/--width where the family takes them), read cheaply for
    checks before an analysis: an analytic built-in's options, a folder's (or cached hub snapshot's) config.json;
    no weights. None when unstated."""
    from diffusers.configuration_utils import FrozenDict

    options = options or LoadOptions()
    model = hold(model)
    if isinstance(model, HeldModel):
        family = _held_family(model)
        grid, _ = latent_grid(family, model.module.config, model.root, height, width)
        return family.channels(model.module.config), *grid
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
    cache folder (models--owner--name), the folder a held pipeline or module came from (``HeldModel.root``); None for
    a callable, an analytic built-in or an object built in memory. Nothing is loaded: this is what outputs are
    checked against before any work (``io.check_outputs``)."""
    if isinstance(model, HeldModel):
        return model.root
    found = _diffusers_object(model)
    if found is not None:
        return _object_root(*found)
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
    name = config.scheduler
    if folder is None and name is None:
        raise UserError("this model folder has no scheduler",
                        "pass `scheduler` (a diffusers scheduler class, e.g. DDPMScheduler)")
    stored = _read_json(folder / "scheduler_config.json") if folder is not None else {}
    return _build_scheduler(stored, name or stored.get("_class_name"), config,
                            folder / "scheduler_config.json" if folder is not None else None)


def _build_scheduler(stored: dict, wanted: Any, config: ModelConfig, where: Any):
    """Scheduler class ``wanted`` built from the ``stored`` config (a folder's JSON, a held scheduler's config; {}:
    its defaults) with ``prediction_type`` overridden, checked to be one diffcrit can follow; ``where``: whence the
    values came, for the error."""
    import diffusers

    check_supported(str(wanted))
    cls = getattr(diffusers, str(wanted), None)
    if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        raise UserError(f"unknown scheduler {wanted}", "name a diffusers scheduler class, e.g. `scheduler` "
                        "DDPMScheduler")
    overrides = {"prediction_type": config.prediction_type} if config.prediction_type else {}
    try:
        scheduler = cls.from_config({**stored, **overrides}) if stored else cls(**overrides)
    except (TypeError, ValueError, RuntimeError) as err:  # a value of the wrong type or range
        raise UserError(f"cannot build {wanted} from {where or wanted}: {shorten(str(err), 160)}",
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
    if not root.is_dir():
        raise UserError(f"model folder {root} does not exist")
    model_folder, scheduler_folder = _model_folder(root, options)
    class_name, family = _model_family(model_folder)
    scheduler = _load_scheduler(scheduler_folder, config)
    module = _load_denoiser_module(model_folder, class_name, config, options, device)
    identity = {"id": hub_id or str(root), "kind": "diffusers", "subfolder": options.subfolder,
                "variant": options.variant, **revision_info(root, options)}
    return _diffusers_model(module, family, scheduler, root, config, conditioning, device, identity,
                            model_folder / "config.json")


def _diffusers_model(module: torch.nn.Module, family: Family, scheduler: Any, root: Path | None, config: ModelConfig,
                     conditioning: ConditioningConfig | None, device: torch.device, identity: dict,
                     where: Any) -> LoadedModel:
    """A loaded (or held) denoiser and its scheduler as its pipeline samples them: the scheduler as the pipeline's
    constructor leaves it, the family's latent grid and ``set_timesteps``, the conditioning; ``identity``: the
    ``info`` keys of where it came from (id, kind, ...); ``where``: what names its config in errors."""
    from .conditioning import build_conditioning

    scheduler = family.pipeline_scheduler(scheduler, root)
    denoiser = DiffusersDenoiser(module, frame=family_of(scheduler).frame(scheduler))
    grid, pixels = latent_grid(family, module.config, root, config.height, config.width)
    shape = (family.channels(module.config), *grid)
    if min(shape) < 1:
        raise UserError(f"{where} gives samples of shape {shape}", "every size must be >= 1")
    make_cond, cond_info = build_conditioning(module, root, conditioning, pixels) if conditioning is not None \
        else ((lambda n: None), None)
    info = {**identity, "class": type(module).__name__, "scheduler": type(scheduler).__name__,
            "prediction_type": denoiser.prediction_type, "shape": list(shape), "conditioning": cond_info,
            "dtype": config.dtype}
    if pixels is not None:
        info["pixels"] = list(pixels)
    set_timesteps = functools.partial(family.set_timesteps, grid=grid, config=module.config)
    return LoadedModel(denoiser, shape, info, device, conditioning=make_cond, module=module,
                       half_precision=config.dtype != "float32", scheduler=scheduler, root=root,
                       set_timesteps=set_timesteps)
