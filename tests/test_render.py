"""`streamlift render` and `streamlift watch --render/--show`: images of the right size with the
left/right bone colours in every panel, clips with the right frame count, clear errors."""

import dataclasses
import sys
import threading
import time

import cv2
import numpy as np
import pytest
import torch

from streamlift.cli import build_parser, main
from streamlift.data import load_mocap, load_views, make_views, save_views
from streamlift.data.views import View
from streamlift.serve.server import Server, ServerConfig
from streamlift.errors import UserError
from streamlift.lifter.model import load_lifter
from streamlift.paths import SAMPLE_MOCAP
from streamlift.viz import draw as R
from streamlift.viz.live import LiveRender

from test_engine_cli import weights  # noqa: F401  (the tiny-lifter fixture)


def run(argv):
    args = build_parser().parse_args(argv)
    return args.func(args)


def colour_pixels(img: np.ndarray, bgr) -> int:
    return int((img == np.array(bgr, np.uint8)).all(axis=-1).sum())


def panels(img: np.ndarray) -> list[np.ndarray]:
    S = img.shape[0]
    return [img[:, i * S:(i + 1) * S] for i in range(img.shape[1] // S)]


@pytest.fixture(scope="module")
def tiny_views(tmp_path_factory):
    """Two short views made with the repo's own pipeline (one clip of the shipped sample, 40
    frames, 2 cameras), plus one with 2D only: confidences, a dropped joint, no image size."""
    mocap = load_mocap(SAMPLE_MOCAP)
    mocap.sequences = {"salsa_01": mocap.sequences["salsa_01"][:40]}
    views = make_views(mocap, 2, 0, progress=False)
    kp = views["salsa_01.cam0"].kp2d
    conf = np.ones(kp.shape[:2] + (1,), np.float32)
    conf[:, 13] = 0.3  # l_wrist: low confidence
    conf[:, 16] = 0.0  # r_wrist: not detected
    views["bare"] = View(np.concatenate([kp, conf], -1))  # no kp3d, fps, image size, camera
    path = tmp_path_factory.mktemp("render") / "tiny.npz"
    save_views(path, views)
    return path


def test_png_of_the_shipped_sample(tmp_path, capsys):
    out = tmp_path / "sample.png"
    assert main(["render", "--out", str(out), "--size", "240"]) == 0
    line = capsys.readouterr().out
    assert "frame 300 of salsa_01.cam0 from the shipped sample" in line
    assert "N-MPJPE" in line and "PA-MPJPE" in line
    img = cv2.imread(str(out))
    assert img.shape == (240, 720, 3)
    p2d, cam, side = panels(img)
    for p in (p2d, cam, side):  # the subject's left and right in every panel, same colours
        assert colour_pixels(p, R.LEFT) > 20 and colour_pixels(p, R.RIGHT) > 20
    for p in (cam, side):  # ground truth drawn in the 3D panels (not in the 2D one)
        assert colour_pixels(p, R.GT) > 20
    assert colour_pixels(p2d, R.GT) == 0
    assert colour_pixels(side, R.GRID) > 10  # the ground grid


def test_mp4_frame_count_and_size(tiny_views, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    assert main(["render", "--views", str(tiny_views), "--view", "salsa_01.cam1", "--out",
                 str(out), "--frame", "5", "--frames", "12", "--size", "160",
                 "--second-view", "top"]) == 0
    assert "frames 5-16 of salsa_01.cam1" in capsys.readouterr().out
    cap = cv2.VideoCapture(str(out))
    try:
        assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (480, 160)
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(50.0)
        n = 0
        while cap.read()[0]:
            n += 1
    finally:
        cap.release()
    assert n == 12
    # a clip runs to the end of the view without --frames
    assert main(["render", "--views", str(tiny_views), "--view", "salsa_01.cam0", "--out",
                 str(out), "--frame", "30", "--size", "96", "--quiet", "--fps", "10"]) == 0
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 10 and cap.get(cv2.CAP_PROP_FPS) == 10
    cap.release()


def test_view_without_ground_truth_or_camera(tiny_views, tmp_path, capsys):
    out = tmp_path / "bare.png"
    assert main(["render", "--views", str(tiny_views), "--view", "bare", "--out", str(out),
                 "--size", "200", "--weights", str(tiny_views.parent / "none.pt")]) == 2
    assert "lifter checkpoint not found" in capsys.readouterr().err
    assert main(["render", "--views", str(tiny_views), "--view", "bare", "--out", str(out),
                 "--size", "200"]) == 0
    assert "N-MPJPE" not in capsys.readouterr().out  # nothing to compare with
    img = cv2.imread(str(out))
    assert img.shape == (200, 600, 3)
    assert colour_pixels(img, R.GT) == 0
    for p in panels(img):
        assert colour_pixels(p, R.LEFT) > 10 and colour_pixels(p, R.RIGHT) > 10


def test_bad_inputs_are_clear_errors(tiny_views, tmp_path):
    png = str(tmp_path / "x.png")
    with pytest.raises(UserError, match=r"no view 'nope'; available: salsa_01\.cam0, "
                                        r"salsa_01\.cam1, bare"):
        run(["render", "--views", str(tiny_views), "--view", "nope", "--out", png])
    with pytest.raises(UserError, match=r"the shipped sample has no view 'x'; available: "
                                        r"indian_15\.cam0, .*\(20 views\)"):
        run(["render", "--view", "x", "--out", png])
    for k in ("40", "-1"):
        with pytest.raises(UserError, match=rf"--frame {k} is out of range: salsa_01\.cam0 has "
                                            r"40 frames \(0-39\)"):
            run(["render", "--views", str(tiny_views), "--frame", k, "--out", png])
    with pytest.raises(UserError, match=r"--out must end in \.png or \.mp4, got 'x\.gif'"):
        run(["render", "--out", str(tmp_path / "x.gif")])
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write"):
        run(["render", "--out", str(blocker / "x.png")])
    with pytest.raises(UserError, match="--frames is for .mp4"):
        run(["render", "--out", png, "--frames", "3"])
    with pytest.raises(UserError, match="views file not found"):
        run(["render", "--views", str(tmp_path / "none.npz"), "--out", png])
    with pytest.raises(UserError, match=r"--render must end in \.mp4"):
        run(["watch", "--render", str(tmp_path / "live.avi"), "--count", "1"])


def test_watch_render_records_a_live_stream(weights, tiny_views, tmp_path, capsys):  # noqa: F811
    model, _ = load_lifter(weights, torch.device("cpu"))
    cfg = ServerConfig(input="tcp://127.0.0.1:*", output="tcp://127.0.0.1:*", threads=1,
                       max_latency_ms=0.0)  # every frame lifted, however loaded the machine
    clip = tmp_path / "live.mp4"
    with Server(model, cfg, "cpu", log=lambda line: None) as server:
        rc = {}

        def send():
            time.sleep(0.5)  # the watcher's subscription first
            rc["send"] = run(["send", "--to", server.input_endpoint, "--views", str(tiny_views),
                              "--view", "salsa_01.cam0", "--view", "salsa_01.cam1",
                              "--frames", "20", "--fps", "100", "--quiet"])

        t = threading.Thread(target=send)
        t.start()
        assert run(["watch", "--from", server.output_endpoint, "--stream", "salsa_01.cam1",
                    "--render", str(clip), "--render-size", "128", "--count", "20",
                    "--duration", "20", "--quiet"]) == 0
        t.join(20)
    assert rc["send"] == 0
    err = capsys.readouterr().err
    assert "rendered 20 frames of stream 'salsa_01.cam1'" in err and "100 fps" in err
    cap = cv2.VideoCapture(str(clip))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (256, 128)
    n, frame = 0, None
    while True:
        ok, f = cap.read()
        if not ok:
            break
        n, frame = n + 1, f
    cap.release()
    assert n == 20
    # mp4 is lossy: look for the bone colours approximately
    for c in (R.LEFT, R.RIGHT):
        near = (np.abs(frame.astype(int) - np.array(c)) < 40).all(-1).sum()
        assert near > 20


def test_live_render_follows_the_first_stream_heard(tmp_path):
    from streamlift.serve.messages import Skeleton

    live = LiveRender(tmp_path / "x.mp4", size=96)
    j = np.random.default_rng(0).normal(0, 0.3, (17, 3)).astype(np.float32)
    for k in range(5):
        for s in ("a", "b"):
            live.add(Skeleton(stream=s, seq=k, out_seq=k, t_capture=100 + k / 25,
                              t_receive=100.005 + k / 25, t_publish=100.01 + k / 25, joints=j,
                              mode="causal", window=27, height_m=1.7, virtual_camera=False))
    assert "rendered 5 frames of stream 'a'" in live.close() and live.fps == 25


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY is a Linux matter")
def test_show_without_a_display_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(UserError, match="--show: a window needs a display and there is none"):
        run(["watch", "--show", "--count", "1"])


def test_show_with_headless_opencv_is_a_clear_error(monkeypatch):
    gui = cv2.getBuildInformation().split("GUI:", 1)[-1].split("\n", 1)[0].strip()
    if gui != "NONE":
        pytest.skip(f"this OpenCV has a GUI ({gui}); opening a window is not tested")
    monkeypatch.setenv("DISPLAY", ":0")
    with pytest.raises(UserError, match="--show: a window needs OpenCV with GUI support"):
        run(["watch", "--show", "--count", "1"])


def test_intrinsics_are_checked_and_can_be_left_out(tiny_views, tmp_path, capsys):
    views = load_views(tiny_views)
    v = views["salsa_01.cam0"]
    bad = tmp_path / "bad_k.npz"
    save_views(bad, {"cam0": dataclasses.replace(v, intrinsics=np.ones((3, 3), np.float32))})
    png = str(tmp_path / "x.png")
    with pytest.raises(UserError, match=r"cam0's intrinsics must be a pinhole matrix.*"
                                        r"--no-intrinsics renders without them"):
        run(["render", "--views", str(bad), "--out", png])
    import re

    from streamlift.metrics import n_mpjpe, pa_mpjpe
    from streamlift.lifter.infer import lift_sequence

    errors = []
    for extra in ([], ["--no-intrinsics"]):  # a subject 165 px right of centre, with/without K
        assert main(["render", "--out", png, "--size", "96"] + extra) == 0
        line = capsys.readouterr().out
        errors.append([float(x) for x in re.findall(r"N-MPJPE ([\d.]+) mm, PA-MPJPE ([\d.]+) mm",
                                                    line)[0]])
    # the printed errors are frame 300's as eval computes them, lifted with and without K
    from streamlift.data.sample import sample_views
    sample = sample_views()["salsa_01.cam0"]
    model, _ = load_lifter(None, torch.device("cpu"))
    gt = sample.kp3d[[300]]
    for (n, pa), K in zip(errors, (sample.intrinsics, None)):
        pred = lift_sequence(model, sample.kp2d, frames=[300], K=K)
        assert n == pytest.approx(float(n_mpjpe(pred, gt)), abs=0.051)
        assert pa == pytest.approx(float(pa_mpjpe(pred, gt)), abs=0.051)
    # and the virtual camera helps this off-axis subject: today N-MPJPE 45.3 mm with K, 51.7
    # without; PA-MPJPE, blind to the rotation it corrects, 29.2 and 28.8
    assert errors[0][0] < errors[1][0] - 3.0
    assert abs(errors[0][1] - errors[1][1]) < 1.5
    assert run(["render", "--views", str(bad), "--out", png, "--no-intrinsics"]) == 0
