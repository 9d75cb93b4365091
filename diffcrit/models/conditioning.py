"""Per-sample conditioning of each diffusers family (``families.py``): class labels or prompt embeddings.

``build_conditioning`` returns ``(make, info)``: make(n) gives the conditioning dict for n samples
(leading batch dim n, keyword names as the model's forward takes them) or None for an
unconditional model; info goes into the JSON ``model.conditioning`` block. Prompt embeddings come from
``--prompt-embeds`` (a safetensors file under the pipeline's own argument names) or from ``--prompt``, encoded by
the pipeline's own ``encode_prompt`` (SD 1.x/2.x/XL: diffcrit's CLIP encoding, as those pipelines do it); text
encoders are loaded once, used to encode, and freed.

``--guidance-scale`` above 1 adds classifier-free guidance as the family's pipeline applies it at every step: the
conditioning then carries, under ``cond.GUIDANCE``, the scale and the unconditional branch: the null class
(class families) or the negative prompt's embeddings (``--negative-prompt``, default: the pipeline's).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import torch

from ..config import ConditioningConfig
from ..errors import ConditioningError, UserError, shorten
from .cond import GUIDANCE
from .families import Family, TextEncoding, family_guidance, model_family, pipeline_index

NEGATIVE = "negative_"  # the pipelines' name of a negative embedding: negative_prompt_embeds, ...


def _class_labels(module, family: Family, root: Path,
                  config: ConditioningConfig) -> tuple[Callable[[int], dict | None], dict | None]:
    classes = family.class_count(module)
    label = config.class_label
    if classes is None:
        if label is not None:
            raise ConditioningError(f"{type(module).__name__} here is not class-conditional", "drop `class_label`",
                                    option="class_label")
        if config.guided:
            raise ConditioningError(f"{type(module).__name__} here is unconditional: `guidance_scale` has no "
                                    "conditional branch to guide", "drop `guidance_scale`", option="guidance_scale")
        return (lambda n: None), None
    if label is None:
        raise UserError(f"this model is class-conditional ({classes} classes)",
                        f"pass `class_label` in 0..{classes - 1}", option="class_label")
    if not 0 <= label < classes:
        raise UserError(f"`class_label` {label} is out of range", f"this model has classes 0..{classes - 1}",
                        option="class_label")
    device = next(module.parameters()).device
    info = {"type": "class", "class_label": label, "classes": classes}
    if not config.guided:
        return (lambda n: {"class_labels": torch.full((n,), label, dtype=torch.long, device=device)}), info
    guidance = family_guidance(family, module, root, f"{type(module).__name__} has no null class")
    if label == guidance.null_class:
        raise UserError(f"class {label} is the null class: guiding it towards itself does nothing",
                        f"pass `class_label` in 0..{guidance.n_classes - 1}", option="class_label")
    info["cfg"] = {"scale": config.guidance_scale, "null_class": guidance.null_class}

    def make(n):
        return guidance.conditioning(torch.full((n,), label, dtype=torch.long, device=device),
                                     torch.full((n,), config.guidance_scale, device=device))

    return make, info


def _sd_embeds(root: Path, prompts: list[str], names: tuple[str, ...]) -> list[dict]:
    """Prompt embeddings as the Stable Diffusion (XL) pipelines compute them (no clip skip), under their
    ``encode_prompt`` names, one dict per prompt: prompt_embeds (1, L, D) float32, and for SDXL (``names`` has
    pooled_prompt_embeds) both encoders' penultimate hidden states concatenated and the second's pooled projection.
    The pipelines encode a negative prompt the same way."""
    try:
        from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection
    except ImportError:
        raise UserError("`prompt` needs the transformers package", "pip install 'diffcrit[text]'",
                        option="prompt") from None
    _need_text_encoder(root)
    kind = _encoder_kind(root / "text_encoder")
    if kind != "unknown" and not kind.startswith("clip"):  # IF's T5, say: loaded as CLIP it would be random
        raise UserError(f"{root}/text_encoder is a {kind} encoder; diffcrit encodes this UNet's prompts with CLIP",
                        "pass `prompt_embeds` FILE (the pipeline's encode_prompt outputs)")

    def encode(sub: str, cls, tok_sub: str):
        tokenizer = AutoTokenizer.from_pretrained(root / tok_sub)
        encoder = cls.from_pretrained(root / sub).eval()
        ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        with torch.no_grad():
            return encoder(ids, output_hidden_states=True)

    if "pooled_prompt_embeds" not in names:  # SD 1.x / 2.x
        batch = {"prompt_embeds": encode("text_encoder", CLIPTextModel, "tokenizer").last_hidden_state}
    else:
        first = encode("text_encoder", CLIPTextModel, "tokenizer")
        second = encode("text_encoder_2", CLIPTextModelWithProjection, "tokenizer_2")
        batch = {"prompt_embeds": torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1),
                 "pooled_prompt_embeds": second.text_embeds}
    return [{name: value[i: i + 1] for name, value in batch.items()} for i in range(len(prompts))]


def _sd_prompts(root: Path, config: ConditioningConfig, names: tuple[str, ...]) -> tuple[dict, dict | None]:
    """(prompt, negative prompt or None) embeddings of SD 1.x/2.x/XL. Without --negative-prompt the pipelines' own:
    the empty prompt, or for SDXL zeros where its ``force_zeros_for_empty_prompt`` (model_index.json; default
    true) says so."""
    if not config.guided:
        return _sd_embeds(root, [config.prompt], names)[0], None
    if config.negative_prompt is None and "pooled_prompt_embeds" in names and _force_zeros(root):
        embeds = _sd_embeds(root, [config.prompt], names)[0]
        return embeds, {name: torch.zeros_like(value) for name, value in embeds.items()}
    embeds, negative = _sd_embeds(root, [config.prompt, config.negative_prompt or ""], names)
    return embeds, negative  # one batch of both, as the pipelines encode them


def _force_zeros(root: Path) -> bool:
    return bool(pipeline_index(root).get("force_zeros_for_empty_prompt", True))


def _encoder_kind(folder: Path) -> str:
    """The ``model_type`` of a transformers text encoder folder ("clip_text_model", "t5", ...; "unknown")."""
    try:
        return str(json.loads((folder / "config.json").read_text()).get("model_type") or "unknown")
    except (OSError, ValueError):
        return "unknown"


def _need_text_encoder(root: Path) -> None:
    if not (root / "text_encoder").is_dir():
        raise UserError(f"{root} has no text_encoder/ to encode `prompt`",
                        "pass a full pipeline folder, or `prompt_embeds` FILE")


def _pipeline_embeds(text: TextEncoding, root: Path, config: ConditioningConfig, names: tuple[str, ...],
                     dtype: torch.dtype) -> tuple[dict, dict | None]:
    """(prompt, negative prompt or None) embeddings by the pipeline's own ``encode_prompt`` with the arguments its
    ``__call__`` passes, run on the CPU with only its text encoders and tokenizers loaded (no transformer,
    scheduler or VAE; freed on return). The negative prompt (default "", as the pipelines') is encoded as the
    pipeline does it: by ``encode_prompt``'s own negative branch, or as a second prompt (``TextEncoding.negative``)."""
    import warnings

    import diffusers

    _need_text_encoder(root)
    try:
        with warnings.catch_warnings():  # recent diffusers call it `dtype`; the older ones diffcrit supports do not
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipeline = getattr(diffusers, text.pipeline).from_pretrained(
                root, transformer=None, vae=None, scheduler=None, torch_dtype=dtype)
    except (OSError, ValueError, ImportError) as err:
        raise UserError(f"cannot load the text encoders of {root}: {shorten(str(err), 200)}",
                        "pip install 'diffcrit[text]' (sentencepiece reads spiece.model tokenizers), "
                        "or pass `prompt_embeds` FILE") from None
    negative_prompt = config.negative_prompt or ""

    def encode(prompt: str, **extra) -> dict:
        with torch.no_grad():
            outputs = pipeline.encode_prompt(prompt=prompt, device=torch.device("cpu"), num_images_per_prompt=1,
                                             **text.encode_arguments(), **extra)
        return {name: out for name, out in zip(text.outputs, outputs, strict=True) if name is not None}

    if text.negative == "argument":
        extra = {"negative_prompt": negative_prompt} if config.guided else {}
        named = encode(config.prompt, do_classifier_free_guidance=config.guided, **extra)
        negative = {name: named[NEGATIVE + name] for name in names} if config.guided else None
    else:
        named = encode(config.prompt)
        negative = {name: value for name, value in encode(negative_prompt).items() if name in names} \
            if config.guided else None
    return {name: named[name] for name in names}, negative  # the pipeline and its encoders go with this frame


def read_prompt_embeds(path: str | Path, names: tuple[str, ...]) -> dict:
    """The embeddings ``names`` from a safetensors file (the pipeline's ``encode_prompt`` outputs under its own
    argument names), each (1, ...); a missing file, key or a batch of several prompts is a user error."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as err:  # missing file, not safetensors (SafetensorError)
        raise UserError(f"cannot read `prompt_embeds` {path}: {shorten(str(err) or type(err).__name__, 120)}",
                        "write it with safetensors.torch.save_file", option="prompt_embeds") from None
    missing = [name for name in names if name not in tensors]
    if missing:
        raise UserError(f"`prompt_embeds` {path} has no {', '.join(missing)}",
                        f"this model needs: {', '.join(names)} (the pipeline's encode_prompt outputs)",
                        option="prompt_embeds")
    several = [name for name in names if tensors[name].ndim == 0 or tensors[name].shape[0] != 1]
    if several:
        raise UserError(f"`prompt_embeds` {path}: {several[0]} holds {tuple(tensors[several[0]].shape)}",
                        "one prompt: a leading dimension of 1", option="prompt_embeds")
    return {name: tensors[name] for name in names}


def _embeddings(family: Family, module, root: Path, config: ConditioningConfig) -> tuple[dict, dict | None, dict]:
    """(embeddings under the pipeline's names, the negative prompt's under the same names or None without
    guidance, info) from --prompt-embeds or by encoding --prompt (and --negative-prompt)."""
    text = family.text
    names = text.names(module)
    if config.prompt is not None and config.prompt_embeds is not None:
        raise UserError("`prompt` and `prompt_embeds` are alternatives", "pass one of them", option="prompt_embeds")
    if config.prompt_embeds is not None:
        if config.negative_prompt is not None:
            raise UserError("`negative_prompt` and `prompt_embeds` are alternatives",
                            f"put the negative embeddings in the file ({NEGATIVE}{names[0]}, ...)",
                            option="negative_prompt")
        negatives = tuple(NEGATIVE + name for name in names) if config.guided else ()
        tensors = read_prompt_embeds(config.prompt_embeds, names + negatives)
        negative = {name: tensors[NEGATIVE + name] for name in names} if config.guided else None
        return {name: tensors[name] for name in names}, negative, {"type": "prompt_embeds",
                                                                   "file": str(config.prompt_embeds)}
    if config.prompt is None:
        raise ConditioningError("this model is text-conditional", 'pass `prompt` "..." or `prompt_embeds` FILE',
                                option="prompt")
    if text.pipeline is None:
        embeds, negative = _sd_prompts(root, config, names)
    else:
        embeds, negative = _pipeline_embeds(text, root, config, names, module.dtype)  # the encoders as the model
    return embeds, negative, {"type": "prompt", "prompt": config.prompt}


def _same_shapes(first: dict, second: dict, where: str) -> None:
    """The conditional and unconditional branches go into one batch: their tensors must have equal shapes."""
    for key, value in first.items():
        if isinstance(value, dict):
            _same_shapes(value, second[key], where)
        elif value.shape[1:] != second[key].shape[1:]:
            raise UserError(f"{where}: the negative branch's {key} is {tuple(second[key].shape)}, the prompt's "
                            f"{tuple(value.shape)}", "both must have the same shape (one batch holds both)")


def _prompt(module, family: Family, root: Path, config: ConditioningConfig, pixels):
    text = family.text
    distilled = text.distilled(module, root, config)  # a guidance-distilled model's guidance input: recorded
    if distilled is not None and not text.true_cfg:  # --guidance-scale is that input; its pipeline does no CFG
        if config.negative_prompt is not None:
            raise UserError(f"{type(module).__name__} is guidance-distilled: its pipeline has no negative branch",
                            "drop `negative_prompt`", option="negative_prompt")
        config = dataclasses.replace(config, guidance_scale=1.0)
    embeds, negative, info = _embeddings(family, module, root, config)
    encoded = text.to_cond(module, embeds, pixels, distilled)
    if distilled is not None:
        info["guidance"] = distilled
    if negative is not None:
        unconditional = text.to_cond(module, negative, pixels, distilled)
        _same_shapes(encoded, unconditional, f"`prompt_embeds` {config.prompt_embeds}" if config.prompt_embeds
                     else "`negative_prompt`")
        encoded[GUIDANCE] = {"scale": torch.tensor([config.guidance_scale]), "unconditional": unconditional}
        info["cfg"] = {"scale": config.guidance_scale, "negative_prompt": None if config.prompt_embeds else
                       config.negative_prompt}
    device, dtype = next(module.parameters()).device, next(module.parameters()).dtype

    def expand(value, n):
        if isinstance(value, dict):
            return {k: expand(v, n) for k, v in value.items()}
        value = value.to(device, dtype if value.is_floating_point() else value.dtype)  # masks keep their dtype
        return value.expand(n, *value.shape[1:]).contiguous()

    return (lambda n: expand(encoded, n)), info


def check_unconditional(config: ConditioningConfig, name: str) -> None:
    """A model without conditioning (a callable, an analytic built-in) refuses --class-label, --prompt and
    --guidance-scale."""
    if config.class_label is not None:
        raise ConditioningError(f"{name} is not class-conditional", "drop `class_label`", option="class_label")
    refuse_prompt(config, name)
    if config.guided:
        raise UserError(f"{name} has no conditioning to guide", "drop `guidance_scale`", option="guidance_scale")


def refuse_prompt(config: ConditioningConfig, name: str) -> None:
    """--prompt / --prompt-embeds / --negative-prompt given to a model ``name`` that takes no text: a conditioning
    error."""
    for given, option in ((config.prompt, "prompt"), (config.prompt_embeds, "prompt_embeds"),
                          (config.negative_prompt, "negative_prompt")):
        if given is not None:
            raise ConditioningError(f"{name} takes no prompt", f"drop `{option}`", option=option)


def build_conditioning(module, root: Path, config: ConditioningConfig,
                       pixels: tuple[int, int] | None = None) -> tuple[Callable[[int], dict | None], dict | None]:
    """(make, info) for a loaded diffusers module (module docstring); ``pixels``: the (height, width) its latent
    grid stands for (transformer pipelines; resolution conditioning)."""
    family = model_family(module)
    if family.conditioning == "prompt":
        return _prompt(module, family, root, config, pixels)
    refuse_prompt(config, type(module).__name__)
    return _class_labels(module, family, root, config)
