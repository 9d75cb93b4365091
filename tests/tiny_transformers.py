"""Tiny text-conditioned transformer pipelines built in code (SD3, Flux, PixArt-alpha, Sana), saved with
``save_pretrained``; tokenizers offline (a word-level CLIP BPE, a unigram T5 and a character-level Gemma BPE of a
handful of words)."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_models import WORDS, save_clip_tokenizer, tiny_vae

T5_DIM = 32  # d_model of the tiny T5: the transformers' joint_attention_dim / caption_channels


def save_t5(folder: Path, tokenizer: str = "tokenizer", encoder: str = "text_encoder") -> None:
    """A unigram T5 tokenizer (the words, then single characters) and a one-layer T5 encoder."""
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *((f"\u2581{w}", -1.0) for w in WORDS),
              *((c, -5.0) for c in "abdeklnrsuy\u2581")]
    T5Tokenizer(vocab=pieces, extra_ids=0).save_pretrained(folder / tokenizer)
    torch.manual_seed(2)
    T5EncoderModel(T5Config(vocab_size=len(pieces), d_model=T5_DIM, d_kv=8, d_ff=37, num_layers=1, num_heads=2,
                            relative_attention_num_buckets=8)).eval().save_pretrained(folder / encoder)


def clip_encoder(vocab: dict, seed: int, projection: bool):
    """A one-layer CLIP text encoder of width 8 (with an 8-wide projection when ``projection``)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=8, projection_dim=8, bos_token_id=0,
                            eos_token_id=1, pad_token_id=1)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def flow_scheduler(**kwargs):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(**kwargs)


def save_sd3_pipeline(folder: Path, **scheduler_kwargs) -> Path:
    """StableDiffusion3Pipeline: CLIP-L and CLIP-G (projections 8 + 8 = pooled 16, hidden 8 + 8 padded to the
    T5's 32), T5, an SD3Transformer2DModel on an 8 x 8 latent grid; no VAE (scale factor: the pipeline's 8)."""
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import AutoTokenizer, T5EncoderModel

    vocab = save_clip_tokenizer(folder / "clip_tokenizer")
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=1,
                                        attention_head_dim=8, num_attention_heads=2, caption_projection_dim=16,
                                        joint_attention_dim=T5_DIM, pooled_projection_dim=16,
                                        pos_embed_max_size=16).eval()
    save_t5(folder, "tokenizer_3", "text_encoder_3")
    pipeline = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=flow_scheduler(shift=3.0, **scheduler_kwargs), vae=None,
        text_encoder=clip_encoder(vocab, 0, True), tokenizer=AutoTokenizer.from_pretrained(folder / "clip_tokenizer"),
        text_encoder_2=clip_encoder(vocab, 1, True),
        tokenizer_2=AutoTokenizer.from_pretrained(folder / "clip_tokenizer"),
        text_encoder_3=T5EncoderModel.from_pretrained(folder / "text_encoder_3"),
        tokenizer_3=AutoTokenizer.from_pretrained(folder / "tokenizer_3"))
    pipeline.save_pretrained(folder)
    return folder


def save_flux_pipeline(folder: Path) -> Path:
    """FluxPipeline: CLIP (pooled 8), T5 (32), a FluxTransformer2DModel with the guidance embedding, 4 latent
    channels packed 2 x 2 into 16; a one-block VAE (scale factor 1); the scheduler shifts with the resolution."""
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from transformers import AutoTokenizer, T5EncoderModel

    vocab = save_clip_tokenizer(folder / "clip_tokenizer")
    save_t5(folder, "tokenizer_2", "text_encoder_2")
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=8, num_attention_heads=2, joint_attention_dim=T5_DIM,
                                         pooled_projection_dim=8, guidance_embeds=True, axes_dims_rope=(2, 2, 4)).eval()
    scheduler = flow_scheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=4,
                               max_image_seq_len=64)
    FluxPipeline(transformer=transformer, scheduler=scheduler, vae=tiny_vae(),
                 text_encoder=clip_encoder(vocab, 0, False),
                 tokenizer=AutoTokenizer.from_pretrained(folder / "clip_tokenizer"),
                 text_encoder_2=T5EncoderModel.from_pretrained(folder / "text_encoder_2"),
                 tokenizer_2=AutoTokenizer.from_pretrained(folder / "tokenizer_2")).save_pretrained(folder)
    return folder


def save_pixart_pipeline(folder: Path) -> Path:
    """PixArtAlphaPipeline: T5 with its attention mask, a PixArtTransformer2DModel of sample_size 128 (so it takes
    the resolution / aspect-ratio conditioning) with learned-sigma channels, DPM-Solver; a one-block VAE (scale
    factor 1: 128 px by default, run at --height/--width 16)."""
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel
    from transformers import AutoTokenizer, T5EncoderModel

    save_t5(folder)
    torch.manual_seed(0)
    transformer = PixArtTransformer2DModel(sample_size=128, num_layers=1, attention_head_dim=8, num_attention_heads=3,
                                           in_channels=4, out_channels=8, patch_size=2, cross_attention_dim=24,
                                           caption_channels=T5_DIM).eval()
    PixArtAlphaPipeline(transformer=transformer, scheduler=DPMSolverMultistepScheduler(), vae=tiny_vae(),
                        text_encoder=T5EncoderModel.from_pretrained(folder / "text_encoder"),
                        tokenizer=AutoTokenizer.from_pretrained(folder / "tokenizer")).save_pretrained(folder)
    return folder


def gemma_text(seed: int = 3):
    """(tokenizer, encoder): a Gemma BPE over the printable characters with merges that spell out the words (any
    other character: <unk>), <bos> first as Gemma's; a one-layer Gemma2Model of width T5_DIM."""
    import string

    from transformers import Gemma2Config, Gemma2Model, GemmaTokenizer

    chars = sorted(set(string.printable) - set(string.whitespace)) + ["\u2581", "\n"]
    vocab = {token: i for i, token in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", *chars])}
    merges = []
    for word in (f"\u2581{w}" for w in WORDS):
        for k in range(2, len(word) + 1):
            if word[:k] not in vocab:
                merges.append((word[:k - 1], word[k - 1]))
                vocab[word[:k]] = len(vocab)
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)
    torch.manual_seed(seed)
    encoder = Gemma2Model(Gemma2Config(vocab_size=len(tokenizer), hidden_size=T5_DIM, intermediate_size=37,
                                       num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                       pad_token_id=0, eos_token_id=1, bos_token_id=2)).eval()
    return tokenizer, encoder


def save_sana_pipeline(folder: Path, text_encoder: bool = True) -> Path:
    """SanaPipeline: a SanaTransformer2DModel on an 8 x 8 grid, DPM-Solver in flow-prediction mode (flow sigmas,
    shift 3) as Sana ships, the Gemma tokenizer and Gemma2 encoder of ``gemma_text`` (without them when not
    ``text_encoder``: a folder for ``--prompt-embeds`` only); no VAE (scale factor 32)."""
    from diffusers import DPMSolverMultistepScheduler, SanaPipeline, SanaTransformer2DModel

    torch.manual_seed(0)
    transformer = SanaTransformer2DModel(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8,
                                         num_layers=1, num_cross_attention_heads=2, cross_attention_head_dim=8,
                                         cross_attention_dim=16, caption_channels=T5_DIM, sample_size=8).eval()
    scheduler = DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    tokenizer, encoder = gemma_text() if text_encoder else (None, None)
    SanaPipeline(transformer=transformer, scheduler=scheduler, vae=None, text_encoder=encoder,
                 tokenizer=tokenizer).save_pretrained(folder)
    return folder
