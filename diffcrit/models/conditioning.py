"""Per-sample conditioning of each diffusers family: class labels or encoded prompts.

``build_conditioning`` returns ``(make, info)``: make(n) gives the conditioning dict for n samples
(leading batch dim n, keyword names as the model's forward takes them) or None for an
unconditional model; info goes into the JSON ``model.conditioning`` block. Text encoders are
loaded once, used to encode, and freed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..config import AnalyzeConfig
from ..errors import ConditioningError, UserError


def class_count(module: torch.nn.Module) -> int | None:
    """Number of class embeddings of a class-conditional UNet2DModel / DiT, else None."""
    cfg = module.config
    if type(module).__name__ in ("DiTTransformer2DModel", "Transformer2DModel"):
        return int(cfg.num_embeds_ada_norm) if cfg.get("num_embeds_ada_norm") else None
    if type(module).__name__ == "UNet2DModel" and cfg.get("num_class_embeds"):
        return int(cfg.num_class_embeds)
    return None


def _class_labels(module, config: AnalyzeConfig) -> tuple[Callable[[int], dict | None], dict | None]:
    classes = class_count(module)
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


def _encode_prompt(root: Path, prompt: str, module) -> dict:
    """Prompt embeddings as the Stable Diffusion (XL) pipelines compute them (no CFG, no clip skip)."""
    try:
        from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection
    except ImportError:
        raise UserError("--prompt needs the transformers package", "pip install 'diffcrit[text]'") from None
    if not (root / "text_encoder").is_dir():
        raise UserError(f"{root} has no text_encoder/ to encode --prompt", "pass a full pipeline folder")

    def encode(sub: str, cls, tok_sub: str):
        tokenizer = AutoTokenizer.from_pretrained(root / tok_sub)
        encoder = cls.from_pretrained(root / sub).eval()
        ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        with torch.no_grad():
            return encoder(ids, output_hidden_states=True)

    if module.config.get("addition_embed_type") != "text_time":  # SD 1.x / 2.x
        return {"encoder_hidden_states": encode("text_encoder", CLIPTextModel, "tokenizer").last_hidden_state}
    first = encode("text_encoder", CLIPTextModel, "tokenizer")
    second = encode("text_encoder_2", CLIPTextModelWithProjection, "tokenizer_2")
    size = module.config.sample_size * 8
    time_ids = torch.tensor([[size, size, 0, 0, size, size]], dtype=torch.float32)
    return {"encoder_hidden_states": torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1),
            "added_cond_kwargs": {"text_embeds": second.text_embeds, "time_ids": time_ids}}


def _prompt(module, root: Path, config: AnalyzeConfig):
    if config.prompt is None:
        raise ConditioningError("this model is text-conditional", 'pass --prompt "..."')
    encoded = _encode_prompt(root, config.prompt, module)
    device, dtype = next(module.parameters()).device, next(module.parameters()).dtype

    def expand(value, n):
        if isinstance(value, dict):
            return {k: expand(v, n) for k, v in value.items()}
        return value.to(device, dtype).expand(n, *value.shape[1:]).contiguous()

    return (lambda n: expand(encoded, n)), {"type": "prompt", "prompt": config.prompt}


def check_unconditional(config: AnalyzeConfig, name: str) -> None:
    """A model without conditioning (a callable, an analytic built-in) refuses --class-label and --prompt."""
    if config.class_label is not None:
        raise ConditioningError(f"{name} is not class-conditional", "drop --class-label")
    if config.prompt is not None:
        raise ConditioningError(f"{name} takes no prompt", "drop --prompt")


def build_conditioning(module, root: Path, config: AnalyzeConfig,
                       device) -> tuple[Callable[[int], dict | None], dict | None]:
    if type(module).__name__ == "UNet2DConditionModel":
        return _prompt(module, root, config)
    if config.prompt is not None:
        raise ConditioningError(f"{type(module).__name__} takes no prompt", "drop --prompt")
    return _class_labels(module, config)
