"""The lifter as ONNX, run by onnxruntime on the CPU.

The exported graph is the per-window forward: kp (B, T, J, 2) pixels and conf (B, T, J) in
[0, 1] -> the target frame's pose (B, J, 3) in the model's units (what `NRSfMFormer.lift`
returns; metric scaling stays outside, so one file serves any --height-m). B is dynamic. The
lifter's config travels in the file's metadata, so an .onnx file is a complete lifter for
`OnnxLifter` (serving, evaluation, demo: `--backend onnxruntime`). onnxruntime is an optional
extra: `pip install "streamlift[onnx]"`.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from streamlift.errors import UserError
from streamlift.lifter.model import LifterConfig, NRSfMFormer, metric_scale
from streamlift.windows import target_index

META_KEY = "streamlift.lifter_config"
CHECK_HEIGHT_MM = 1700.0  # export errors are reported on skeletons this tall
MAX_ERROR_MM = 0.01  # an export that differs more from torch on real windows is refused


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise UserError('onnxruntime is not installed: pip install "streamlift[onnx]"') from None
    return onnxruntime


class _Lift(torch.nn.Module):
    def __init__(self, model: NRSfMFormer):
        super().__init__()
        self.model = model

    def forward(self, kp: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
        return self.model(kp, conf).X[:, self.model.target_index]  # (B, J, 3)


def export_onnx(model: NRSfMFormer, path: Path, opset: int = 17) -> Path:
    """Write the lifter's per-window forward to `path` (.onnx), its config in the metadata."""
    if not isinstance(model, NRSfMFormer):
        raise UserError("ONNX export takes a windowed lifter (a streaming lifter's per-stream "
                        "state is not exported); pass a windowed --weights, e.g. the default")
    import onnx

    path = Path(path)
    if path.suffix != ".onnx":
        raise UserError(f"an ONNX file must end in .onnx, got {path.name}")
    model = model.float().eval().cpu()
    T, J = model.cfg.window, model.cfg.num_joints
    kp = torch.rand(2, T, J, 2) * 600 + 200  # (B, T, J, 2): a tracing example
    conf = torch.rand(2, T, J)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the tracer's notes on shape checks it freezes
        warnings.simplefilter("ignore")
        # the TorchScript exporter: the dynamo one needs onnxscript, a heavier extra
        torch.onnx.export(_Lift(model), (kp, conf), str(path), input_names=["kp", "conf"],
                          output_names=["pose"], opset_version=opset, dynamo=False,
                          dynamic_axes={"kp": {0: "batch"}, "conf": {0: "batch"},
                                        "pose": {0: "batch"}})
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(model.cfg.to_dict())
    onnx.save(proto, str(path))
    return path


class OnnxLifter:
    """An .onnx lifter where only `lift` is needed (serve, eval, demo): same `cfg`, same
    `lift(kp2d, conf)` on torch tensors, computed by onnxruntime on the CPU."""

    def __init__(self, path: Path, threads: int | None = None):
        ort = _onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"no ONNX lifter at {self.path}")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise UserError(f"{self.path} is not a loadable ONNX model: {e}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in meta:
            raise UserError(f"{self.path} is not a streamlift lifter (no {META_KEY} metadata; "
                            f"make it with `streamlift export --onnx`)")
        self.cfg = LifterConfig(**json.loads(meta[META_KEY]))

    @property
    def target_index(self) -> int:
        return target_index(self.cfg.window, self.cfg.mode)

    def eval(self) -> "OnnxLifter":
        return self

    def to(self, device) -> "OnnxLifter":
        if torch.device(device).type != "cpu":
            raise UserError("the onnxruntime backend runs on the CPU (use --device cpu)")
        return self

    def lift(self, kp2d: torch.Tensor, conf: torch.Tensor | None = None) -> torch.Tensor:
        """Windows (B, T, J, 2) -> the 3D pose (B, J, 3) of each window's target frame."""
        kp = kp2d.detach().float().cpu().numpy()
        c = (torch.ones(kp.shape[:3]) if conf is None else conf).detach().float().cpu().numpy()
        return torch.from_numpy(self.session.run(None, {"kp": kp, "conf": c})[0])


def export_error_mm(model: NRSfMFormer, onnx_model: OnnxLifter, kp: np.ndarray,
                    conf: np.ndarray) -> float:
    """Largest joint difference (mm, skeletons CHECK_HEIGHT_MM tall) between torch and
    onnxruntime on windows kp (B, T, J, 2), conf (B, T, J)."""
    x, c = torch.from_numpy(kp), torch.from_numpy(conf)
    a = metric_scale(model.float().cpu().lift(x, c), CHECK_HEIGHT_MM)
    b = metric_scale(onnx_model.lift(x, c), CHECK_HEIGHT_MM)
    return float((a - b).abs().max())


def sample_windows(model_cfg: LifterConfig, n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """n real windows of the shipped sample (every clip, spread over its frames)."""
    from streamlift.data.sample import sample_streams
    from streamlift.windows import window_indices

    seqs = sample_streams(5)[0]
    kp, conf = [], []
    for s in seqs.values():
        frames = np.linspace(0, len(s) - 1, n // len(seqs) + 1).astype(int)
        idx = window_indices(len(s), model_cfg.window, model_cfg.mode, frames)  # (F, T)
        kp.append(s[idx][..., :2])
        conf.append(s[idx][..., 2] if s.shape[-1] == 3 else np.ones(idx.shape + (s.shape[1],)))
    return (np.concatenate(kp)[:n].astype(np.float32),
            np.concatenate(conf)[:n].astype(np.float32))


def export_checked(model: NRSfMFormer, path: Path) -> tuple[OnnxLifter, float]:
    """Export, load back with onnxruntime, and compare with torch on real sample windows;
    UserError (and no file left behind) when they differ by more than MAX_ERROR_MM."""
    export_onnx(model, path)
    lifted = OnnxLifter(path)
    err = export_error_mm(model, lifted, *sample_windows(model.cfg))
    if not err <= MAX_ERROR_MM:
        Path(path).unlink()
        raise UserError(f"the ONNX export differs from torch by {err:.4f} mm on the sample "
                        f"windows (limit {MAX_ERROR_MM} mm); nothing was written")
    return lifted, err


def onnx_lifter(model_or_path, threads: int | None = None) -> OnnxLifter:
    """An OnnxLifter from an .onnx file, or from a torch lifter exported (and checked) to a
    temporary file."""
    if isinstance(model_or_path, (str, Path)):
        return OnnxLifter(model_or_path, threads)
    with tempfile.TemporaryDirectory(prefix="streamlift-onnx-") as tmp:  # the session keeps
        export_checked(model_or_path, Path(tmp) / "lifter.onnx")  # the model in memory
        return OnnxLifter(Path(tmp) / "lifter.onnx", threads)
