"""Every diffusers model family diffcrit analyses, one record each: the one place that knows model classes.

A family says, for the denoiser classes it covers (the ``_class_name`` of their config.json):

  call          how its pipeline calls the network: ``call(module, x, timestep, cond)`` with x (B, C, H, W) on the
                latent grid in the model's own frame, timestep (B,) the scheduler's, cond the keyword tensors of
                ``conditioning.py``; returns the raw output (B, C or 2C, H, W) on the same grid. A family that packs
                latents into tokens (Flux: 2x2 patches) packs and unpacks here, so sampling, probing and the recorded
                y and D(y) all live on the unpacked C x H x W grid (docs/design.md §2).
  conditioning  "class" (``--class-label``), "prompt" (``--prompt`` / ``--prompt-embeds``) or None.
  text          for prompt families: the pipeline whose ``encode_prompt`` encodes a prompt, with its arguments
                and what its outputs are called (the pipeline's own argument names, also the keys of a
                ``--prompt-embeds`` file), and ``to_cond``, which maps those embeddings to the model's keywords.
  resolution    the latent grid: fixed by ``sample_size`` (UNets, DiT), or the pipeline's default pixel size
                divided by its VAE scale factor, changeable with ``--height/--width`` (transformer pipelines).
  timesteps     how the pipeline sets the scheduler's timesteps (Flux's resolution-dependent shift ``mu``), and
                what its constructor changes in the scheduler's config (StableDiffusionPipeline's legacy fixes).

Adding a family is one record in ``FAMILIES``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import UserError
from .cond import GUIDANCE


# --------------------------------------------------------------------------------------------
# How each pipeline calls its network


def _call_positional(model, x, timestep, cond):
    """UNet2DModel / UNet2DConditionModel: ``model(x, t, **cond).sample``."""
    return model(x, timestep, **(cond or {})).sample


def _call_keyword(model, x, timestep, cond):
    """DiT, SD3, Sana-style transformers: ``model(x, timestep=t, **cond)``, first output."""
    return model(x, timestep=timestep, **(cond or {}), return_dict=False)[0]


def _call_pixart(model, x, timestep, cond):
    """PixArtAlphaPipeline: ``added_cond_kwargs`` always passed (None entries below 1024 px)."""
    cond = {"added_cond_kwargs": {"resolution": None, "aspect_ratio": None}, **(cond or {})}
    return _call_keyword(model, x, timestep, cond)


def _call_sana(model, x, timestep, cond):
    """SanaPipeline: the timestep times the transformer's ``timestep_scale``, output in float32."""
    return _call_keyword(model, x, timestep * model.config.timestep_scale, cond).float()


def _call_flux(model, x, timestep, cond):
    """FluxPipeline: x (B, C, H, W) packed into (B, H/2 W/2, 4C) tokens with their ``img_ids``, the text tokens'
    ``txt_ids`` all zero, timestep / 1000; the packed output unpacked back to (B, C, H, W) (the pipeline's own
    ``_pack_latents`` / ``_unpack_latents``; unpacking at VAE scale 1 keeps the latent grid)."""
    from diffusers import FluxPipeline

    b, c, h, w = x.shape
    cond = dict(cond or {})
    text = cond["encoder_hidden_states"]
    img_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, x.device, x.dtype)
    txt_ids = torch.zeros(text.shape[1], 3, device=x.device, dtype=text.dtype)
    packed = FluxPipeline._pack_latents(x, b, c, h, w)
    out = model(hidden_states=packed, timestep=timestep / 1000, img_ids=img_ids, txt_ids=txt_ids, **cond,
                return_dict=False)[0]
    return FluxPipeline._unpack_latents(out, h, w, 1)


# --------------------------------------------------------------------------------------------
# Class labels and classifier-free guidance


def _dit_classes(module) -> int | None:
    return int(module.config.num_embeds_ada_norm) if module.config.get("num_embeds_ada_norm") else None


def _unet_classes(module) -> int | None:
    return int(module.config.num_class_embeds) if module.config.get("num_class_embeds") else None


