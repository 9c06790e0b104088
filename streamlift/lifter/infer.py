"""Offline lifting of whole sequences as the server lifts streams: for a windowed lifter each
frame the target of its own window, padded as a stream's ring buffer pads
(`streamlift.windows`); for a streaming lifter, frame by frame through its state."""

from __future__ import annotations

import numpy as np
import torch

from streamlift.lifter.stream import StreamingNRSfMFormer
from streamlift.virtual_camera import from_virtual, to_virtual
from streamlift.windows import default_batch, window_indices


@torch.no_grad()
def lift_sequence(model, kp2d: np.ndarray, batch: int | None = None, device="cpu",
                  frames=None, K=None) -> np.ndarray:
    """Lift frames of one sequence: kp2d (N, J, 2|3) px -> (F, J, 3) normalised 3D, for every
    frame (F = N) or only the given `frames` indices.

    A windowed lifter lifts each frame as the target frame of its own window (the model's window
    length and mode); a streaming one runs the sequence through its state from the first frame
    (chunk forward: the same estimates as serving's steps).
    With the camera's intrinsics K (3, 3), every frame is lifted through a virtual camera that
    looks at the root (`streamlift.virtual_camera`) and the poses come back in the real camera
    frame.
    """
    kp2d = np.asarray(kp2d, dtype=np.float32)
    R = None
    if K is not None:
        kp2d, R = to_virtual(kp2d, K)
    xy = torch.from_numpy(kp2d[..., :2]).to(device)
    conf = (torch.from_numpy(kp2d[..., 2]) if kp2d.shape[-1] == 3
            else torch.ones(kp2d.shape[:2])).to(device)
    if isinstance(model, StreamingNRSfMFormer):
        # the stream from its first frame, as a server's state sees it (to the last one asked
        # and the lookahead's frames after it)
        last = len(kp2d) if frames is None else min(
            len(kp2d), int(np.max(frames, initial=-1)) + 1 + model.cfg.lookahead)
        X = model.lift_chunks(xy[None, :last], conf[None, :last])[0].float().cpu().numpy()
        X = X if frames is None else X[np.asarray(frames, dtype=np.int64)]  # (F, J, 3)
    else:
        idx = torch.from_numpy(window_indices(len(kp2d), model.cfg.window, model.cfg.mode,
                                              frames)).to(device)
        out = []
        for w in idx.split(batch or default_batch(device)):  # w: (b, T)
            out.append(model.lift(xy[w], conf[w]).float().cpu())  # xy[w]: (b, T, J, 2)
        X = torch.cat(out).numpy()  # (F, J, 3)
    if R is not None:
        X = from_virtual(X, R if frames is None else R[np.asarray(frames)])
    return X
