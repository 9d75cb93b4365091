"""Per-sample conditioning of each diffusers family (``families.py``): class labels or prompt embeddings.

``build_conditioning`` returns ``(make, info)``: make(n) gives the conditioning dict for n samples
(leading batch dim n, keyword names as the model's forward takes them) or None for an
unconditional model; info goes into the JSON ``model.conditioning`` block. Prompt embeddings come from
``--prompt-embeds`` (a safetensors file under the pipeline's own argument names) or from ``--prompt``, encoded by
the pipeline's own ``encode_prompt`` (SD 1.x/2.x/XL: diffcrit's CLIP encoding, as those pipelines do it); text
encoders are loaded once, used to encode, and freed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..config import AnalyzeConfig
from ..errors import ConditioningError, UserError, shorten
from .families import Family, TextEncoding, model_family


def _class_labels(module, family: Family,
                  config: AnalyzeConfig) -> tuple[Callable[[int], dict | None], dict | None]:
    classes = family.class_count(module)
    label = config.class_label
    if classes is None:
        if label is not None:
            raise ConditioningError(f"{type(module).__name__} here is not class-conditional", "drop --class-label")
        return (lambda n: None), None
    if label is None:
        raise UserError(f"this model is class-conditional ({classes} classes)",
                        f"pass --class-label in 0..{classes - 1}")
    if not 0 <= label < classes:
        raise UserError(f"--class-label {label} is out of range", f"this model has classes 0..{classes - 1}")
    device = next(module.parameters()).device
    return (lambda n: {"class_labels": torch.full((n,), label, dtype=torch.long, device=device)}), \
        {"type": "class", "class_label": label, "classes": classes}


def _sd_embeds(root: Path, prompt: str, names: tuple[str, ...]) -> dict:
    """Prompt embeddings as the Stable Diffusion (XL) pipelines compute them (no CFG, no clip skip), under their
    ``encode_prompt`` names: prompt_embeds (1, L, D) float32, and for SDXL (``names`` has pooled_prompt_embeds)
    both encoders' penultimate hidden states concatenated and the second's pooled projection."""
    try:
        from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection
    except ImportError:
        raise UserError("--prompt needs the transformers package", "pip install 'diffcrit[text]'") from None
    _need_text_encoder(root)

    def encode(sub: str, cls, tok_sub: str):
        tokenizer = AutoTokenizer.from_pretrained(root / tok_sub)
        encoder = cls.from_pretrained(root / sub).eval()
        ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        with torch.no_grad():
            return encoder(ids, output_hidden_states=True)

    if "pooled_prompt_embeds" not in names:  # SD 1.x / 2.x
        return {"prompt_embeds": encode("text_encoder", CLIPTextModel, "tokenizer").last_hidden_state}
    first = encode("text_encoder", CLIPTextModel, "tokenizer")
    second = encode("text_encoder_2", CLIPTextModelWithProjection, "tokenizer_2")
    return {"prompt_embeds": torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1),
            "pooled_prompt_embeds": second.text_embeds}


def _need_text_encoder(root: Path) -> None:
    if not (root / "text_encoder").is_dir():
        raise UserError(f"{root} has no text_encoder/ to encode --prompt",
                        "pass a full pipeline folder, or --prompt-embeds FILE")


def _pipeline_embeds(text: TextEncoding, root: Path, prompt: str, dtype: torch.dtype) -> dict:
    """The pipeline's own ``encode_prompt`` with the arguments its ``__call__`` passes (no CFG), run on the CPU with
    only its text encoders and tokenizers loaded (no transformer, scheduler or VAE); the pipeline and its encoders
    are freed on return."""
    import diffusers

    _need_text_encoder(root)
    try:
        pipeline = getattr(diffusers, text.pipeline).from_pretrained(root, transformer=None, vae=None, scheduler=None,
                                                                     torch_dtype=dtype)
    except (OSError, ValueError, ImportError) as err:
        raise UserError(f"cannot load the text encoders of {root}: {shorten(str(err), 200)}",
                        "pass --prompt-embeds FILE") from None
    with torch.no_grad():
        outputs = pipeline.encode_prompt(prompt=prompt, device=torch.device("cpu"), num_images_per_prompt=1,
                                         **text.encode_arguments())
    del pipeline
    return {name: out for name, out in zip(text.outputs, outputs, strict=True) if name is not None}


def read_prompt_embeds(path: str | Path, names: tuple[str, ...]) -> dict:
    """The embeddings ``names`` from a safetensors file (the pipeline's ``encode_prompt`` outputs under its own
    argument names), each (1, ...); a missing file, key or a batch of several prompts is a user error."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as err:  # missing file, not safetensors (SafetensorError)
        raise UserError(f"cannot read --prompt-embeds {path}: {shorten(str(err) or type(err).__name__, 120)}",
                        "write it with safetensors.torch.save_file") from None
    missing = [name for name in names if name not in tensors]
    if missing:
        raise UserError(f"--prompt-embeds {path} has no {', '.join(missing)}",
                        f"this model needs: {', '.join(names)} (the pipeline's encode_prompt outputs)")
    several = [name for name in names if tensors[name].ndim == 0 or tensors[name].shape[0] != 1]
    if several:
        raise UserError(f"--prompt-embeds {path}: {several[0]} holds {tuple(tensors[several[0]].shape)}",
                        "one prompt: a leading dimension of 1")
    return {name: tensors[name] for name in names}