def _dit_guidance(module, card: dict) -> tuple[int, int, tuple[str, ...] | None]:
    """(classes, null id, names): null = num_embeds_ada_norm, the extra row LabelEmbedding has when trained with
    label dropout (DiTPipeline hard-codes 1000, ImageNet DiT's num_embeds_ada_norm)."""
    n = _dit_classes(module)
    rows = next((m.embedding_table.num_embeddings for m in module.modules()
                 if type(m).__name__ == "LabelEmbedding"), n)
    if rows <= n:
        raise UserError("this DiT has no null-class embedding (trained without label dropout)",
                        "classifier-free guidance needs one")
    return n, n, None


def _unet_guidance(module, card: dict) -> tuple[int, int, tuple[str, ...] | None]:
    """(classes, null id, names): null = num_class_embeds - 1, the last embedding (diffcrit's built-ins train it
    with label dropout; their train_config.json ``null_class`` must agree)."""
    embeds = _unet_classes(module)
    null = embeds - 1
    if card.get("null_class") is not None and int(card["null_class"]) != null:
        raise UserError(f"train_config.json says null_class {card['null_class']}, but the last of "
                        f"{embeds} class embeddings is {null}", "diffcrit expects the null class last")
    if null < 1:
        raise UserError(f"a UNet2DModel with {embeds} class embedding(s) has no real class besides the null one")
    names = tuple(card["classes"]) if len(card.get("classes") or []) == null else None
    return null, null, names


CLASS_CONDITIONAL = "a UNet2DModel with num_class_embeds, or a DiT"  # what classifier-free guidance needs
NOT_CLASS_CONDITIONAL = f"classifier-free guidance needs a class-conditional model ({CLASS_CONDITIONAL})"


def train_card(root: Path | None) -> dict:
    """A folder's ``train_config.json`` (diffcrit's built-ins: null class, class names), or {}."""
    path = Path(root) / "train_config.json" if root is not None else None
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def family_guidance(family: "Family", module, root: Path | None, hint: str) -> "ClassGuidance":
    """The class guidance of a loaded ``module`` of ``family`` (its null class); a user error (``hint``: what the
    model is) for a family or module without class labels."""
    if family.guidance is None or not family.class_count(module):
        raise UserError(NOT_CLASS_CONDITIONAL, hint)
    return ClassGuidance(family.name, *family.guidance(module, train_card(root)))


@dataclass(frozen=True)
class ClassGuidance:
    """Class ids 0..n_classes-1, the null id that gives eps(x_t, null), and the label keyword.

    CFG acts on the eps channels only: ``DiffusersDenoiser.model_output`` already drops a DiT's learned-variance
    channels that DiTPipeline carries through unguided; a UNet2DModel's are kept for its scheduler, unguided (the
    conditional prediction's). The null id per family: ``Family.guidance``.
    """

    family: str
    n_classes: int
    null_class: int
    class_names: tuple[str, ...] | None = None
    label_key: str = "class_labels"

    def labels(self, classes: torch.Tensor) -> dict:
        return {self.label_key: classes}

    def null_labels(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.full((n,), self.null_class, dtype=torch.long, device=device)

    def conditioning(self, classes: torch.Tensor, scale: torch.Tensor) -> dict:
        """The conditioning of samples of ``classes`` guided at per-sample ``scale`` (1: unguided) towards their
        class and away from the null class (``cond.GUIDANCE``)."""
        nulls = self.null_labels(len(classes), classes.device)
        return {**self.labels(classes), GUIDANCE: {"scale": scale, "unconditional": self.labels(nulls)}}

    def describe(self) -> dict:
        return {"family": self.family, "classes": self.n_classes, "null_class": self.null_class,
                "class_names": list(self.class_names) if self.class_names else None}


# --------------------------------------------------------------------------------------------
# Text: from the pipeline's embedding tensors (its own argument names) to the model's keywords.
# Embeddings are (1, ...) tensors; pixels = (height, width) of the image the latent grid stands for.


def _sd_cond(module, embeds: dict, pixels, guidance=None) -> dict:
    """SD 1.x/2.x: the CLIP hidden states; SDXL (``addition_embed_type="text_time"``): also the pooled projection
    and the time ids (original size, crop (0, 0), target size: ``_get_add_time_ids``) of the ``pixels`` image the
    pipeline draws by default (sample_size times its VAE scale factor)."""
    cond = {"encoder_hidden_states": embeds["prompt_embeds"]}
    if _text_time(module):
        pooled, config = embeds["pooled_prompt_embeds"].shape[-1], module.config
        expected = config.projection_class_embeddings_input_dim - pooled
        if expected != 6 * config.addition_time_embed_dim:  # the refiner: 5 ids, an aesthetic score for img2img
            raise UserError(f"this text_time UNet takes {expected / config.addition_time_embed_dim:g} time ids besides "
                            f"its {pooled}-wide pooled embedding, not SDXL's 6 (the SDXL refiner's aesthetic score?)",
                            "diffcrit samples SDXL base models from noise; the refiner refines images")
        height, width = pixels
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32)
        cond["added_cond_kwargs"] = {"text_embeds": embeds["pooled_prompt_embeds"], "time_ids": time_ids}
    if guidance is not None:  # guidance-distilled (LCM): the scale embedded as the pipelines embed it, no CFG
        from diffusers import LatentConsistencyModelPipeline

        cond["timestep_cond"] = LatentConsistencyModelPipeline.get_guidance_scale_embedding(
            None, torch.tensor([guidance - 1.0]), embedding_dim=module.config.time_cond_proj_dim)
    return cond


