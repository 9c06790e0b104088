"""Short fine-tune probes: continue a training checkpoint under changed loss settings for a few
hundred steps each, then score every probe on a validation views file side by side.

    python scripts/probe.py --init lifter.pt --data views/bandai_train.npz views/cmu_train.npz \
        --val views/bandai_val.npz --steps 400 --out-dir runs/probe \
        --setting 'defaults={}' --setting 'no-depth-extent={"weights": {"depth_extent": 0}}'

Each probe starts from --init's weights *and optimizer state* (a training checkpoint, not a
shipped one), trains at a constant --lr with the same data pipeline as `streamlift train`
(mirroring, 2D noise) and the same seeded draws, so probes differ only in their settings. A
setting is NAME=JSON with any of "weights" (loss weights to override), "prior_weight",
"prior_t_range". The 3D of --val is used only to score. Probes see the 2D as --init's run did:
through the virtual camera if its training config says `intrinsics` (runs from before that
option did not).

Scores (mm): N-MPJPE, PA-MPJPE, the mean absolute error per camera axis after the N-MPJPE scale,
the fraction of joints more than 100 mm in front of or behind the root whose predicted depth
has the wrong sign, and the predicted depth spread relative to the true one.
"""

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from streamlift.data import load_views
from streamlift.metrics import pa_mpjpe
from streamlift.lifter.model import LifterConfig, NRSfMFormer
from streamlift.prior import load_prior
from streamlift.train.sampler import WindowSampler, draw_batch
from streamlift.train.lifter import saved_config, train_step
from streamlift.train.loop import Optimiser
from streamlift.lifter.infer import lift_sequence

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--init", required=True, help="training checkpoint (with its optimizer state) to start from")
ap.add_argument("--data", nargs="+", required=True, help="training views files")
ap.add_argument("--val", required=True, help="validation views file with kp3d (scoring only)")
ap.add_argument("--setting", action="append", required=True, metavar="NAME=JSON",
                help="a probe: its name and its overrides, repeatable")
ap.add_argument("--steps", type=int, default=400, help="optimizer steps per probe")
ap.add_argument("--lr", type=float, default=3e-4, help="constant learning rate of the probes")
ap.add_argument("--stride", type=int, default=10, help="score every STRIDE-th frame of ~300 val views")
ap.add_argument("--threads", type=int, default=1, help="torch threads")
ap.add_argument("--out-dir", type=Path, required=True, help="where probe weights and results.json go")
args = ap.parse_args()
torch.set_num_threads(args.threads)
settings = {}
for item in args.setting:
    name, _, js = item.partition("=")
    try:
        settings[name] = json.loads(js or "{}")
    except json.JSONDecodeError as e:
        raise SystemExit(f"probe: --setting {item!r}: {e}")
    unknown = set(settings[name]) - {"weights", "prior_weight", "prior_t_range"}
    if unknown:
        raise SystemExit(f"probe: --setting {name}: unknown keys {sorted(unknown)}")
ck = torch.load(args.init, map_location="cpu", weights_only=True)
if "train" not in ck:
    raise SystemExit(f"probe: {args.init} holds no optimizer state (a shipped model?); give a training checkpoint")

train_views = {}
for p in args.data:
    train_views.update({f"{p}:{k}": v for k, v in load_views(p).items()})
cfg0 = saved_config(ck["train"]["config"])
sampler = WindowSampler(train_views, ck["config"]["window"], ck["config"]["mode"], cfg0.intrinsics)
prior = load_prior(cfg0.prior, torch.device("cpu"))
val_views = load_views(args.val)
val_names = sorted(val_views)[::max(1, len(val_views) // 300)]


def score(model) -> dict:
    P, G = [], []
    for n in val_names:
        v = val_views[n]
        frames = np.arange(0, v.frames, args.stride)
        P.append(lift_sequence(model, v.kp2d, 512, "cpu", frames=frames,
                               K=v.intrinsics if cfg0.intrinsics else None))
        G.append(v.kp3d[frames])
    P = torch.from_numpy(np.concatenate(P)).double()  # (F, J, 3)
    G = torch.from_numpy(np.concatenate(G)).double()
    P, G = P - P[:, :1], G - G[:, :1]
    s = (P * G).sum((1, 2)) / (P * P).sum((1, 2))
    Ps = s[:, None, None] * P  # the N-MPJPE scale
    deep = G[..., 2].abs() > 100
    return {"frames": len(P),
            "n_mpjpe": float((Ps - G).norm(dim=-1).mean()),
            "pa_mpjpe": float(pa_mpjpe(P, G)),
            "axis_err_xyz": [float(e) for e in (Ps - G).abs().mean((0, 1))],
            "wrong_depth_sign": float(((Ps[..., 2] * G[..., 2] < 0) & deep).sum() / deep.sum()),
            "depth_spread_ratio": float(Ps[..., 2].std() / G[..., 2].std())}


args.out_dir.mkdir(parents=True, exist_ok=True)
results = {}
for name, over in settings.items():
    model = NRSfMFormer(LifterConfig(**ck["config"]))
    model.load_state_dict(ck["state_dict"])
    cfg = replace(cfg0, weights={**cfg0.weights, **over.get("weights", {})},
                  prior_weight=over.get("prior_weight", cfg0.prior_weight),
                  prior_t_range=tuple(over.get("prior_t_range", cfg0.prior_t_range)))
    opt = Optimiser(model, args.lr, cfg.weight_decay)  # constant lr: no total, no schedule
    opt.opt.load_state_dict(ck["train"]["optimizer"])
    torch.manual_seed(0)  # the prior loss's noise draws
    gen = torch.Generator().manual_seed(99)  # windows, mirroring, 2D noise: the same for every probe
    t0 = time.time()
    model.train()
    for i in range(args.steps):
        w, focal, roll = draw_batch(sampler, cfg, gen)
        train_step(model, opt, w, cfg, prior, focal=focal, roll=roll)
        if (i + 1) % 100 == 0:
            print(f"{name}: step {i + 1}/{args.steps} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    results[name] = {"setting": over, **score(model)}
    r = results[name]
    print(f"{name}: N-MPJPE {r['n_mpjpe']:.1f}  PA-MPJPE {r['pa_mpjpe']:.1f}  wrong depth sign "
          f"{100 * r['wrong_depth_sign']:.0f} %  depth spread {r['depth_spread_ratio']:.2f}", flush=True)
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=1))
