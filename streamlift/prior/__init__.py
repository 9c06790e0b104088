"""The diffusion motion prior: a denoiser of short 3D motion windows (`model`), its
representation and training windows (`data`), the loss that guides the lifter (`loss`) and the
check against held-out motion (`check`). Training it: `streamlift.train.prior`."""

from streamlift.prior.check import check_prior, prior_check_passes
from streamlift.prior.data import WindowSampler, normalise, random_views
from streamlift.prior.loss import crop_windows, prior_loss, step_range
from streamlift.prior.model import (FORMAT, MotionPrior, PriorConfig, alpha_bar_schedule, load_prior, save_prior)

__all__ = ["check_prior", "prior_check_passes", "WindowSampler", "normalise", "random_views",
           "crop_windows", "prior_loss", "step_range", "FORMAT", "MotionPrior", "PriorConfig",
           "alpha_bar_schedule", "load_prior", "save_prior"]
