"""Scheduler families: which frame a diffusers scheduler samples in, mapped to the one VE frame
(docs/design.md §2). This is the one place that knows schedulers.

A family is told from what the scheduler exposes, not from its name, so a new scheduler of a known
family needs nothing here (checked in this order):

  edm   ``precondition_inputs/outputs`` (EDMEuler, EDMDPMSolverMultistep). The sample is y; the model
        sees c_in y at timestep c_noise(sigma) and D = c_skip y + c_out F ([EDM22] Table 1), computed
        by the scheduler's own ``precondition_*`` routines.
  flow  flow-matching sigmas s in [0, 1] (``scale_noise``, no alphas_cumprod: FlowMatchEuler/Heun; or
        ``use_flow_sigmas`` with prediction_type "flow_prediction": DPM-Solver and UniPC as Sana runs them).
        x_s = (1 - s) x0 + s eps and the model predicts v = dx_s/ds = eps - x0. Dividing by (1 - s):
        y = x_s / (1 - s) = x0 + sigma eps with sigma = s / (1 - s), so x_s = y / (1 + sigma),
        s = sigma / (1 + sigma), and D = x_s - s v = (y - sigma v) / (1 + sigma). At s = 1 (sigma
        infinite) y is undefined: that evaluation is run but not recorded (see ``Evaluation``).
  ve    alphas_cumprod and sigmas, started from init_noise_sigma > 1 (Euler, LMS, Heun, KDPM2 and their
        ancestral variants). The sample is y; the model sees scale_model_input(y) = y / sqrt(1 + sigma^2)
        = x_t, a VP network.
  vp    alphas_cumprod otherwise (DDPM, DDIM, PNDM, DPM-Solver, DEIS, UniPC): the sample is x_t and
        y = x_t sqrt(1 + sigma^2), sigma = sqrt((1 - ab) / ab).

Schedulers with ``state_in_first_order`` (Heun, KDPM2, KDPM2 ancestral, FlowMatchHeun) evaluate the
model twice per step; every entry of ``scheduler.timesteps`` is one evaluation, as in the diffusers
pipelines, and is labelled "first" or "second"; the second evaluations of KDPM2 and KDPM2 ancestral are
at their interpolated sigmas (``interpolated_sigma``). Schedulers that fit no family, or fit one but
cannot be followed exactly, are refused (``REFUSED``) with the reason.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch

from .prediction import PREDICTION_TYPES, denoised_to_output, output_to_denoised
from ..errors import UserError
from ..frame import alpha_bar_to_sigma

FIRST, SECOND = "first", "second"

# Schedulers that match a family (or almost) but that diffcrit cannot follow exactly, and why.
REFUSED = {
    "DPMSolverSDEScheduler": "its noise comes from one Brownian tree seeded once, not from per-sample generators",
    "CosineDPMSolverMultistepScheduler": "its noise comes from one Brownian tree seeded once, not from per-sample "
                                         "generators",
    "DDIMInverseScheduler": "it inverts (data to noise); it does not sample",
    "DPMSolverMultistepInverseScheduler": "it inverts (data to noise); it does not sample",
    "RePaintScheduler": "it inpaints a given image (its steps go back and forth in time)",
    "ScoreSdeVeScheduler": "its pipeline alternates corrector and predictor steps (step_correct, step_pred)",
    "CMStochasticIterativeScheduler": "consistency models have their own boundary-condition parameterisation",
    "UnCLIPScheduler": "its step needs the previous timestep and the variance from the UnCLIP pipeline",
    "VQDiffusionScheduler": "it samples discrete tokens",
    "AmusedScheduler": "it samples discrete tokens",
    "BlockRefinementScheduler": "it samples discrete tokens",
    "KarrasVeScheduler": "its pipeline adds churn noise itself (step_correct); no alphas_cumprod",
    "DDPMWuerstchenScheduler": "its alphas are a continuous cosine schedule it does not expose",
}
NO_FAMILY = ("it exposes neither alphas_cumprod, EDM preconditioning (precondition_inputs/outputs) nor "
             "flow-matching sigmas (scale_noise)")


# --------------------------------------------------------------------------------------------
# Model frames: the network's input and output for a VE state y at noise level sigma (B,)


def _col(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return sigma.view(-1, *([1] * (like.ndim - 1))).to(like.device, like.dtype)


class AlphaBarFrame:
    """A VP-trained network (vp and ve families): input x_t = y / sqrt(1 + sigma^2) at its training
    timestep; output for its ``prediction_type`` (epsilon, v_prediction, sample)."""

    def __init__(self, prediction_type: str, alphas_cumprod: torch.Tensor):
        if prediction_type not in PREDICTION_TYPES:
            raise UserError(f"unsupported prediction_type {prediction_type!r}",
                            f"supported: {', '.join(PREDICTION_TYPES)}")
        self.prediction_type = prediction_type
        self.log_sigmas = training_log_sigmas(alphas_cumprod)

    def model_input(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return y / torch.sqrt(1 + _col(sigma, y) ** 2)

    def denoised(self, output: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return output_to_denoised(output, y, sigma, self.prediction_type)

    def output(self, d: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The network output that ``denoised`` maps to d (its inverse)."""
        return denoised_to_output(d, y, sigma, self.prediction_type)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma_to_timestep(sigma, self.log_sigmas).float()


