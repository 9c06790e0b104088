"""The prior check: its samples against held-out motion, and whether it tells a pose from its
depth mirror (the ambiguity it exists to resolve)."""

from __future__ import annotations

from pathlib import Path

import torch

from streamlift.prior.data import WindowSampler, normalise, random_views, sources
from streamlift.prior.loss import prior_loss
from streamlift.prior.model import MotionPrior, PriorConfig
from streamlift.skeleton import H36M17


@torch.no_grad()
def denoise_error(prior: MotionPrior, x0: torch.Tensor, ts=(50, 100, 200, 300),
                  seed: int = 0) -> torch.Tensor:
    """Per-window denoising error (B,) of prior-space windows, averaged over steps `ts`.

    The noise is seeded and depends only on the window's position in the batch, so two batches
    of the same shape (real vs depth-mirrored) are scored with identical noise.
    """
    g = torch.Generator(device=x0.device).manual_seed(seed)
    err = torch.zeros(x0.shape[0], device=x0.device)
    for t in ts:
        eps = torch.randn(x0.shape, device=x0.device, generator=g)
        tt = torch.full((x0.shape[0],), int(t), device=x0.device, dtype=torch.long)
        x0_hat = prior(prior.q_sample(x0, tt, eps), tt)  # the clean estimate
        err += (x0_hat - x0).square().mean(dim=(1, 2, 3))
    return err / len(ts)


def depth_mirror(x: torch.Tensor) -> torch.Tensor:
    """z -> -z (the depth ambiguity of a projection), joint labels kept."""
    return x * torch.tensor([1.0, 1.0, -1.0], device=x.device, dtype=x.dtype)


def bone_stats(x: torch.Tensor) -> dict:
    """Bone-length statistics of windows (B, Tp, J, 3), any scale (each window renormalised).

    - `bones`: mean length of each of the 16 bones, in units of the window's RMS root distance;
    - `asym`: mean |left - right| / mean(left, right) over the 6 symmetric bone pairs;
    - `cv_time`: mean over bones of (std over the window / mean) of a bone's length.
    """
    from streamlift.skeleton import SYMMETRIC_BONES

    x, _ = normalise(x)
    p, c = torch.tensor(H36M17.bones).T
    L = (x[..., c, :] - x[..., p, :]).norm(dim=-1)  # (B, Tp, 16)
    child = {int(cc): i for i, cc in enumerate(c)}
    li = torch.tensor([child[a] for a, _ in SYMMETRIC_BONES])
    ri = torch.tensor([child[b] for _, b in SYMMETRIC_BONES])
    Lm = L.mean(1)  # (B, 16)
    asym = ((Lm[:, li] - Lm[:, ri]).abs() / (0.5 * (Lm[:, li] + Lm[:, ri])).clamp_min(1e-6))
    cv = L.std(1) / Lm.clamp_min(1e-6)
    return {"bones": Lm.mean(0), "asym": asym.mean().item(), "cv_time": cv.mean().item()}


def check_prior(prior: MotionPrior, real_world: torch.Tensor, n_samples: int = 512,
                ddim_steps: int = 50, seed: int = 0) -> dict:
    """The prior check: samples vs held-out windows, and real vs depth-mirrored denoising error.

    `real_world`: held-out world-frame mm windows (B, Tp, J, 3), z up (e.g. from WindowSampler
    over the val split). Returns numbers; `prior_check_passes` turns them into a verdict.
    """
    dev = prior.alpha_bar.device
    g = torch.Generator(device=dev).manual_seed(seed)
    real = random_views(real_world.to(dev), prior.cfg, generator=g.manual_seed(seed))
    samples = prior.sample(n_samples, ddim_steps, generator=g.manual_seed(seed + 1))
    rs, ss = bone_stats(real.cpu()), bone_stats(samples.cpu())
    bone_rel = ((ss["bones"] - rs["bones"]).abs() / rs["bones"])  # (16,)
    e_real = denoise_error(prior, real, seed=seed + 2)
    e_mirr = denoise_error(prior, depth_mirror(real), seed=seed + 2)
    return {
        "windows": real.shape[0], "samples": n_samples, "ddim_steps": ddim_steps,
        "bone_rel_err_mean": bone_rel.mean().item(), "bone_rel_err_max": bone_rel.max().item(),
        "asym_real": rs["asym"], "asym_samples": ss["asym"],
        "cv_time_real": rs["cv_time"], "cv_time_samples": ss["cv_time"],
        "err_real": e_real.mean().item(), "err_mirrored": e_mirr.mean().item(),
        "mirrored_worse_frac": (e_mirr > e_real).float().mean().item(),
    }


