"""Tests of geninf.bench.models and geninf.bench.training."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from geninf.bench import (
    TrainResult,
    build_model,
    evaluate,
    load_dataset,
    num_parameters,
    train_cached,
    train_model,
)
from geninf.errors import DataError, InputError

SHAPES = [(1, 28, 28), (1, 8, 8), (3, 32, 32)]
CONV_MODELS = ["small_cnn", "tinynet", "vgg11", "resnet18"]


def _state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------------------------
# models


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", CONV_MODELS + ["mlp"])
def test_forward_shape(name, shape):
    width = 0.25 if name in ("vgg11", "resnet18") else 1.0
    model = build_model(name, input_shape=shape, num_classes=7, width=width, seed=0).eval()
    out = model(torch.rand(3, *shape))
    assert out.shape == (3, 7) and torch.isfinite(out).all()
    assert isinstance(model.classifier, nn.Linear) and model.classifier.out_features == 7


def test_mlp_on_flat_input_and_default_size():
    model = build_model("mlp", input_shape=(64,), num_classes=10)
    assert num_parameters(model) == 17_226  # the 64-128-64-10 tanh network
    assert model(torch.rand(5, 64)).shape == (5, 10)
    small = build_model("mlp", input_shape=(64,), num_classes=10, hidden=(8,), activation="relu")
    assert num_parameters(small) == 64 * 8 + 8 + 8 * 10 + 10


def test_known_parameter_counts():
    assert (
        num_parameters(build_model("small_cnn", input_shape=(1, 28, 28), num_classes=10)) == 80_202
    )
    # TinyNet on 28x28: four stride-2 convs leave 256 maps of 2x2 -> Linear(1024, 10)
    tiny = build_model("tinynet", input_shape=(1, 28, 28), num_classes=10)
    assert tiny.classifier.in_features == 1024
    resnet = build_model("resnet18", input_shape=(3, 32, 32), num_classes=10, width=1.0)
    assert 11_100_000 <= num_parameters(resnet) <= 11_300_000


@pytest.mark.parametrize("name", CONV_MODELS + ["mlp"])
def test_seed_determinism_and_no_global_rng_side_effects(name):
    kwargs = {"input_shape": (3, 32, 32), "num_classes": 10, "width": 0.25}
    state = torch.get_rng_state()
    a = build_model(name, seed=5, **kwargs)
    b = build_model(name, seed=5, **kwargs)
    c = build_model(name, seed=6, **kwargs)
    assert torch.equal(torch.get_rng_state(), state)
    assert _state_equal(a, b)
    assert not _state_equal(a, c)


@pytest.mark.parametrize("name", CONV_MODELS + ["mlp"])
def test_width_scales_parameter_count(name):
    counts = [
        num_parameters(build_model(name, input_shape=(3, 32, 32), num_classes=10, width=w))
        for w in (0.25, 0.5)
    ]
    assert counts[0] < counts[1]
    if name in ("vgg11", "resnet18", "tinynet"):  # conv weights dominate: ~4x per doubling
        assert 3.0 < counts[1] / counts[0] < 4.5


def test_user_factory(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        textwrap.dedent("""
        import torch
        from torch import nn

        def make(input_shape, num_classes, width=1.0, depth=1):
            return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()),
                                                         int(4 * width) * depth + num_classes))

        def plain():
            return nn.Linear(3, 2)

        def not_a_model(input_shape, num_classes):
            return 42
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    model = build_model(
        "my_models:make", input_shape=(2, 3), num_classes=2, width=2.0, depth=2, seed=1
    )
    assert model[1].out_features == 18
    again = build_model(
        "my_models:make", input_shape=(2, 3), num_classes=2, width=2.0, depth=2, seed=1
    )
    assert _state_equal(model, again)
    assert isinstance(build_model("my_models:plain", input_shape=(3,), num_classes=2), nn.Linear)
    with pytest.raises(InputError, match="does not accept"):
        build_model("my_models:plain", input_shape=(3,), num_classes=2, width=2.0)
    with pytest.raises(InputError, match="not a torch.nn.Module"):
        build_model("my_models:not_a_model", input_shape=(3,), num_classes=2)
    with pytest.raises(InputError, match="has no attribute"):
        build_model("my_models:missing", input_shape=(3,), num_classes=2)
    with pytest.raises(InputError, match="cannot import module"):
        build_model("no_such_module_xyz:make", input_shape=(3,), num_classes=2)


