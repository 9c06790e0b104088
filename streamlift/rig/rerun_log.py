"""A live 3D view of the published skeletons in rerun (`pip install "streamlift[rerun]"`):
per stream, its joints as points and its bones as lines in its own colour, on the timeline
`capture` (each skeleton's capture timestamp), in the rig frame (Y up)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamlift.errors import UserError
from streamlift.rig.rotations import PARENTS, to_rig

BONES = [(p, j) for j, p in enumerate(PARENTS) if p >= 0]
_PALETTE = [(230, 85, 13), (49, 130, 189), (49, 163, 84), (117, 107, 177), (222, 45, 38),
            (140, 86, 75), (231, 41, 138), (99, 99, 99)]


class RerunLogger:
    """Log skeletons to a spawned rerun viewer and/or an .rrd file."""

    def __init__(self, spawn: bool = True, save: Path | None = None, app_id: str = "streamlift"):
        try:
            import rerun as rr
        except ImportError:
            raise UserError('rerun-sdk is not installed: pip install "streamlift[rerun]"') from None
        if save is not None and Path(save).suffix != ".rrd":
            raise UserError(f"a rerun recording must end in .rrd, got {Path(save).name}")
        self.rr, self.save = rr, save
        self.rec = rr.RecordingStream(app_id)
        if save is not None:
            Path(save).parent.mkdir(parents=True, exist_ok=True)
            self.rec.save(str(save))
        elif spawn:
            self.rec.spawn()
        self.rec.log("/", rr.ViewCoordinates.RIGHT_HAND_Y_UP, static=True)
        self.colours: dict[str, tuple] = {}
        self.frames = 0

    def add(self, skel) -> None:
        rr = self.rr
        colour = self.colours.setdefault(skel.stream, _PALETTE[len(self.colours) % len(_PALETTE)])
        j = to_rig(np.asarray(skel.joints, np.float64))  # metres, Y up
        self.rec.set_time("capture", timestamp=float(skel.t_capture))
        self.rec.log(f"streams/{skel.stream}/joints", rr.Points3D(j, colors=colour, radii=0.02))
        self.rec.log(f"streams/{skel.stream}/bones",
                     rr.LineStrips3D([j[[a, b]] for a, b in BONES], colors=colour))
        self.frames += 1

    def close(self) -> str:
        self.rec.flush()
        where = f"to {self.save}" if self.save is not None else "to the rerun viewer"
        return f"logged {self.frames} skeletons of {len(self.colours)} streams {where}"
