"""The handoff to diffusers: guide a block of scheduler steps a..b (from ``guide --suggest``) in a user's pipeline.

Two ways, both exact (tests/test_handoff.py):

  - guiders (modular pipelines, diffusers >= 0.35): ``ClassifierFreeGuidance(start, stop)`` guides loop step i of N
    when ``int(start * N) <= i < int(stop * N)`` (diffusers' ``_is_cfg_enabled``). The midpoint fractions
    ``start = (a + 0.5) / N``, ``stop = (b + 1.5) / N`` (1.0 when b = N - 1) select exactly a..b for every N:
    (a + 0.5) / N * N lies half a step from any integer, so float rounding cannot move ``int`` across one, where the
    naive ``a / N`` can land just under a (DESIGN §10).
  - classic pipelines (``StableDiffusionPipeline``): ``GuidanceWindow``, a ``callback_on_step_end`` that switches
    classifier-free guidance on before step a and off after step b. The pipeline runs CFG on a step when its
    ``_guidance_scale > 1``, over ``torch.cat([negative_prompt_embeds, prompt_embeds])``; the callback, called after
    step i, sets both for step i + 1. Step 0 runs before any callback, so the pipeline is called guided (scale S)
    when a = 0 and unguided (scale 1, the negative embeddings passed along for later) otherwise:
    ``GuidanceWindow.pipeline_kwargs`` gives these arguments.

Steps here are diffusers' loop indices over ``scheduler.timesteps`` (one model evaluation each). diffcrit's steps
(``sampling.steppers``) skip leading pure-noise evaluations (``hidden``) and count a Heun-type step once; a block of
diffcrit steps is a block of loop indices only for one-evaluation schedulers (``loop_steps``).

Absolute imports only: this module shares its name with the ``diffusers`` package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from diffcrit.errors import UserError
from diffcrit.models.schedulers import two_evaluations

SERVED_PIPELINES = ("StableDiffusionPipeline",)  # classic pipelines whose loop GuidanceWindow follows exactly
CALLBACK_TENSORS = ["prompt_embeds", "negative_prompt_embeds"]


# --------------------------------------------------------------------------------------------
# Guiders: the midpoint rule


def guider_fractions(first: int, last: int, num_inference_steps: int) -> tuple[float, float]:
    """(start, stop) of ``ClassifierFreeGuidance`` that guide exactly loop steps first..last of N."""
    n = num_inference_steps
    if not 0 <= first <= last < n:
        raise UserError(f"step block {first}..{last} does not fit in {n} steps", f"give 0 <= a <= b < {n}")
    return (first + 0.5) / n, (1.0 if last == n - 1 else (last + 1.5) / n)


def guider_config(first: int, last: int, num_inference_steps: int, guidance_scale: float) -> dict:
    """The keyword arguments of ``diffusers.ClassifierFreeGuidance`` for the block (``guider_fractions``)."""
    start, stop = guider_fractions(first, last, num_inference_steps)
    return {"guidance_scale": float(guidance_scale), "start": start, "stop": stop}


def _guider(config: dict):
    """``ClassifierFreeGuidance(**config)``, without diffusers' "experimental feature" log line."""
    from diffusers import ClassifierFreeGuidance
    from diffusers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # "Guiders are currently an experimental feature" on every construction
    try:
        return ClassifierFreeGuidance(**config)
    finally:
        logging.set_verbosity(verbosity)


def guider_file(config: dict) -> tuple[str, str]:
    """(file name, JSON text) that ``ClassifierFreeGuidance(**config).save_pretrained(folder)`` writes into the folder,
    for writers that stage their outputs (the CLI's ``--save-guider``)."""
    guider = _guider(config)
    return guider.config_name, guider.to_json_string()


def save_guider(config: dict, folder: Path | str) -> Path:
    """``ClassifierFreeGuidance(**config).save_pretrained(folder)``; applied by
    ``pipe.update_components(guider=ClassifierFreeGuidance.from_pretrained(folder))``."""
    guider = _guider(config)
    folder = Path(folder)
    try:
        guider.save_pretrained(folder)
    except OSError as err:
        raise UserError(f"cannot write the guider to {folder}: {err.strerror or err}") from None
    return folder


# --------------------------------------------------------------------------------------------
# Steps: diffcrit's scheduler steps -> diffusers' loop indices; a t window -> a block for another step count