def test_bad_model_arguments():
    with pytest.raises(InputError, match="unknown model"):
        build_model("alexnet", input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(InputError, match=r"input_shape \(C, H, W\)"):
        build_model("small_cnn", input_shape=(64,), num_classes=10)
    with pytest.raises(InputError, match="width"):
        build_model("mlp", input_shape=(64,), num_classes=10, width=0)
    with pytest.raises(InputError, match="cannot build"):
        build_model("tinynet", input_shape=(1, 8, 8), num_classes=10, hidden=(3,))


# --------------------------------------------------------------------------------------------
# training


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0, flatten=True)


def _train_mlp(digits, seed: int = 0) -> TrainResult:
    model = build_model("mlp", input_shape=digits.input_shape, num_classes=10, seed=seed)
    return train_model(model, digits, epochs=10, batch_size=64, seed=seed, progress=False)


def test_train_mlp_on_digits_accurate_and_bit_identical(digits):
    state = torch.get_rng_state()
    first = _train_mlp(digits)
    assert torch.equal(torch.get_rng_state(), state)
    assert not first.model.training
    assert evaluate(first.model, *digits.test)["acc"] > 90.0
    assert first.wall_time < 10.0
    assert [h["epoch"] for h in first.history] == list(range(1, 11))
    assert first.history[-1]["train_loss"] < first.history[0]["train_loss"]
    assert "val_acc" in first.history[-1]
    second = _train_mlp(digits)
    assert _state_equal(first.model, second.model)
    assert not _state_equal(first.model, _train_mlp(digits, seed=1).model)


def test_train_on_tensor_tuple_with_batchnorm_and_single_leftover():
    x, y = torch.rand(65, 1, 8, 8), torch.arange(65) % 3  # 65 = 64 + a batch of one (skipped)
    model = build_model("vgg11", input_shape=(1, 8, 8), num_classes=3, width=0.125)
    result = train_model(model, (x, y), epochs=1, batch_size=64, progress=False)
    assert len(result.history) == 1 and "val_acc" not in result.history[0]
    with pytest.raises(DataError):
        train_model(model, (x, y.float()), epochs=1, progress=False)


def test_evaluate_matches_hand_computation():
    model = nn.Linear(3, 2)
    x, y = (
        torch.randn(7, 3, generator=torch.Generator().manual_seed(0)),
        torch.tensor([0, 1, 1, 0, 1, 0, 0]),
    )
    model.train()
    out = evaluate(model, x, y, batch_size=3)
    logits = model(x).detach()
    torch.testing.assert_close(out["loss"], F.cross_entropy(logits, y).item())
    assert out["acc"] == pytest.approx(100.0 * float((logits.argmax(1) == y).float().mean()))
    assert model.training  # mode restored


def test_train_cached_trains_once_and_loads(tmp_path, digits):
    calls = []
    config = {"data": "digits", "model": "mlp", "seed": 0, "epochs": 2}

    def builder():
        return build_model("mlp", input_shape=digits.input_shape, num_classes=10, seed=0)

    def trainer(model):
        calls.append(1)
        return train_model(model, digits, epochs=2, progress=False)

    first = train_cached(tmp_path, config, builder, trainer)
    second = train_cached(tmp_path, dict(reversed(list(config.items()))), builder, trainer)
    assert len(calls) == 1 and not first.loaded and second.loaded
    assert _state_equal(first.model, second.model) and not second.model.training
    assert first.path == second.path and first.path.suffix == ".safetensors"
    record = json.loads(first.path.with_suffix(".json").read_text())
    assert record["config"] == config and "torch" in record["versions"]
    assert len(record["history"]) == 2
    other = train_cached(tmp_path, {**config, "seed": 1}, builder, trainer)
    assert len(calls) == 2 and other.path != first.path
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_train_cached_refuses_mismatch_and_corruption(tmp_path):
    def builder():
        return build_model("mlp", input_shape=(4,), num_classes=2, hidden=(3,), seed=0)

    def trainer(model):
        return None  # "trained" in place

    train_cached(tmp_path, {"a": 1}, builder, trainer, name="net")
    with pytest.raises(InputError, match="different config|was written for config"):
        train_cached(tmp_path, {"a": 2}, builder, trainer, name="net")
    weights = tmp_path / "net.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(DataError, match="checksum"):
        train_cached(tmp_path, {"a": 1}, builder, trainer, name="net")
    (tmp_path / "net.json").unlink()
    with pytest.raises(DataError, match="without its record"):
        train_cached(tmp_path, {"a": 1}, builder, trainer, name="net")
    with pytest.raises(InputError, match="JSON-serializable"):
        train_cached(tmp_path, {"a": object()}, builder, trainer)
