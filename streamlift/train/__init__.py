"""Training from 2D alone: the lifter (`lifter`, its `losses` and `sampler`) and the diffusion
prior (`prior`), both on the shared optimisation loop (`loop`)."""
