"""Tiny diffusers models built in code (tests build their models; no network)."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DDPMPipeline, DDPMScheduler, DiTPipeline, DiTTransformer2DModel,
                       UNet2DConditionModel, UNet2DModel)


CLASSES = 4  # the class-conditional tiny UNet: num_class_embeds = CLASSES + 1, null id CLASSES (the last)


def tiny_unet(num_class_embeds: int | None = None, seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       norm_num_groups=4, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=8,
                       num_class_embeds=num_class_embeds).eval()


def tiny_cond_unet(seed: int = 0, **config) -> UNet2DConditionModel:
    """SD-1.x-shaped; ``config`` adds to it (e.g. time_cond_proj_dim: guidance-distilled, as LCM)."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                layers_per_block=1, norm_num_groups=4, cross_attention_dim=12, attention_head_dim=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), **config).eval()


def tiny_dit(seed: int = 0) -> DiTTransformer2DModel:
    torch.manual_seed(seed)
    return DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                 num_layers=2, sample_size=8, patch_size=2, num_embeds_ada_norm=10).eval()


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,), layers_per_block=1,
                         norm_num_groups=4, down_block_types=("DownEncoderBlock2D",),
                         up_block_types=("UpDecoderBlock2D",), sample_size=8).eval()


def save_ddpm_pipeline(folder: Path, scheduler_cls=DDPMScheduler, num_class_embeds: int | None = None,
                       **scheduler_kwargs) -> Path:
    scheduler = scheduler_cls(num_train_timesteps=100, **scheduler_kwargs)
    DDPMPipeline(unet=tiny_unet(num_class_embeds), scheduler=scheduler).save_pretrained(folder)
    return folder


def save_dit_pipeline(folder: Path) -> Path:
    pipeline = DiTPipeline(transformer=tiny_dit(), vae=tiny_vae(), scheduler=DDIMScheduler(num_train_timesteps=100))
    pipeline.save_pretrained(folder)
    return folder


def tiny_sdxl_unet(seed: int = 0, **config) -> UNet2DConditionModel:
    """SDXL-shaped: ``addition_embed_type="text_time"`` (pooled text embeds of 8 + 6 time ids of 4 each),
    cross-attention over both encoders' hidden states (12 + 12)."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                layers_per_block=1, norm_num_groups=4, cross_attention_dim=24, attention_head_dim=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                addition_embed_type="text_time", addition_time_embed_dim=4,
                                **{"projection_class_embeddings_input_dim": 8 + 6 * 4, **config}).eval()


def save_sdxl_pipeline(folder: Path) -> Path:
    """A tiny Stable-Diffusion-XL-shaped folder: two CLIP encoders (the second with a projection), two
    tokenizers, a ``text_time`` UNet2DConditionModel, a scheduler and a tiny VAE."""
    import json
    import shutil

    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    save_sd_pipeline(folder, unet=tiny_sdxl_unet())
    shutil.copytree(folder / "tokenizer", folder / "tokenizer_2")
    vocab = json.loads((folder / "tokenizer" / "vocab.json").read_text())
    torch.manual_seed(1)
    CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=12, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=8, projection_dim=8, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )).save_pretrained(folder / "text_encoder_2")
    tiny_vae().save_pretrained(folder / "vae")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionXLPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "DDIMScheduler"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"]}))
    return folder


def save_sd_pipeline(folder: Path, unet: UNet2DConditionModel | None = None) -> Path:
    """A tiny Stable-Diffusion-1.x-shaped folder: UNet2DConditionModel, scheduler, CLIP text encoder + tokenizer."""
    import json

    from transformers import CLIPTextConfig, CLIPTextModel

    vocab = save_clip_tokenizer(folder / "tokenizer")
    torch.manual_seed(0)
    encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=12, intermediate_size=16,
                                           num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=8,
                                           bos_token_id=0, eos_token_id=1, pad_token_id=1))
    encoder.save_pretrained(folder / "text_encoder")
    (unet or tiny_cond_unet()).save_pretrained(folder / "unet")
    DDIMScheduler(num_train_timesteps=100).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"]}))
    return folder


def sd_pipeline(folder: Path, pipeline: str = "StableDiffusionPipeline", scheduler: str = "DDIMScheduler"):
    """A diffusers pipeline of a ``save_sd_pipeline`` folder's components (and a tiny VAE the folder does not hold)."""
    import diffusers
    from transformers import CLIPTextModel, CLIPTokenizer

    return getattr(diffusers, pipeline)(
        vae=tiny_vae(), text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        unet=diffusers.UNet2DConditionModel.from_pretrained(folder / "unet"),
        scheduler=getattr(diffusers, scheduler).from_pretrained(folder / "scheduler"), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)


WORDS = ["a", "red", "barn", "blue", "sky"]


def save_clip_tokenizer(folder: Path, max_length: int = 8) -> dict:
    """A word-level CLIP BPE with a handful of words (no merges), written to ``folder``; its vocab."""
    import json

    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{f"{w}</w>": i + 2 for i, w in enumerate(WORDS)}}
    for ch in "abdeklnrsuy":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(f"{ch}</w>", len(vocab))
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                  model_max_length=max_length).save_pretrained(folder)
    return vocab