def loop_steps(scheduler: Any, hidden: int, first: int, last: int) -> list[int] | None:
    """Loop indices of diffcrit steps first..last: ``hidden + step`` for one-evaluation schedulers; None for
    Heun-type ones (two loop iterations per step, which a guider's fractions of N cannot express)."""
    if two_evaluations(scheduler):
        return None
    return [hidden + first, hidden + last]


def block_for(t_window: tuple[float, float], scheduler: Any, num_inference_steps: int,
              set_timesteps: Callable[[Any, int], None] | None = None) -> list[int]:
    """The loop steps [a, b] whose t = log(1 + sigma^2) lies in ``t_window`` (the suggestion's ``interval.t``) when
    ``scheduler`` (e.g. ``pipe.scheduler``; copied, not changed) runs ``num_inference_steps``: the same window
    for another step count or scheduler. No step inside is a user error."""
    from diffcrit.sampling.steppers import schedule

    plan = schedule(scheduler, num_inference_steps, set_timesteps)
    t = np.array([info.t for info in plan.infos])
    inside = np.flatnonzero((t >= t_window[0]) & (t <= t_window[1]))
    if inside.size == 0:
        raise UserError(f"no step of {type(scheduler).__name__} at {num_inference_steps} steps lies in t in "
                        f"[{t_window[0]:.4g}, {t_window[1]:.4g}]", "use more steps")
    block = loop_steps(plan.scheduler, plan.hidden, int(inside[0]), int(inside[-1]))
    if block is None:
        raise UserError(f"{type(scheduler).__name__} evaluates the model twice per step",
                        "use a one-evaluation scheduler (DDIM, Euler, DPM-Solver++) for a step block")
    return block


def diffusers_block(scheduler: Any, hidden: int, num_inference_steps: int, first: int, last: int,
                    guidance_scale: float) -> dict:
    """The ``diffusers`` block of a suggestion: what to pass to diffusers to guide diffcrit steps first..last."""
    import diffusers

    block = {"tested_with": diffusers.__version__, "num_inference_steps": num_inference_steps,
             "scheduler": {"class": type(scheduler).__name__, "config": _plain(dict(scheduler.config))}}
    steps = loop_steps(scheduler, hidden, first, last)
    loop_length = len(scheduler.timesteps)
    if steps is None or loop_length != num_inference_steps:
        block.update(step_window=None, guider=None,
                     note=f"{type(scheduler).__name__} runs {loop_length} loop steps for {num_inference_steps} "
                          "inference steps: a guider's fractions of N cannot select this block")
        return block
    block["step_window"] = steps
    block["guider"] = {"class": "ClassifierFreeGuidance", "config": guider_config(*steps, num_inference_steps,
                                                                                  guidance_scale),
                       "rule": "start = (a + 0.5) / N, stop = (b + 1.5) / N (1.0 when b = N - 1): diffusers guides "
                               "step i when int(start N) <= i < int(stop N)"}
    block["apply"] = {"guider": "pipe.update_components(guider=ClassifierFreeGuidance.from_pretrained(DIR))",
                      "classic": f"pipe(**GuidanceWindow({steps[0]}, {steps[1]}, {guidance_scale:g})"
                                 f".pipeline_kwargs(pipe, prompt), num_inference_steps={num_inference_steps})"}
    return block