def depth_fit(prior: MotionPrior | None, real: torch.Tensor, weight: float = 1.0,
              t_range=(0.05, 0.4), iters: int = 300, seed: int = 0) -> dict:
    """Lift 2D by optimisation, to show what the prior loss does in lifter training.

    `real`: camera-frame windows (B, T, J, 3) with T >= the prior's window (e.g. 27). Starting
    from zero depth (the symmetric point between a pose and its depth mirror), fit X to the
    2D x, y of `real` by the lifter's reprojection term (mean distance) plus `weight` x
    `prior_loss` (none when `prior` is None). Returns the mean joint error to the real poses
    and to their depth mirrors (units of the RMS root distance), and the fraction of windows
    that end nearer the real pose than its mirror.
    """
    g = torch.Generator(device=real.device).manual_seed(seed)
    real = normalise(real)[0]  # (B, T, J, 3), RMS root distance 1
    x2d = real[..., :2]
    X = torch.cat([x2d, torch.zeros_like(x2d[..., :1])], dim=-1)  # (B, T, J, 3), flat
    X = (X + 0.02 * torch.randn(X.shape, device=X.device, generator=g)).requires_grad_(True)
    opt = torch.optim.Adam([X], lr=0.01)
    with torch.enable_grad():
        for _ in range(iters):
            loss = (X[..., :2] - x2d).norm(dim=-1).mean()
            if prior is not None:
                loss = loss + weight * prior_loss(prior, X, t_range, generator=g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    X = X.detach()
    d_real = (X - real).norm(dim=-1).mean(dim=(1, 2))  # (B,)
    d_mirr = (X - depth_mirror(real)).norm(dim=-1).mean(dim=(1, 2))
    return {"err_real": d_real.mean().item(), "err_mirrored": d_mirr.mean().item(),
            "nearer_real_frac": (d_real < d_mirr).float().mean().item(),
            "reprojection": (X[..., :2] - x2d).norm(dim=-1).mean().item()}


def prior_check_passes(r: dict) -> list[str]:
    """The failed criteria of a `check_prior` result (empty when it passes)."""
    fails = []
    if r["bone_rel_err_mean"] > 0.05:
        fails.append(f"mean bone-length error {r['bone_rel_err_mean']:.3f} > 0.05")
    if r["bone_rel_err_max"] > 0.15:
        fails.append(f"worst bone-length error {r['bone_rel_err_max']:.3f} > 0.15")
    if r["asym_samples"] > max(0.05, 3 * r["asym_real"]):
        fails.append(f"left/right asymmetry of samples {r['asym_samples']:.3f} > "
                     f"max(0.05, 3 x held-out {r['asym_real']:.3f})")
    if r["cv_time_samples"] > max(0.05, 3 * r["cv_time_real"]):
        fails.append(f"bone-length variation over time {r['cv_time_samples']:.3f} > "
                     f"max(0.05, 3 x held-out {r['cv_time_real']:.3f})")
    if not r["err_mirrored"] > 1.5 * r["err_real"]:
        fails.append(f"depth-mirrored error {r['err_mirrored']:.4f} not > 1.5 x real "
                     f"{r['err_real']:.4f}")
    if r["mirrored_worse_frac"] < 0.9:
        fails.append(f"mirrored scored worse in only {r['mirrored_worse_frac']:.1%} of windows")
    fit = r.get("depth_fit")
    if fit is not None:
        if fit["prior"]["nearer_real_frac"] < 0.8:
            fails.append(f"2D fit with the prior ends nearer the real depth in only "
                         f"{fit['prior']['nearer_real_frac']:.0%} of windows")
        if not fit["prior"]["err_real"] < fit["none"]["err_real"]:
            fails.append("2D fit with the prior is no better than without it")
    return fails


def run_check(prior, mocap: list[Path], splits: Path, split: str = "val", windows: int = 1024,
              samples: int = 512, ddim_steps: int = 50, seed: int = 0, fit_windows: int = 128,
              fit_weight: float = 1.0, fit_t_range=(0.05, 0.4)) -> dict:
    srcs, _ = sources(mocap, splits, split)
    dev = prior.alpha_bar.device
    sampler = WindowSampler(srcs, prior.cfg, device=dev)
    real = sampler(windows, torch.Generator(device=dev).manual_seed(seed))
    r = check_prior(prior, real, samples, ddim_steps, seed)
    if fit_windows:
        # Lifter-sized windows: 27 frames of a 30-50 fps camera.
        cfg27 = PriorConfig.from_dict({**prior.cfg.to_dict(), "window": 27,
                                       "dt_min": 1 / 50, "dt_max": 1 / 30})
        g = torch.Generator(device=dev).manual_seed(seed + 4)
        world = WindowSampler(srcs, cfg27, device=dev)(fit_windows, g)  # (B, 27, J, 3) mm
        w27 = random_views(world, cfg27, g)
        r["depth_fit"] = {
            "windows": fit_windows, "weight": fit_weight, "t_range": list(fit_t_range),
            "unit_mm": normalise(world)[1].mean().item(),  # mean RMS root distance, mm
            "prior": depth_fit(prior, w27, fit_weight, fit_t_range, seed=seed),
            "none": depth_fit(None, w27, seed=seed)}
    return r


def format_check(r: dict) -> str:
    lines = [
        f"held-out windows {r['windows']}, prior samples {r['samples']} "
        f"({r['ddim_steps']} DDIM steps)",
        f"  bone lengths, samples vs held-out: mean rel. error {r['bone_rel_err_mean']:.3f}, "
        f"worst bone {r['bone_rel_err_max']:.3f}",
        f"  left/right asymmetry: samples {r['asym_samples']:.3f}, held-out {r['asym_real']:.3f}",
        f"  bone-length variation within a window (CV): samples {r['cv_time_samples']:.3f}, "
        f"held-out {r['cv_time_real']:.3f}",
        f"  denoising error: real {r['err_real']:.4f}, depth-mirrored {r['err_mirrored']:.4f} "
        f"(x{r['err_mirrored'] / max(r['err_real'], 1e-12):.1f}); mirrored worse in "
        f"{r['mirrored_worse_frac']:.1%} of windows",
    ]
    fit = r.get("depth_fit")
    if fit:
        lines.append(f"  2D-only fit of {fit['windows']} windows of 27 frames from zero depth "
                     f"(reprojection + {fit['weight']:g} x prior_loss, t_range "
                     f"{tuple(fit['t_range'])}; unit = RMS joint distance to the root, "
                     f"{fit['unit_mm']:.0f} mm on average):")
        for k, name in (("prior", "with the prior"), ("none", "reprojection only")):
            f = fit[k]
            lines.append(f"    {name}: joint error {f['err_real']:.3f} to the real pose, "
                         f"{f['err_mirrored']:.3f} to its depth mirror, 2D error "
                         f"{f['reprojection']:.3f}; nearer the real one in "
                         f"{f['nearer_real_frac']:.0%} of windows")
    return "\n".join(lines)


def check_from(prior: MotionPrior, c) -> tuple[str, dict]:
    """run_check as a prior.options.CheckConfig says: the printed report (ending PASS or FAIL)
    and the results with 'pass' and 'failures'."""
    r = run_check(prior, c.mocap, c.splits, c.split, c.windows, c.samples, c.ddim_steps, c.seed,
                  c.fit_windows, c.fit_weight)
    fails = prior_check_passes(r)
    text = (f"check-prior {c.prior} on the {c.split} split of "
            f"{', '.join(p.name for p in c.mocap)}:\n{format_check(r)}\n"
            + ("PASS" if not fails else "FAIL: " + "; ".join(fails)))
    return text, {**r, "pass": not fails, "failures": fails}
