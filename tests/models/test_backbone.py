"""The ResNet trunk against torchvision's, and ImageNet weights from a local file only."""

from __future__ import annotations

import pytest
import torch
import torchvision

from glanet.models.backbone import ResNetTrunk, load_imagenet_weights, resolve_imagenet_weights


def truncated(net: torchvision.models.ResNet) -> torch.nn.Sequential:
    return torch.nn.Sequential(*list(net.children())[:-2])  # drop avgpool and fc


@pytest.mark.parametrize(("name", "channels"), [("resnet34", 512), ("resnet18", 512), ("resnet50", 2048)])
def test_trunk_equals_torchvision_truncated(name, channels):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None).eval()
    with torch.no_grad():  # non-trivial BN statistics so eval mode is really exercised
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    trunk = ResNetTrunk(name).eval()
    trunk.load_state_dict({k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours, theirs = trunk(x), truncated(reference)(x)
    assert ours.shape == (2, channels, 7, 7) == theirs.shape
    assert torch.equal(ours, theirs)


def test_112px_gives_4x4_maps():
    assert ResNetTrunk("resnet18")(torch.randn(1, 3, 112, 112)).shape == (1, 512, 4, 4)


def test_loads_imagenet_weights_from_a_file(tmp_path):
    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(source.state_dict(), path)
    trunk = ResNetTrunk("resnet18")
    assert load_imagenet_weights(trunk, path) == path
    assert torch.equal(trunk.layer4[1].conv2.weight, source.layer4[1].conv2.weight)


def test_finds_weights_in_the_torchvision_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    source = torchvision.models.resnet18(weights=None)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(source.state_dict(), cache / "resnet18-f37072fd.pth")
    trunk = ResNetTrunk("resnet18")
    assert load_imagenet_weights(trunk).name == "resnet18-f37072fd.pth"
    assert torch.equal(trunk.conv1.weight, source.conv1.weight)


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"--imagenet-weights PATH.*resnet34-b627a593\.pth"):
        resolve_imagenet_weights("resnet34", None)
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        resolve_imagenet_weights("resnet34", tmp_path / "nope.pth")


def test_weights_of_another_resnet_are_refused(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit a resnet18 trunk"):
        load_imagenet_weights(ResNetTrunk("resnet18"), path)


def test_a_corrupt_weights_file_is_refused(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable torchvision weights file"):
        load_imagenet_weights(ResNetTrunk("resnet18"), path)


def test_resnet10_is_torchvisions_resnet_with_one_block_per_stage():
    trunk = ResNetTrunk("resnet10")
    assert [len(getattr(trunk, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    assert trunk(torch.randn(1, 3, 112, 112)).shape == (1, 512, 4, 4)
    with pytest.raises(FileNotFoundError, match="no ImageNet weights for resnet10"):
        resolve_imagenet_weights("resnet10", None)