def pipeline_index(root: Path | None) -> dict:
    """A pipeline folder's ``model_index.json`` ({} for a bare model folder, or one that cannot be read: loading
    reports a broken index itself, ``loading._model_folder``)."""
    index = Path(root) / "model_index.json" if root is not None else None
    if index is None or not index.is_file():
        return {}
    try:
        data = json.loads(index.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _sd_distilled(module, root: Path, config) -> float | None:
    """A UNet with ``time_cond_proj_dim`` (LCM-distilled) takes its guidance scale as an input, ``timestep_cond``:
    ``--guidance-scale`` if given, else the default of the folder's pipeline (LatentConsistencyModelPipeline: 8.5;
    StableDiffusion(XL)Pipeline otherwise); its pipelines then do no CFG. None for other UNets."""
    if module.config.get("time_cond_proj_dim") is None:
        return None
    if config.guided:
        return float(config.guidance_scale)
    import diffusers

    name = pipeline_index(root).get("_class_name")
    if not hasattr(getattr(diffusers, str(name), None), "get_guidance_scale_embedding"):
        name = "StableDiffusionXLPipeline" if _text_time(module) else "StableDiffusionPipeline"
    return float(_call_default(name, "guidance_scale"))


def _text_time(module) -> bool:
    return module.config.get("addition_embed_type") == "text_time"


def _sd_embed_names(module) -> tuple[str, ...]:
    return ("prompt_embeds", "pooled_prompt_embeds") if _text_time(module) else ("prompt_embeds",)


def _joint_cond(module, embeds: dict, pixels, guidance=None) -> dict:
    """SD3: the joint (CLIP-L, CLIP-G, T5) token embeddings and the pooled CLIP projections."""
    return {"encoder_hidden_states": embeds["prompt_embeds"], "pooled_projections": embeds["pooled_prompt_embeds"]}


def _flux_cond(module, embeds: dict, pixels, guidance=None) -> dict:
    """Flux: as SD3, plus the distilled guidance embedding's input (a model input, not CFG) where it has one."""
    cond = _joint_cond(module, embeds, pixels)
    if guidance is not None:
        cond["guidance"] = torch.full((1,), guidance, dtype=torch.float32)
    return cond


def _flux_distilled(module, root: Path, config) -> float | None:
    """A Flux transformer with ``guidance_embeds``: FluxPipeline's default ``guidance_scale`` (3.5), whatever
    ``--guidance-scale`` (its true CFG) says."""
    return float(_call_default("FluxPipeline", "guidance_scale")) if module.config.get("guidance_embeds") else None


def _call_default(pipeline: str, parameter: str) -> Any:
    """The default of a diffusers pipeline's ``__call__`` argument, read from its signature."""
    import inspect

    import diffusers

    return inspect.signature(getattr(diffusers, pipeline).__call__).parameters[parameter].default


def _masked_cond(module, embeds: dict, pixels, guidance=None) -> dict:
    """Sana: the text encoder's (Gemma2's) hidden states and their attention mask."""
    return {"encoder_hidden_states": embeds["prompt_embeds"], "encoder_attention_mask": embeds["prompt_attention_mask"]}


def _pixart_cond(module, embeds: dict, pixels, guidance=None) -> dict:
    """PixArt-alpha: T5 hidden states and mask; the 1024 px models (sample_size 128) also take the image's
    resolution and aspect ratio (``added_cond_kwargs``) as PixArtAlphaPipeline builds them."""
    cond = _masked_cond(module, embeds, pixels)
    if module.config.sample_size == 128:
        height, width = pixels
        cond["added_cond_kwargs"] = {"resolution": torch.tensor([[height, width]], dtype=torch.float32),
                                     "aspect_ratio": torch.tensor([[float(height / width)]])}
    return cond


@dataclass(frozen=True)
class TextEncoding:
    """How a prompt becomes the pipeline's embeddings: ``pipeline`` (a diffusers class; None: diffcrit's own CLIP
    encoding of SD 1.x/2.x/XL), the ``encode_prompt`` arguments besides the prompt and the guidance ones, those it
    takes at its ``__call__``'s defaults (``call_defaults``: names, their values read from the signature), and the
    names of its outputs in order (None: an output diffcrit does not use). ``names(module)``: the embeddings the
    model needs. ``negative``: how the pipeline encodes a negative prompt under classifier-free guidance:
    "argument" (``encode_prompt``'s own ``do_classifier_free_guidance`` / ``negative_prompt`` branch, outputs
    ``negative_*``) or "prompt" (encoded as a second prompt: FluxPipeline's true CFG). ``distilled(module, root,
    config)``: the input of a guidance-distilled model's guidance embedding (None: it has none); ``true_cfg``: its
    pipeline also does CFG then (Flux), else ``--guidance-scale`` sets that input instead (LCM)."""

    pipeline: str | None
    to_cond: Callable[..., dict]  # (module, embeddings, pixels, distilled guidance or None) -> model keywords
    names: Callable[[Any], tuple[str, ...]]
    arguments: dict = field(default_factory=dict)
    outputs: tuple[str | None, ...] = ()
    call_defaults: tuple[str, ...] = ()
    negative: str = "argument"
    distilled: Callable[[Any, Path, Any], float | None] = lambda module, root, config: None
    true_cfg: bool = False

    def encode_arguments(self) -> dict:
        """``encode_prompt``'s keyword arguments besides the prompt, as the pipeline's ``__call__`` passes them."""
        return {**{name: _call_default(self.pipeline, name) for name in self.call_defaults}, **self.arguments}


def _names(*names: str) -> Callable[[Any], tuple[str, ...]]:
    return lambda module: names


# --------------------------------------------------------------------------------------------
# Resolution and timesteps


def _vae_scale(key: str, constant: int) -> Callable[[Path], int]:
    """The pipeline's VAE scale factor, 2 ** (len(vae.config[key]) - 1), from the folder's vae/config.json when
    present (hub downloads skip the VAE), else the pipeline's constant."""
    def scale(root: Path) -> int:
        path = Path(root) / "vae" / "config.json"
        if not path.is_file():
            return constant
        try:
            return 2 ** (len(json.loads(path.read_text())[key]) - 1)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"cannot read the VAE scale factor from {path} ({type(err).__name__}: {err})",
                            "write the folder again (save_pretrained), or remove vae/") from None

    return scale


