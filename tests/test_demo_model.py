"""The committed demo model (made by `python benchmarks/train_synth.py --save-demo`) loads, carries
what streaming needs, and still recognises freshly generated SynthActions videos."""

from __future__ import annotations

from pathlib import Path

import torch

from glanet.checkpoint import load_checkpoint
from glanet.data.sampling import Sampling
from glanet.data.synth_render import CLASSES, generate_video
from glanet.data.transforms import EvalTransform

DEMO = Path(__file__).parent.parent / "models" / "glanet_synthactions_demo.pt"


def test_demo_model_is_small_and_complete():
    assert DEMO.stat().st_size <= 20 * 1024 * 1024
    ck = load_checkpoint(DEMO)
    assert ck.class_names == CLASSES
    assert {"fps", "window", "stride"} <= set(ck.sampling) and {"resize", "crop", "mean", "std"} <= set(
        ck.preprocessing
    )
    assert ck.provenance["command"] == "python benchmarks/train_synth.py --save-demo"
    assert ck.metrics["heldout_fused_top1"] >= 0.9


def test_demo_model_recognises_new_videos():
    ck = load_checkpoint(DEMO)
    transform = EvalTransform.from_preprocessing(ck.preprocessing)
    sampling = Sampling.from_dict(ck.sampling)
    right = 0
    with torch.no_grad():
        for label in range(len(CLASSES)):
            video = generate_video(label, seed=424_242 + label, num_frames=24, size=128, fps=sampling.fps)
            clips = torch.stack([transform(video.frames[idx]) for idx in sampling.test(len(video.frames))])
            fused = ck.model(clips).fused.mean(dim=0)  # the video's clips averaged, as evaluation does
            assert torch.isfinite(fused).all() and abs(float(fused.sum()) - 1.0) < 1e-4
            right += int(fused.argmax()) == label
    # A regression guard well under the fused top-1 measured on 360 held-out videos (docs/benchmarks.md).
    assert right >= 9, f"{right}/12 new videos recognised"


SMNET_DEMO = Path(__file__).parent.parent / "models" / "smnet_synthactions_demo.pt"


def test_smnet_demo_model_is_small_causal_and_complete():
    assert SMNET_DEMO.stat().st_size <= 20 * 1024 * 1024
    ck = load_checkpoint(SMNET_DEMO)
    assert ck.cfg.arch == "smnet" and ck.cfg.causal and ck.class_names == CLASSES
    assert ck.sampling["mode"] == "clips" and ck.cfg.window == ck.sampling["window"]
    assert ck.provenance["command"].startswith("python benchmarks/train_synth.py")
    assert ck.metrics["heldout_fused_top1"] >= 0.8


def test_smnet_demo_model_streams_as_its_clip_run_and_recognises_new_videos():
    ck = load_checkpoint(SMNET_DEMO)
    model = ck.model
    transform = EvalTransform.from_preprocessing(ck.preprocessing)
    fps = float(ck.sampling["fps"])
    right = 0
    with torch.no_grad():
        for label in range(len(CLASSES)):
            video = generate_video(
                label, seed=434_343 + label, num_frames=model.cfg.window, size=128, fps=fps
            )
            clip = transform(video.frames)[None]  # (1, W, 3, S, S): the frames a camera would deliver
            state = model.init_state(1)
            for t in range(clip.shape[1]):
                out, state = model.step(clip[:, t], state)
            torch.testing.assert_close(out.fused, model(clip).fused, atol=1e-5, rtol=0)
            right += int(out.fused.argmax()) == label
    # a guard well under the held-out figure (docs/benchmarks.md)
    assert right >= 8, f"{right}/12 new videos recognised"
