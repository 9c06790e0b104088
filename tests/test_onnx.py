"""The lifter as ONNX: the export checks itself against torch, an .onnx file is a whole lifter
(config in its metadata), and serving, evaluation and offline lifting through onnxruntime
give what torch gives."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason='the onnx extra is not installed (pip install '
                                          '"streamlift[onnx]")')

from streamlift.cli import main  # noqa: E402
from streamlift.errors import UserError  # noqa: E402
from streamlift.lifter import onnx as O  # noqa: E402
from streamlift.lifter.infer import lift_sequence  # noqa: E402
from streamlift.lifter.model import LifterConfig, NRSfMFormer, load_lifter  # noqa: E402


def tiny(seed=0, mode="causal"):
    torch.manual_seed(seed)
    return NRSfMFormer(LifterConfig(dim=32, depth=1, heads=2, window=9, mode=mode)).eval()


@pytest.fixture(scope="module")
def shipped_onnx(tmp_path_factory):
    model, _ = load_lifter("windowed", torch.device("cpu"))
    path = tmp_path_factory.mktemp("onnx") / "lifter.onnx"
    lifted, err = O.export_checked(model, path)
    return model, path, err


def test_the_shipped_lifter_exports_within_a_hundredth_of_a_millimetre(shipped_onnx):
    model, path, err = shipped_onnx
    assert err < O.MAX_ERROR_MM
    back = O.OnnxLifter(path)
    assert back.cfg == model.cfg and back.target_index == model.target_index == 26
    # confidences off the sample's all-ones path too: missing joints, partial confidence
    g = np.random.default_rng(0)
    kp = g.uniform(200, 800, (33, 27, 17, 2)).astype(np.float32)
    conf = np.where(g.random((33, 27, 17)) < 0.15, 0, g.uniform(0.2, 1, (33, 27, 17)))
    assert O.export_error_mm(model, back, kp, conf.astype(np.float32)) < O.MAX_ERROR_MM


def test_the_check_catches_an_export_that_is_not_the_model(tmp_path, monkeypatch):
    """A file of other weights (here: another seed) differs by far more than the limit: the
    export is refused and nothing is left behind."""
    model, other = tiny(0), tiny(1)
    assert O.export_error_mm(model, O.OnnxLifter(O.export_onnx(other, tmp_path / "o.onnx")),
                             *O.sample_windows(model.cfg, 64)) > 100 * O.MAX_ERROR_MM
    real = O.export_onnx
    monkeypatch.setattr(O, "export_onnx", lambda m, p, opset=17: real(other, p, opset))
    with pytest.raises(UserError, match="differs from torch"):
        O.export_checked(model, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_an_onnx_file_without_a_lifter_config_is_refused(tmp_path):
    import onnx

    path = O.export_onnx(tiny(), tmp_path / "t.onnx")
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(path))
    with pytest.raises(UserError, match="not a streamlift lifter"):
        O.OnnxLifter(path)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(UserError, match="not a loadable ONNX model"):
        O.OnnxLifter(tmp_path / "junk.onnx")
    with pytest.raises(UserError, match="must end in .onnx"):
        O.export_onnx(tiny(), tmp_path / "t.pt")


@pytest.mark.parametrize("mode", ["causal", "centred"])
def test_offline_lifting_through_onnxruntime_equals_torch(tmp_path, mode):
    from streamlift.data.sample import sample_streams

    model = tiny(2, mode)
    lifted = O.OnnxLifter(O.export_onnx(model, tmp_path / "m.onnx"))
    kp2d, _, _, K = sample_streams(1)
    (name, kp), = kp2d.items()
    a = lift_sequence(model, kp[:120], K=K[name])
    b = lift_sequence(lifted, kp[:120], K=K[name])
    assert a.shape == b.shape == (120, 17, 3)
    np.testing.assert_allclose(b, a, atol=2e-5)


def test_a_server_on_onnxruntime_publishes_what_torch_computes(tmp_path):
    from streamlift.serve.clients import Producer, Subscriber
    from streamlift.serve.server import Server, ServerConfig
    from test_engine_server import collect, handshake, motion, offline

    model = tiny(3)
    lifted = O.OnnxLifter(O.export_onnx(model, tmp_path / "s.onnx"))
    kp = motion(30, 4)
    cfg = ServerConfig(input="tcp://127.0.0.1:*", output="tcp://127.0.0.1:*", threads=1,
                       max_latency_ms=0.0, smooth="off")  # compared with lift_sequence
    with Server(lifted, cfg, "cpu", log=lambda line: None) as server:
        sub, p = Subscriber(server.output_endpoint), Producer(server.input_endpoint)
        handshake(p, sub)
        for t in range(30):
            p.frame("o", t, kp[t])
        p.end("o")
        got, _ = collect(sub, ["o"])
        np.testing.assert_allclose(np.stack([m.joints for m in got["o"]]), offline(model, kp),
                                   atol=5e-5)
        p.close()
        sub.close()


def test_cli_export_then_eval_on_either_backend(tmp_path, capsys):
    from streamlift.data.sample import sample_views
    from streamlift.data.views import save_views
    from streamlift.lifter.model import save_checkpoint

    ck, out = tmp_path / "tiny.pt", tmp_path / "tiny.onnx"
    save_checkpoint(ck, tiny(4))
    assert main(["export", "--onnx", str(out), "--weights", str(ck)]) == 0
    line = capsys.readouterr().out
    assert f"wrote {out}" in line and "mm (limit 0.01 mm)" in line
    assert 0 <= float(line.split("256 sample windows ")[1].split(" mm")[0]) < 0.01
    name, view = next(iter(sample_views().items()))
    views = tmp_path / "v.npz"
    save_views(views, {name: view})
    scores = {}
    for backend, weights in (("torch", ck), ("onnxruntime", out),
                             ("onnxruntime", ck)):  # a checkpoint exported on the fly
        js = tmp_path / f"{backend}{weights.suffix}.json"
        assert main(["eval", "--data", str(views), "--backend", backend, "--weights",
                     str(weights), "--json", str(js), "--quiet", "--device", "cpu"]) == 0
        scores[(backend, weights.suffix)] = json.loads(js.read_text())
    capsys.readouterr()
    base = scores[("torch", ".pt")]
    assert base["frames"] == view.frames
    for r in scores.values():
        for k in ("mpjpe", "n_mpjpe", "pa_mpjpe"):
            assert r[k] == pytest.approx(base[k], abs=1e-3), k
    assert main(["eval", "--data", str(views), "--weights", str(out), "--device", "cpu"]) == 2
    assert "run it with the onnxruntime backend" in capsys.readouterr().err