def _pipeline_pixels(config, scale: int) -> int:
    """SD3, PixArt, Sana: ``transformer.config.sample_size * vae_scale_factor``."""
    return int(config.sample_size) * scale


FLUX_SAMPLE_SIZE = 128  # FluxPipeline's default_sample_size (its transformer config states no sample size)


def _flux_pixels(config, scale: int) -> int:
    """FluxPipeline's ``default_sample_size * vae_scale_factor``."""
    return FLUX_SAMPLE_SIZE * scale


def _sana_pixels(config, scale: int) -> int:
    """SanaPipeline's default ``height`` (a fixed pixel size, whatever the transformer's sample_size)."""
    return int(_call_default("SanaPipeline", "height"))


def _divide(pixels: int, scale: int) -> int:
    return int(pixels) // scale


def _flux_latent(pixels: int, scale: int) -> int:
    """FluxPipeline.prepare_latents: 2 * (pixels // (2 * vae_scale_factor)), even for the 2x2 packing."""
    return 2 * (int(pixels) // (scale * 2))


def _as_loaded(scheduler, root: Path):
    """The scheduler as it is once its pipeline is constructed: most pipelines take it as it is."""
    return scheduler


def _sd_pipeline_scheduler(scheduler, root: Path):
    """StableDiffusionPipeline's ``__init__`` rewrites an outdated scheduler config (steps_offset to 1, clip_sample to
    False) before it samples; the same here for its folders, so the samples stay equal to the pipeline's. SDXL's
    pipeline does not, nor does a bare UNet folder have a pipeline."""
    if pipeline_index(root).get("_class_name") != "StableDiffusionPipeline":
        return scheduler
    updates = {key: value for key, value, outdated in (
        ("steps_offset", 1, getattr(scheduler.config, "steps_offset", 1) != 1),
        ("clip_sample", False, getattr(scheduler.config, "clip_sample", False) is True)) if outdated}
    if updates:
        scheduler.register_to_config(**updates)
    return scheduler


def _plain_timesteps(scheduler, steps: int, grid: tuple[int, int], config) -> None:
    scheduler.set_timesteps(steps)


def _begin_at_zero(scheduler, steps: int, grid: tuple[int, int], config) -> None:
    """PixArtAlphaPipeline: ``retrieve_timesteps`` then ``set_begin_index(0)`` where the scheduler has it."""
    scheduler.set_timesteps(steps)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(0)


def _shift(scheduler, seq_len: int, max_shift: float) -> float:
    """The pipelines' resolution-dependent shift ``mu`` (their own ``calculate_shift``) for seq_len image tokens."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    cfg = scheduler.config
    return calculate_shift(seq_len, cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096),
                           cfg.get("base_shift", 0.5), cfg.get("max_shift", max_shift))


def _sd3_timesteps(scheduler, steps: int, grid: tuple[int, int], config) -> None:
    """StableDiffusion3Pipeline: ``mu`` from the patch count only when the scheduler shifts dynamically."""
    from diffusers.pipelines.flux.pipeline_flux import retrieve_timesteps

    kwargs = {}
    if scheduler.config.get("use_dynamic_shifting", None):
        patch = config.patch_size
        kwargs["mu"] = _shift(scheduler, (grid[0] // patch) * (grid[1] // patch), 1.16)
    retrieve_timesteps(scheduler, steps, **kwargs)


def _flux_timesteps(scheduler, steps: int, grid: tuple[int, int], config) -> None:
    """FluxPipeline: sigmas linspace(1, 1/N, N) (unless ``use_flow_sigmas``), ``mu`` from the packed token count,
    ``set_begin_index(0)``."""
    import numpy as np
    from diffusers.pipelines.flux.pipeline_flux import retrieve_timesteps

    sigmas = None if scheduler.config.get("use_flow_sigmas") else np.linspace(1.0, 1 / steps, steps)
    mu = _shift(scheduler, (grid[0] // 2) * (grid[1] // 2), 1.15)
    try:
        retrieve_timesteps(scheduler, steps, sigmas=sigmas, mu=mu)
    except ValueError as err:
        raise UserError(f"{type(scheduler).__name__} cannot take FluxPipeline's sigmas: {err}",
                        "use its FlowMatchEulerDiscreteScheduler") from None
    scheduler.set_begin_index(0)


def _sd_image_conditioned(value: Callable[[str], Any]) -> str | None:
    """UNet2DConditionModel configs whose pipelines feed it images or image embeddings (Kandinsky's image_embeds
    and hints, DeepFloyd IF stage II's noise-level class embedding of an upscaled image)."""
    for key, kinds in (("addition_embed_type", ("image", "image_hint", "text_image")),
                       ("encoder_hid_dim_type", ("image_proj", "text_image_proj"))):
        if value(key) in kinds:
            return f"{key} {value(key)!r}"
    return f"class_embed_type {value('class_embed_type')!r}" if value("class_embed_type") is not None else None


# --------------------------------------------------------------------------------------------
# The families


@dataclass(frozen=True)
class Family:
    """One model family (module docstring). ``classes``: config class names it loads; ``remapped``: names diffusers
    loads as one of ``classes`` and that are refused if they load as themselves (the hub DiT's
    Transformer2DModel)."""

    name: str
    classes: tuple[str, ...]
    call: Callable
    conditioning: str | None = None
    remapped: tuple[str, ...] = ()
    class_count: Callable[[Any], int | None] = lambda module: None
    guidance: Callable | None = None  # (module, train card) -> (classes, null id, names) for CFG
    text: TextEncoding | None = None
    scheduler_gets_variance: bool = False  # DDPMPipeline hands learned-variance channels to scheduler.step
    channels: Callable[[Any], int] = lambda config: int(config.in_channels)  # latent channels C
    vae_scale: Callable[[Path], int] | None = None  # None: no pixel size (the grid is the config's sample_size)
    resizable: bool = True  # with vae_scale: --height/--width change the grid (False: sample_size, fixed)
    default_pixels: Callable[[Any, int], int] = _pipeline_pixels
    latent_size: Callable[[int, int], int] = _divide
    set_timesteps: Callable = _plain_timesteps
    pipeline_scheduler: Callable[[Any, Path], Any] = _as_loaded  # (scheduler, folder) -> as its pipeline has it
    image_conditioned: Callable[[Callable[[str], Any]], str | None] = lambda value: None  # config -> why refused

    @property
    def label(self) -> str:
        return self.classes[0]


SD_TEXT = TextEncoding(None, _sd_cond, _sd_embed_names, distilled=_sd_distilled)
FAMILIES = (
    Family("unet", ("UNet2DModel",), _call_positional, "class", class_count=_unet_classes, guidance=_unet_guidance,
           scheduler_gets_variance=True),
    Family("sd", ("UNet2DConditionModel",), _call_positional, "prompt", text=SD_TEXT,
           vae_scale=_vae_scale("block_out_channels", 8), resizable=False, pipeline_scheduler=_sd_pipeline_scheduler,
           image_conditioned=_sd_image_conditioned),
    Family("dit", ("DiTTransformer2DModel",), _call_keyword, "class", remapped=("Transformer2DModel",),
           class_count=_dit_classes, guidance=_dit_guidance),
    Family("sd3", ("SD3Transformer2DModel",), _call_keyword, "prompt",
           text=TextEncoding("StableDiffusion3Pipeline", _joint_cond, _names("prompt_embeds", "pooled_prompt_embeds"),
                             {"prompt_2": None, "prompt_3": None},
                             ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                              "negative_pooled_prompt_embeds")),
           vae_scale=_vae_scale("block_out_channels", 8), set_timesteps=_sd3_timesteps),
    Family("flux", ("FluxTransformer2DModel",), _call_flux, "prompt",
           text=TextEncoding("FluxPipeline", _flux_cond, _names("prompt_embeds", "pooled_prompt_embeds"),
                             {"prompt_2": None}, ("prompt_embeds", "pooled_prompt_embeds", None), negative="prompt",
                             distilled=_flux_distilled, true_cfg=True),
           channels=lambda config: int(config.in_channels) // 4, vae_scale=_vae_scale("block_out_channels", 8),
           default_pixels=_flux_pixels, latent_size=_flux_latent, set_timesteps=_flux_timesteps),
    Family("pixart", ("PixArtTransformer2DModel",), _call_pixart, "prompt",
           text=TextEncoding("PixArtAlphaPipeline", _pixart_cond, _names("prompt_embeds", "prompt_attention_mask"),
                             {}, ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds",
                                  "negative_prompt_attention_mask"), ("clean_caption", "max_sequence_length")),
           vae_scale=_vae_scale("block_out_channels", 8), set_timesteps=_begin_at_zero),
    Family("sana", ("SanaTransformer2DModel",), _call_sana, "prompt",
           text=TextEncoding("SanaPipeline", _masked_cond, _names("prompt_embeds", "prompt_attention_mask"),
                             {}, ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds",
                                  "negative_prompt_attention_mask"),
                             ("clean_caption", "max_sequence_length", "complex_human_instruction")),
           vae_scale=_vae_scale("encoder_block_out_channels", 32), default_pixels=_sana_pixels),
)
SUPPORTED = ", ".join(f.label for f in FAMILIES)


