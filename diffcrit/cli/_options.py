"""Shared option aliases (one definition per option, as in huggingface_hub's CLI), and each option's range or choices
read from its config field's declaration (``config.allowed``): typer checks them, shows them in --help and completes
them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from ..config import ModelConfig, SamplingConfig, allowed
from ..models.builtins import DEFAULT_MODEL
from ._config import read_options


def limits(config: type, name: str) -> dict[str, Any]:
    """``typer.Option``'s ``min`` and ``max``: the range ``config`` declares for its field ``name``."""
    declared = allowed(config, name)
    return {"min": declared.get("min"), "max": declared.get("max")}


def choice(config: type, name: str) -> Any:
    """An option's type: ``Literal`` of the choices ``config`` declares for its field ``name``."""
    return Literal[allowed(config, name)["choices"]]


ModelOpt = Annotated[str, typer.Option(
    "--model", "-m", help="Hub id (owner/name), local pipeline or model folder, or builtin:NAME[?k=v] "
    "(see `diffcrit models`).")]
OutOpt = Annotated[Optional[Path], typer.Option(
    "--out", "-o", help="Write the JSON here (atomically) instead of stdout.")]
StepsOpt = Annotated[int, typer.Option(help="Sampling steps.", **limits(SamplingConfig, "steps"))]
SamplesOpt = Annotated[int, typer.Option(
    help="Number of samples; sample i uses seed + i.", **limits(SamplingConfig, "samples"))]
SeedOpt = Annotated[int, typer.Option(
    help="Base seed: sample i draws all its noise from a CPU generator seeded seed + i.",
    **limits(SamplingConfig, "seed"))]
DeviceOpt = Annotated[str, typer.Option(help="auto | cpu | cuda (the current GPU) | cuda:N | mps.")]
DtypeOpt = Annotated[choice(ModelConfig, "dtype"), typer.Option(
    help="Model weights dtype (probes stay accurate: FD in float32).")]
ClassOpt = Annotated[Optional[int], typer.Option(
    "--class-label", help="Class id for class-conditional models (DiT, built-ins).")]
PromptOpt = Annotated[Optional[str], typer.Option(
    help="Prompt for text-conditional models (Stable Diffusion, SD3, Flux, PixArt, Sana); needs transformers.")]
SubfolderOpt = Annotated[Optional[str], typer.Option(help="Model subfolder inside the folder or repo (e.g. unet).")]
RevisionOpt = Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag or commit).")]
VariantOpt = Annotated[Optional[str], typer.Option(help="Weights variant (e.g. fp16).")]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Use the local hub cache only; never touch the network.")]
CacheOpt = Annotated[bool, typer.Option(
    "--cache/--no-cache", help="The result cache (HF_ASSETS_CACHE, by default HF_HOME/assets, /diffcrit; "
    "docs/outputs.md): analyze keeps its result there; guide and reproduce take a t_c an analyze of the same weights "
    "and config kept there instead of sampling. --no-cache: neither read nor written.")]
SchedulerOpt = Annotated[Optional[str], typer.Option(
    help="Override or supply the diffusers scheduler class (e.g. DDPMScheduler, DDIMScheduler, PNDMScheduler, "
    "DPMSolverMultistepScheduler, UniPCMultistepScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler, "
    "EDMEulerScheduler, FlowMatchEulerDiscreteScheduler; docs/design.md §2).")]
PredictionTypeOpt = Annotated[Optional[str], typer.Option(
    help="epsilon | v_prediction | sample (when the folder has no scheduler).")]
ReportToOpt = Annotated[Optional[str], typer.Option(
    help="Also log the result to experiment trackers, by accelerate's names: tensorboard | wandb | mlflow | comet_ml | "
    "aim | clearml | dvclive | swanlab | trackio | all, comma-separated (docs/outputs.md).")]
LoggingDirOpt = Annotated[Optional[Path], typer.Option(
    help="Where trackers that write files (tensorboard, aim) put their run folder.")]
ConfigOpt = Annotated[Optional[Path], typer.Option(
    "--config", "-c", is_eager=True, callback=read_options, help="A diffcrit.yaml: this command's options from its "
    "section (analyze: or guide:), keys as the flags without their dashes; flags given here override it "
    "(docs/config.md).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary on stderr.")]

__all__ = ["DEFAULT_MODEL", "Path"]