def _embeddings(family: Family, module, root: Path, config: AnalyzeConfig) -> tuple[dict, dict]:
    """(embeddings under the pipeline's names, info) from --prompt-embeds or by encoding --prompt."""
    text = family.text
    names = text.names(module)
    if config.prompt is not None and config.prompt_embeds is not None:
        raise UserError("--prompt and --prompt-embeds are alternatives", "pass one of them")
    if config.prompt_embeds is not None:
        return read_prompt_embeds(config.prompt_embeds, names), {"type": "prompt_embeds",
                                                                "file": str(config.prompt_embeds)}
    if config.prompt is None:
        raise ConditioningError("this model is text-conditional", 'pass --prompt "..." or --prompt-embeds FILE')
    if text.pipeline is None:
        embeds = _sd_embeds(root, config.prompt, names)
    else:
        embeds = _pipeline_embeds(text, root, config.prompt, getattr(torch, config.dtype))
    return embeds, {"type": "prompt", "prompt": config.prompt}


def _prompt(module, family: Family, root: Path, config: AnalyzeConfig, pixels):
    embeds, info = _embeddings(family, module, root, config)
    encoded = family.text.to_cond(module, embeds, pixels)
    if "guidance" in encoded:  # a distilled guidance embedding (Flux): a model input, recorded
        info["guidance"] = float(encoded["guidance"][0])
    device, dtype = next(module.parameters()).device, next(module.parameters()).dtype

    def expand(value, n):
        if isinstance(value, dict):
            return {k: expand(v, n) for k, v in value.items()}
        value = value.to(device, dtype if value.is_floating_point() else value.dtype)  # masks keep their dtype
        return value.expand(n, *value.shape[1:]).contiguous()

    return (lambda n: expand(encoded, n)), info


def check_unconditional(config: AnalyzeConfig, name: str) -> None:
    """A model without conditioning (a callable, an analytic built-in) refuses --class-label and --prompt."""
    if config.class_label is not None:
        raise ConditioningError(f"{name} is not class-conditional", "drop --class-label")
    refuse_prompt(config, name)


def refuse_prompt(config: AnalyzeConfig, name: str) -> None:
    """--prompt / --prompt-embeds given to a model ``name`` that takes no text: a conditioning error."""
    for given, option in ((config.prompt, "--prompt"), (config.prompt_embeds, "--prompt-embeds")):
        if given is not None:
            raise ConditioningError(f"{name} takes no prompt", f"drop {option}")


def build_conditioning(module, root: Path, config: AnalyzeConfig,
                       pixels: tuple[int, int] | None = None) -> tuple[Callable[[int], dict | None], dict | None]:
    """(make, info) for a loaded diffusers module (module docstring); ``pixels``: the (height, width) its latent
    grid stands for (transformer pipelines; resolution conditioning)."""
    family = model_family(module)
    if family.conditioning == "prompt":
        return _prompt(module, family, root, config, pixels)
    refuse_prompt(config, type(module).__name__)
    return _class_labels(module, family, config)