def family_named(class_name: str, where: Any = None) -> Family:
    """The family whose config class names include ``class_name`` (remapped names too); a user error otherwise."""
    for family in FAMILIES:
        if class_name in family.classes or class_name in family.remapped:
            return family
    raise UserError(f"unsupported model class {class_name!r}" + (f" in {where}" if where else ""),
                    f"supported: {SUPPORTED}")


IMAGE_CONDITIONED = "an image-conditioned model (inpainting, depth or edit conditioning, upscaling, image prompts)"


def check_generative(family: Family, class_name: str, stored: dict) -> None:
    """Refuse, before any weights are read, a denoiser that needs more than noise and its family's conditioning: its
    input has other channels than it predicts (the extra ones an image or mask: SD inpainting's 9, Flux Fill's
    384; the mean and a learned variance, 2C, are fine), or the family's ``image_conditioned`` config says so."""
    import inspect

    import diffusers

    defaults = inspect.signature(getattr(diffusers, class_name).__init__).parameters

    def value(key):
        return stored[key] if key in stored else getattr(defaults.get(key), "default", None)

    c_in = value("in_channels")
    c_out = value("out_channels") or c_in
    if isinstance(c_in, int) and isinstance(c_out, int) and c_out not in (c_in, 2 * c_in):
        raise UserError(f"{class_name} takes {c_in} input channels but predicts {c_out}: {IMAGE_CONDITIONED}",
                        "diffcrit samples from noise and a class or prompt only")
    reason = family.image_conditioned(value)
    if reason:
        raise UserError(f"{class_name} with {reason}: {IMAGE_CONDITIONED}",
                        "diffcrit samples from noise and a class or prompt only")


