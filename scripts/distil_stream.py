"""Distil a windowed lifter into a streaming one, from 2D alone (resumable).

The teacher's 3D outputs on training 2D are its unsupervised predictions, not labels: no 3D is
read. Each step draws chunks of `--chunk` consecutive frames from the views; every chunk is a
stream of its own (the teacher sees each frame's causal window inside the chunk, padded at the
chunk's start as a ring pads; the student starts the chunk with an empty state), mirrored,
noised and (with `--roll-deg`) rolled as training is. Loss: mean joint distance between the
student's X and the teacher's, in the student's normalised units (the teacher's X times its
scale over the student's).

    python scripts/distil_stream.py --data views/bandai_train.npz views/cmu_train.npz \\
        --out stream.pt --steps 2000 --resume
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from streamlift.data.views import load_views
from streamlift.lifter.model import NRSfMFormer, load_lifter
from streamlift.lifter.stream import StreamingNRSfMFormer, load_streaming, save_streaming
from streamlift.train.sampler import WindowSampler, draw_rolls, flip_2d, roll_2d, roll_3d
from streamlift.windows import window_offsets


def draw_chunks(sampler: WindowSampler, n: int, L: int, g: torch.Generator) -> torch.Tensor:
    """n chunks (n, L, J, 3) of consecutive frames of one view each (views shorter than L are
    padded with their last frame)."""
    t = torch.randint(0, len(sampler), (n,), generator=g)
    start, length = sampler.start[t], sampler.length[t]
    first = torch.minimum(t, start + (length - L).clamp_min(0))
    idx = first[:, None] + torch.arange(L)
    idx = torch.minimum(idx, (start + length - 1)[:, None])
    return sampler.kp[idx]


def teacher_targets(teacher, w: torch.Tensor,
                    lookahead: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's X (n, L, J, 3) and scale (n, L) for every frame t of chunks w (n, L, J, 3)
    from its causal window inside its chunk: X of the window's last frame, or with a lookahead
    of frame t - lookahead (the window's frames after it are what a student with that lookahead
    has seen); the scale of the window (the student's scale at frame t is of the same frames)."""
    n, L = w.shape[:2]
    T = teacher.cfg.window
    idx = (torch.arange(L)[:, None] + torch.from_numpy(window_offsets(T, "causal"))).clamp(0)
    win = w[:, idx].reshape(n * L, T, *w.shape[2:])  # (n L, T, J, 3)
    with torch.no_grad():
        o = teacher(win[..., :2], win[..., 2])
    return o.X[:, T - 1 - lookahead].view(n, L, -1, 3), o.scale.view(n, L)


def distil_batch(sampler: WindowSampler, teacher, a: argparse.Namespace, lookahead: int,
                 g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, object]:
    """One step's chunks (batch, chunk, J, 3) as the student sees them (mirrored, noised,
    rolled), the teacher's targets for them (`teacher_targets`) and the rolls (batch,) radians
    or None: with a roll, the teacher lifts the chunk unturned, which it knows best, and its
    estimate is turned by the roll."""
    w = draw_chunks(sampler, a.batch, a.chunk, g)
    flip = torch.rand(a.batch, generator=g) < 0.5
    w[flip] = flip_2d(w[flip])
    sigma = torch.rand(a.batch, 1, 1, 1, generator=g) * a.noise_px
    w[..., :2] += sigma * torch.randn(w[..., :2].shape, generator=g)
    Xt, st = teacher_targets(teacher, w, lookahead)
    roll = draw_rolls(a.batch, a, g)
    if roll is not None:
        w, Xt = roll_2d(w, roll), roll_3d(Xt, roll)
    return w, Xt, st, roll


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", required=True, help="training views files (2D only)")
    ap.add_argument("--teacher", default="windowed",
                    help="windowed lifter (default: the shipped windowed one)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=2000, help="total steps (resume continues)")
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8, help="chunks per step")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--noise-px", type=float, default=3.0)
    ap.add_argument("--roll-deg", type=float, default=0.0,
                    help="turn a share (--roll-prob) of the chunks' 2D by a camera roll of "
                         "U(-this, this) degrees; the teacher lifts the 2D unturned and its "
                         "estimate is turned by the same roll (streamlift train --roll-deg)")
    ap.add_argument("--roll-prob", type=float, default=0.5)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init", default=None,
                    help="start from this streaming lifter (e.g. an earlier distillation) instead "
                         "of the teacher's weights")
    ap.add_argument("--lookahead", type=int, default=None,
                    help="frames the student sees after the frame it lifts (default: --init's, "
                         "else 0; a resumed run keeps its own)")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    a = parse(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    teacher, tpath = load_lifter(a.teacher, "cpu")
    if not isinstance(teacher, NRSfMFormer) or teacher.cfg.mode != "causal":
        raise SystemExit("the teacher must be a causal windowed lifter")
    views = {}
    for f in a.data:
        views.update({f"{f}:{k}": v for k, v in load_views(f).items()})
    sampler = WindowSampler(views, teacher.cfg.window, "causal")
    out = Path(a.out)
    step = 0
    if a.resume and out.is_file():
        student, meta, train = load_streaming(out, with_train=True)
        init = meta.get("init")
        step = train["step"]
    elif a.init:
        student, train, init = load_streaming(a.init)[0], None, a.init
    else:
        student, train, init = StreamingNRSfMFormer.from_windowed(teacher), None, None
    if train is None and a.lookahead is not None:  # the same weights lift frame t - L from
        # the step that takes frame t
        student.cfg = replace(student.cfg, lookahead=a.lookahead)
    if student.cfg.lookahead >= a.chunk:
        raise SystemExit("--chunk must be longer than the lookahead")
    student.train()
    opt = torch.optim.AdamW(student.parameters(), lr=a.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(a.seed + step)
    if train is not None:
        opt.load_state_dict(train["opt"])
    t0, losses = time.time(), []
    while step < a.steps:
        w, Xt, st, _ = distil_batch(sampler, teacher, a, student.cfg.lookahead, g)
        for p in opt.param_groups:  # cosine to 10 %
            p["lr"] = a.lr * (0.55 + 0.45 * torch.cos(torch.tensor(step / a.steps * 3.14159)).item())
        o, _ = student(w[..., :2], w[..., 2])
        target = Xt * (st / o.scale.detach())[..., None, None]
        loss = (o.X - target).norm(dim=-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        step += 1
        losses.append(loss.item())
        if step % a.save_every == 0 or step == a.steps:
            print(f"step {step}/{a.steps} loss {sum(losses) / len(losses):.4f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
            losses = []
            save_streaming(out, student, {"distilled_from": str(tpath), "steps": step,
                                          "data": a.data, "chunk": a.chunk, "lr": a.lr,
                                          "init": init, "lookahead": student.cfg.lookahead,
                                          "roll_deg": a.roll_deg, "roll_prob": a.roll_prob},
                           train={"step": step, "opt": opt.state_dict()})


if __name__ == "__main__":
    main()