def training_log_sigmas(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """(T,) float64 log sigma of each training timestep, sigma = sqrt((1 - ab) / ab), increasing."""
    return alpha_bar_to_sigma(alphas_cumprod).log().double()


def sigma_to_timestep(sigma: torch.Tensor, log_sigmas: torch.Tensor) -> torch.Tensor:
    """Fractional training timestep (float64, CPU) whose noise level is sigma, interpolated in log sigma
    between the training levels and clamped to them (sigma = 0: timestep 0)."""
    log_sigma = sigma.double().log().cpu()
    idx = torch.searchsorted(log_sigmas, log_sigma).clamp(1, len(log_sigmas) - 1)
    lo, hi = log_sigmas[idx - 1], log_sigmas[idx]
    w = ((log_sigma - lo) / (hi - lo)).clamp(0, 1)
    return idx - 1 + w


class EDMFrame:
    """An EDM-preconditioned network: the scheduler's own ``precondition_inputs/noise/outputs``."""

    def __init__(self, scheduler: Any):
        self.scheduler = scheduler  # only its config is read: the precondition_* routines are pure
        self.prediction_type = scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise UserError(f"unsupported prediction_type {self.prediction_type!r} for {type(scheduler).__name__}",
                            "its preconditioning supports: epsilon, v_prediction")

    def model_input(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.scheduler.precondition_inputs(y, _col(sigma, y))

    def denoised(self, output: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.scheduler.precondition_outputs(y, output, _col(sigma, y))

    def output(self, d: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The inverse of ``denoised``: precondition_outputs is c_skip y + c_out output."""
        skip = self.denoised(torch.zeros_like(y), y, sigma)
        c_out = self.denoised(torch.ones_like(y), torch.zeros_like(y), sigma)
        return (d - skip) / c_out

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.scheduler.precondition_noise(sigma.float())


class FlowFrame:
    """A flow-matching network: input x_s = y / (1 + sigma) at timestep s N (N training timesteps),
    output v = eps - x0, so D = (y - sigma v) / (1 + sigma)."""

    prediction_type = "flow"

    def __init__(self, num_train_timesteps: int):
        self.num_train_timesteps = num_train_timesteps

    def model_input(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return y / (1 + _col(sigma, y))

    def denoised(self, output: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = _col(sigma, y)
        return (y - s * output) / (1 + s)

    def output(self, d: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The inverse of ``denoised``: v = (y - (1 + sigma) d) / sigma."""
        s = _col(sigma, y)
        return (y - (1 + s) * d) / s

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return (sigma / (1 + sigma) * self.num_train_timesteps).float()


# --------------------------------------------------------------------------------------------
# Families: where a scheduler's sample sits and at which sigma each evaluation is taken


def interpolated_sigma(scheduler: Any, i: int) -> float:
    """The sigma a second evaluation i is taken at where the scheduler keeps interpolated sigmas (KDPM2 and
    KDPM2 ancestral's ``sigmas_interpol``): the entry whose training timestep is ``timesteps[i]``, the one passed
    to the model, since the scheduler derives those timesteps from these sigmas. The model input is scaled with
    that entry and the denoiser must use it. Found by value: its index differs between schedulers (KDPM2 reads
    ``sigmas_interpol[i]``, KDPM2 ancestral ``sigmas_interpol[i - 1]``)."""
    table = scheduler.sigmas_interpol.double().cpu()
    table = table[table > 0]
    timesteps = sigma_to_timestep(table, training_log_sigmas(scheduler.alphas_cumprod))
    return float(table[torch.argmin((timesteps - float(scheduler.timesteps[i])).abs())])


class VPFamily:
    name = "vp"

    @staticmethod
    def matches(scheduler: Any) -> bool:
        return hasattr(scheduler, "alphas_cumprod")

    @staticmethod
    def frame(scheduler: Any):
        return AlphaBarFrame(scheduler.config.prediction_type, scheduler.alphas_cumprod)

    @staticmethod
    def sigma(scheduler: Any, i: int, order: str | None) -> float:
        """The solver's own sigmas where it keeps them (DPM-Solver, DEIS, UniPC), else alphas_cumprod[timestep]."""
        sigmas = getattr(scheduler, "sigmas", None)
        if sigmas is not None and len(sigmas) > i:
            return float(sigmas[i])
        alpha_bar = scheduler.alphas_cumprod[int(scheduler.timesteps[i])]
        return float(alpha_bar_to_sigma(alpha_bar.double()))

    @staticmethod
    def to_y(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return x.float() * math.sqrt(1 + sigma**2)


class VEFamily(VPFamily):
    name = "ve"

    @staticmethod
    def matches(scheduler: Any) -> bool:
        return (hasattr(scheduler, "alphas_cumprod") and getattr(scheduler, "sigmas", None) is not None
                and float(scheduler.init_noise_sigma) > 1)

    @staticmethod
    def sigma(scheduler: Any, i: int, order: str | None) -> float:
        """sigmas[i] (``sigmas`` is aligned with ``timesteps`` entry by entry), or the interpolated sigma of a
        second evaluation where the scheduler keeps them."""
        if order == SECOND and getattr(scheduler, "sigmas_interpol", None) is not None:
            return interpolated_sigma(scheduler, i)
        return float(scheduler.sigmas[i])

    @staticmethod
    def to_y(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return x.float()


class EDMFamily(VEFamily):
    name = "edm"

    @staticmethod
    def matches(scheduler: Any) -> bool:
        return hasattr(scheduler, "precondition_inputs") and hasattr(scheduler, "precondition_outputs")

    frame = staticmethod(EDMFrame)


class FlowFamily:
    name = "flow"

    @staticmethod
    def matches(scheduler: Any) -> bool:
        config = scheduler.config
        flow_sigmas = config.get("use_flow_sigmas") and config.get("prediction_type") == "flow_prediction"
        return bool(flow_sigmas) or (hasattr(scheduler, "scale_noise") and not hasattr(scheduler, "alphas_cumprod")
                                     and getattr(scheduler, "sigmas", None) is not None)

    @staticmethod
    def frame(scheduler: Any):
        return FlowFrame(int(scheduler.config.num_train_timesteps))

    @staticmethod
    def sigma(scheduler: Any, i: int, order: str | None) -> float:
        s = float(scheduler.sigmas[i])
        return s / (1 - s) if s < 1 else math.inf

    @staticmethod
    def to_y(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return x.float() * (1 + sigma)


FAMILIES = (EDMFamily, FlowFamily, VEFamily, VPFamily)  # most specific first


def family_of(scheduler: Any):
    """The family of a scheduler instance; a one-line user error naming it and why when there is none."""
    name = type(scheduler).__name__
    check_supported(name)
    for family in FAMILIES:
        if family.matches(scheduler):
            return family
    raise UserError(f"unsupported scheduler {name}: {NO_FAMILY}", "try `scheduler` (docs/design.md §2)")


def check_supported(name: str) -> None:
    """Refuse a scheduler class known not to be followable, by name, before it is built."""
    if name in REFUSED:
        raise UserError(f"unsupported scheduler {name}: {REFUSED[name]}", "try `scheduler` (docs/design.md §2)")


# --------------------------------------------------------------------------------------------
# The evaluations of one run


@dataclass(frozen=True)
class Evaluation:
    """One model evaluation, i.e. one entry of ``scheduler.timesteps``: its timestep, the VE sigma its
    sample is at (inf: pure noise, y undefined, not recorded), and "first"/"second" for two-evaluation
    schedulers (None otherwise)."""

    timestep: float
    sigma: float
    order: str | None

    @property
    def recorded(self) -> bool:
        return math.isfinite(self.sigma)


def two_evaluations(scheduler: Any) -> bool:
    """Heun-type schedulers expose ``state_in_first_order``: they alternate a first and a second evaluation."""
    return hasattr(type(scheduler), "state_in_first_order")


def evaluations(family: Any, scheduler: Any) -> list[Evaluation]:
    """Every evaluation of a scheduler after ``set_timesteps``, in the order the pipeline runs them."""
    paired = two_evaluations(scheduler)
    out = []
    for i, t in enumerate(scheduler.timesteps):
        order = (FIRST if i % 2 == 0 else SECOND) if paired else None
        out.append(Evaluation(float(t), family.sigma(scheduler, i, order), order))
    return out


def step_kwargs(scheduler: Any, generators: list[torch.Generator]) -> dict:
    """The per-sample generators for ``scheduler.step`` where it takes them (as diffusers pipelines'
    ``prepare_extra_step_kwargs`` decide)."""
    return {"generator": generators} if "generator" in inspect.signature(scheduler.step).parameters else {}


def init_noise_sigma(scheduler: Any) -> Any:
    """The scale of the initial noise (flow-matching schedulers start from unit noise and do not say)."""
    return getattr(scheduler, "init_noise_sigma", 1.0)


def scale_model_input(scheduler: Any, x: torch.Tensor, timestep: Any) -> torch.Tensor:
    """The scheduler's model input for sample x (flow-matching schedulers feed x unchanged)."""
    scale = getattr(scheduler, "scale_model_input", None)
    return x if scale is None else scale(x, timestep)