def model_family(module: torch.nn.Module, class_name: str | None = None) -> Family:
    """The family of a loaded module (loaded for config class ``class_name``); a module that loaded as a class no
    family covers (a non-DiT Transformer2DModel) is refused."""
    name = type(module).__name__
    family = next((f for f in FAMILIES if name in f.classes), None)
    if family is None:
        source = f" (from {class_name})" if class_name and class_name != name else ""
        raise UserError(f"unsupported model class {name}{source}", f"supported: {SUPPORTED}")
    return family


def latent_grid(family: Family, config, root: Path, height: int | None,
                width: int | None) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """((H, W) latent grid, (height, width) pixels or None) a model samples on.

    Transformer pipelines: their default pixel size (or ``--height/--width``) over the VAE scale factor, as their
    ``prepare_latents`` computes it (no resolution binning). Others: their config's sample_size, fixed, and for
    latent UNets (SD) the pixels it stands for."""
    if family.vae_scale is None or not family.resizable:
        if height is not None or width is not None:
            raise UserError(f"`height`/`width` do not apply to {family.label} (it samples at its sample_size)",
                            "drop them", option="height")
        size = config["sample_size"]
        grid = (size, size) if isinstance(size, int) else tuple(size)
        return grid, None if family.vae_scale is None else tuple(g * family.vae_scale(root) for g in grid)
    scale = family.vae_scale(root)
    default = family.default_pixels(config, scale)
    pixels = (height or default, width or default)
    grid = tuple(family.latent_size(p, scale) for p in pixels)
    if min(grid) < 2:
        raise UserError(f"`height`/`width` {pixels[0]}x{pixels[1]} give a latent grid of {grid[0]}x{grid[1]}",
                        f"use more pixels (about {scale} per latent pixel)", option="height")
    return grid, pixels