def _plain(value: Any) -> Any:
    """JSON-safe copy of a scheduler config (tuples -> lists, numpy scalars -> Python)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------------------------
# Classic pipelines: a callback_on_step_end


@dataclass
class GuidanceWindow:
    """Classifier-free guidance at scale ``guidance_scale`` on loop steps first..last only (both included), the
    model's conditional prediction alone elsewhere, in a ``StableDiffusionPipeline``::

        window = GuidanceWindow(first=12, last=17, guidance_scale=7.5)
        image = pipe(**window.pipeline_kwargs(pipe, "a red barn"), num_inference_steps=50).images[0]

    ``pipeline_kwargs`` encodes the prompts as the pipeline would and picks the starting scale (step 0 runs before
    any callback); passing the callback yourself needs the same: ``guidance_scale=window.initial_scale``,
    ``prompt_embeds`` and ``negative_prompt_embeds`` given, ``callback_on_step_end_tensor_inputs=CALLBACK_TENSORS``.
    """

    first: int
    last: int
    guidance_scale: float

    def __post_init__(self) -> None:
        if not 0 <= self.first <= self.last:
            raise UserError(f"step block {self.first}..{self.last} is empty or negative", "give 0 <= first <= last")
        if not self.guidance_scale > 1:
            raise UserError(f"`guidance_scale` must be > 1, got {self.guidance_scale}", "1 is no guidance",
                            option="guidance_scale")

    tensor_inputs = CALLBACK_TENSORS  # as diffusers' PipelineCallback: the pipeline passes these to the callback

    @property
    def initial_scale(self) -> float:
        """The pipeline's ``guidance_scale`` argument: step 0 is guided only when the block starts there."""
        return float(self.guidance_scale) if self.first == 0 else 1.0

    def check(self, pipe: Any) -> None:
        """Refuse, with the reason, a pipeline whose loop this callback cannot steer exactly."""
        name = type(pipe).__name__
        if name not in SERVED_PIPELINES:
            raise UserError(f"GuidanceWindow serves {', '.join(SERVED_PIPELINES)}, not {name}: its loop batches other "
                            "inputs for classifier-free guidance (SDXL: pooled embeddings and time ids) or guides "
                            "through a guider", "with a guider: ClassifierFreeGuidance(start, stop) from the "
                            "suggestion's diffusers block (`save_guider`)")
        unet = getattr(pipe, "unet", None)
        if getattr(unet.config, "time_cond_proj_dim", None) is not None:
            raise UserError(f"{name} with a guidance-distilled UNet (time_cond_proj_dim) runs no classifier-free "
                            "guidance to switch", "use a UNet without time_cond_proj_dim")
        if getattr(unet, "encoder_hid_proj", None) is not None:
            raise UserError(f"{name} with an IP-Adapter batches image embeddings for guidance once, before the loop",
                            "unload the IP-Adapter (pipe.unload_ip_adapter())")

    def pipeline_kwargs(self, pipe: Any, prompt: str | list[str],
                        negative_prompt: str | list[str] | None = None) -> dict:
        """The pipeline's arguments for this window: prompt embeddings as ``pipe.encode_prompt`` gives them (one per
        prompt: the pipeline repeats them for ``num_images_per_prompt``), the starting scale, this callback and its
        tensor inputs."""
        import torch

        self.check(pipe)
        with torch.no_grad():
            cond, negative = pipe.encode_prompt(prompt, pipe._execution_device, 1, True, negative_prompt)
        return {"prompt_embeds": cond, "negative_prompt_embeds": negative, "guidance_scale": self.initial_scale,
                "callback_on_step_end": self, "callback_on_step_end_tensor_inputs": list(CALLBACK_TENSORS)}

    def __call__(self, pipe: Any, step_index: int, timestep: Any, callback_kwargs: dict) -> dict:
        """After loop step ``step_index``: set the pipeline's scale and prompt batch for the next step."""
        import torch

        if step_index == 0:
            self.check(pipe)
        following = step_index + 1
        if following not in (self.first, self.last + 1):
            return callback_kwargs
        embeds = callback_kwargs["prompt_embeds"]
        negative = callback_kwargs.get("negative_prompt_embeds")
        if following == self.first:  # on: [negative; conditional], as the pipeline concatenates them
            if negative is None:
                raise UserError("GuidanceWindow needs negative_prompt_embeds to switch guidance on",
                                "call the pipeline with window.pipeline_kwargs(pipe, prompt)")
            negative = negative.to(embeds.device, embeds.dtype)
            if negative.shape[0] != embeds.shape[0]:  # given unguided, the pipeline did not repeat them per image
                negative = negative.repeat_interleave(embeds.shape[0] // negative.shape[0], dim=0)
            pipe._guidance_scale = float(self.guidance_scale)
            callback_kwargs["prompt_embeds"] = torch.cat([negative, embeds])
        else:  # off: the conditional half, scale 1 (do_classifier_free_guidance is _guidance_scale > 1)
            pipe._guidance_scale = 1.0
            callback_kwargs["prompt_embeds"] = embeds.chunk(2)[1]
        return callback_kwargs


__all__ = ["CALLBACK_TENSORS", "GuidanceWindow", "block_for", "diffusers_block", "guider_config", "guider_fractions",
           "loop_steps", "save_guider"]
