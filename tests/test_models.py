"""The vision model zoo: shapes, parameter counts against hand-written PyTorch and Keras, digits accuracy,
the `sequential` layer syntax and its errors, transfer learning with `model=tv`, and `dlrun summary`."""
from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

import dlrun
from conftest import FASHION, ROOT, read_json, run_dlrun
from dlrun.errors import DlrunError
from dlrun.models.summary import count_params
from dlrun.registry import create_model

VISION = ["perceptron", "mlp", "lenet5", "cnn", "vgg", "resnet", "inception", "airbench", "sequential", "tv"]


def preset(name: str, input_shape, num_outputs: int = 10, **override) -> nn.Module:
    """Build a model exactly as `dlrun model=NAME` does: from conf/model/NAME.yaml."""
    kw = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / f"{name}.yaml"))
    kw.update(override)
    return create_model(kw.pop("name"), input_shape=input_shape, num_outputs=num_outputs, **kw)


def same_function(ours: nn.Module, hand: nn.Module, input_shape) -> None:
    """Same parameter shapes in the same order and, with the same weights, the same outputs."""
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in hand.parameters()]
    with torch.no_grad():
        for a, b in zip(ours.parameters(), hand.parameters()):
            b.copy_(a)
        x = torch.randn(3, *input_shape)
        torch.testing.assert_close(ours.eval()(x), hand.eval()(x))


# ---- every vision model adapts to channels, size and classes -------------------------------------------
@pytest.mark.parametrize("name", ["lenet5", "cnn", "cnn_seed2x", "cnn_seed3x", "vgg", "resnet", "inception",
                                  "airbench", "sequential", "sequential_seed_conv"])
@pytest.mark.parametrize("shape,classes", [((1, 8, 8), 10), ((1, 28, 28), 10), ((3, 32, 32), 100)])
def test_vision_models_adapt_to_the_dataset(name, shape, classes):
    model = preset(name, shape, classes)
    assert model(torch.zeros(2, *shape)).shape == (2, classes)


def test_tv_adapts_channels_and_classes_and_lists_torchvision():
    from dlrun.models.tv import classification_archs

    assert {"resnet18", "vgg11", "mobilenet_v3_small", "vit_b_16"} <= set(classification_archs())
    grey = create_model("tv", input_shape=(1, 28, 28), num_outputs=7, arch="resnet18")
    assert grey(torch.zeros(2, 1, 28, 28)).shape == (2, 7)
    assert grey.net.fc.out_features == 7 and grey.head_name == "fc"
    assert count_params(grey) == 11_176_512 + 512 * 7 + 7  # torchvision's resnet18 without its 1000-class fc
    colour = create_model("tv", input_shape=(5, 32, 32), num_outputs=3, arch="mobilenet_v3_small")
    assert isinstance(colour.adapter, nn.Conv2d) and colour.head_name == "classifier.3"
    assert colour(torch.zeros(2, 5, 32, 32)).shape == (2, 3)


# ---- parameter counts against hand-written PyTorch -----------------------------------------------------
def test_lenet5_is_the_1998_net():
    hand = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))
    ours = preset("lenet5", (1, 28, 28))
    assert count_params(ours) == count_params(hand) == 61_706  # LeNet-5's count on MNIST
    same_function(ours, hand, (1, 28, 28))
    assert count_params(preset("lenet5", (1, 32, 32))) == 61_706  # 32x32: no padding, same net


def test_default_cnn_is_lenet5_on_8x8_digits():
    same_function(preset("cnn", (1, 8, 8)), preset("lenet5", (1, 8, 8)), (1, 8, 8))


def test_cnn_presets_are_seed_004s_architectures():
    # INPUT -> [CONV -> RELU -> POOL]x2 -> FC -> RELU -> FC
    hand2 = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    same_function(preset("cnn_seed2x", (1, 28, 28)), hand2, (1, 28, 28))
    # INPUT -> [CONV -> RELU -> CONV -> RELU -> POOL]x3 -> [FC -> RELU]x2 -> FC
    layers, c = [], 1
    for ch in (32, 64, 128):
        layers += [nn.Conv2d(c, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c = ch
    hand3 = nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 3 * 3, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                          nn.Linear(128, 10))
    same_function(preset("cnn_seed3x", (1, 28, 28)), hand3, (1, 28, 28))


def test_cnn_options_stride_padding_norm_and_global_pool():
    model = create_model("cnn", input_shape=(3, 32, 32), num_outputs=10, channels=[16, 32], kernel=[5, 3],
                         stride=[2, 1], padding="valid", norm="batch", pool="avg", global_pool="avg", hidden=[],
                         dropout=0.1)
    # 32 -(5x5, stride 2)-> 14 -(pool)-> 7 -(3x3)-> 5 -(pool)-> 2 -(global avg)-> 1
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.padding) for c in convs] == [((5, 5), (2, 2), (0, 0)), ((3, 3), (1, 1), (0, 0))]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model) == 2 and sum(isinstance(m, nn.AvgPool2d) for m in model) == 2
    assert count_params(model) == (3 * 16 * 25 + 16) + 32 + (16 * 32 * 9 + 32) + 64 + (32 * 10 + 10)
    with pytest.raises(DlrunError, match="shrinks"):
        create_model("cnn", input_shape=(1, 8, 8), num_outputs=10, kernel=9, padding="valid")
    with pytest.raises(DlrunError, match="model.kernel has 3 entries"):
        create_model("cnn", input_shape=(1, 8, 8), num_outputs=10, kernel=[3, 3, 3])


def test_resnet_depths_and_projection_shortcuts():
    for depth in (20, 32):
        model = preset("resnet", (3, 32, 32), depth=depth)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        # depth counts the weighted layers: 6n+1 3x3 convs and the dense layer; 2 projections (16->32, 32->64)
        assert sum(c.kernel_size == (3, 3) for c in convs) + 1 == depth
        projections = [c for c in convs if c.kernel_size == (1, 1)]
        assert [(c.in_channels, c.out_channels, c.stride) for c in projections] == [(16, 32, (2, 2)), (32, 64, (2, 2))]
    def conv_bn(i, o, k=3):  # convs have no bias under batch norm; BN has a scale and a shift per channel
        return i * o * k * k + 2 * o

    def stage(i, w, n=3):  # the first block may change the shape (stride 2, projection), then n-1 identity blocks
        return conv_bn(i, w) + conv_bn(w, w) + (conv_bn(i, w, 1) if i != w else 0) + (n - 1) * 2 * conv_bn(w, w)

    hand = conv_bn(3, 16) + stage(16, 16) + stage(16, 32) + stage(32, 64) + 64 * 10 + 10
    assert count_params(preset("resnet", (3, 32, 32))) == hand == 272_474
    block = preset("resnet", (3, 32, 32)).stages[1][0]
    x = torch.randn(2, 16, 32, 32)
    block.eval()
    with torch.no_grad():  # the residual: out = relu(F(x) + projection(x))
        f = block.norm2(block.conv2(block.act1(block.norm1(block.conv1(x)))))
        torch.testing.assert_close(block(x), torch.relu(f + block.shortcut(x)))
    with pytest.raises(DlrunError, match="6n\\+2"):
        preset("resnet", (1, 8, 8), depth=21)


def test_inception_block_concatenates_four_branches():
    from dlrun.models.inception import InceptionBlock

    block = InceptionBlock(64, 16, 24, 32, 4, 8, 8, norm="none", activation="relu")
    assert block(torch.zeros(2, 64, 10, 10)).shape == (2, 16 + 32 + 8 + 8, 10, 10)
    kernels = sorted(m.kernel_size[0] for m in block.modules() if isinstance(m, nn.Conv2d))
    assert kernels == [1, 1, 1, 1, 3, 5]  # 1x1 branch, two 1x1 reductions, pool projection; 3x3 and 5x5
    assert count_params(block) == ((64 * 16 + 16) + (64 * 24 + 24) + (24 * 32 * 9 + 32) + (64 * 4 + 4)
                                   + (4 * 8 * 25 + 8) + (64 * 8 + 8))


def test_vgg_variants():
    vgg16 = preset("vgg", (3, 32, 32), blocks="vgg16", hidden=[512, 512])
    assert sum(isinstance(m, nn.Conv2d) for m in vgg16) == 13 and sum(isinstance(m, nn.MaxPool2d) for m in vgg16) == 5
    assert sum(isinstance(m, nn.Linear) for m in vgg16) == 3  # 13 + 3 = the 16 weight layers
    small = preset("vgg", (1, 28, 28), blocks=[[8], [16, 16]], norm="none", hidden=[], dropout=0.0)
    assert count_params(small) == (9 * 8 + 8) + (8 * 16 * 9 + 16) + (16 * 16 * 9 + 16) + (16 * 7 * 7 * 10 + 10)
    with pytest.raises(DlrunError, match="unknown VGG variant model.blocks='vgg6'.*Choose one of small, vgg11"):
        preset("vgg", (1, 28, 28), blocks="vgg6")


# ---- sequential: the seeds' Keras examples --------------------------------------------------------------
def seq(layers, input_shape, num_outputs):
    return create_model("sequential", input_shape=input_shape, num_outputs=num_outputs, layers=layers)


def test_seed_keras_conv_example_has_keras_parameter_count():
    # Seed 004: Conv2D(64, 3, relu, input_shape=(28,28,1)); Conv2D(32, 3, relu); Flatten(); Dense(10, softmax)
    ours = preset("sequential_seed_conv", (1, 28, 28))
    hand = nn.Sequential(nn.Conv2d(1, 64, 3), nn.ReLU(), nn.Conv2d(64, 32, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(32 * 24 * 24, 10))
    assert count_params(ours) == 203_434  # what Keras' model.summary() prints for it
    same_function(ours, hand, (1, 28, 28))


def test_seed_keras_dense_examples():
    # Seed 000: Dense(32, input_shape=(784,)), Activation('relu'), Dense(10), Activation('softmax')
    ours = seq(["linear:32", "relu", "linear:10", "softmax"], (784,), 10)
    assert count_params(ours) == 25_450 == count_params(preset("mlp", (784,), hidden=[32]))
    # Seed 003: Flatten(); Dense(10, input_shape=(784,), activation="softmax") on 28x28 images
    assert count_params(seq(["flatten", {"dense": {"out": 10}}], (28, 28), 10)) == 7_850 \
        == count_params(preset("perceptron", (28, 28)))
    # Seed 004: Dense(64, relu, input_shape=(22050,)); Dropout(dr); Dense(32, relu); Dropout(dr); Dense(2, softmax)
    ours = seq([{"dense": {"out": 64, "activation": "relu"}}, {"dropout": 0.9},
                {"dense": {"out": 32, "activation": "relu"}}, {"dropout": 0.9}, "dense"], (22050,), 2)
    hand = nn.Sequential(nn.Linear(22050, 64), nn.ReLU(), nn.Dropout(0.9), nn.Linear(64, 32), nn.ReLU(),
                         nn.Dropout(0.9), nn.Linear(32, 2))
    assert count_params(ours) == 1_413_410
    same_function(ours, hand, (22050,))


def test_seed_keras_layernorm_conv_example():
    # Seed 004, input (128,128,1): [Conv2D(32,3,relu), LayerNormalization(), Conv2D(32,3,relu), MaxPooling2D((2,2),
    # strides=(1,1))], the same with 64, Flatten(), Dense(64, relu), Dropout(.5), Dense(32, relu), Dropout(.5), Dense(2)
    layers = []
    for ch in (32, 64):
        layers += [{"conv2d": {"out": ch, "kernel": 3, "activation": "relu"}}, "layernormalization",
                   {"conv2d": {"out": ch, "kernel": 3, "activation": "relu"}}, {"maxpooling2d": {"kernel": [2, 2], "stride": [1, 1]}}]
    layers += ["flatten", "dense:64:true", "relu", "dropout:0.5", {"dense": {"out": 32, "activation": "relu"}}, "dropout:0.5",
               {"dense": {"out": 2}}]
    ours = seq(layers, (1, 128, 128), 2)
    # Keras' count: 320 + 64 + 9,248 + 18,496 + 128 + 36,928 + 118*118*64*64+64 + 2,080 + 66
    assert count_params(ours) == 57_100_098
    ln = ours[2]  # after conv2d and its relu. Keras normalises each pixel's 32 channels: 32 scales, 32 shifts
    assert count_params(ln) == 64
    x = torch.randn(2, 32, 5, 5)
    torch.testing.assert_close(ln(x), nn.functional.layer_norm(x.movedim(1, -1), (32,)).movedim(-1, 1))


def test_sequential_covers_every_layer_kind_and_infers_sizes():
    image = [  # (1, 8, 8)
        "conv2d:8:3:1:same", {"batchnorm": None}, "leaky_relu:0.2", "maxpool2d:2",          # (8, 4, 4)
        {"conv_transpose2d": {"out": 4, "kernel": 2, "stride": 2}}, "gelu",                  # (4, 8, 8)
        "upsample:2", "avgpool2d:2", "layernorm", {"dropout2d": 0.1},                       # (4, 8, 8)
        "global_avgpool", "reshape:2:2", "conv1d:6:1", "elu", "maxpool1d:2", "avgpool1d:1",  # (6, 1)
        "conv_transpose1d:3:2:2", "flatten", "dropout:0.2", "selu", "linear",                # (3, 2) -> 6 -> 10
    ]
    model = seq(image, (1, 8, 8), 10)
    assert model(torch.randn(4, 1, 8, 8)).shape == (4, 10)
    assert isinstance(model[4], nn.ConvTranspose2d) and model[4].in_channels == 8
    assert model[16].in_channels == 6 and model[20].in_features == 6  # sizes inferred, never written
    sequence = ["reshape:8:8", {"lstm": {"hidden": 16, "return_sequences": True}}, {"gru": {"hidden": 12}}, "linear"]
    rnn = seq(sequence, (64,), 10)
    assert rnn(torch.randn(3, 64)).shape == (3, 10)
    lstm, gru = nn.LSTM(8, 16), nn.GRU(16, 12)
    assert count_params(rnn) == count_params(lstm) + count_params(gru) + 12 * 10 + 10
    tokens = seq(["embedding:17:4", "permute:1:0", "conv1d:8:3", "relu", "global_maxpool", "linear"], (64,), 10)
    assert tokens(torch.randint(0, 17, (2, 64)).float()).shape == (2, 10)
    assert count_params(tokens) == 17 * 4 + (4 * 8 * 3 + 8) + 8 * 10 + 10


def test_sequential_errors_name_the_layer_and_the_shapes():
    with pytest.raises(DlrunError, match=r"model.layers\[2\] \(conv2d\) does not fit its input of shape \(16, 2, 2\)"):
        seq(["conv2d:16:5:1:same", "maxpool2d:4", "conv2d:8:3", "flatten", "linear"], (1, 8, 8), 10)
    with pytest.raises(DlrunError, match=r"model.layers\[1\]: unknown layer 'rleu'. Did you mean 'relu'"):
        seq(["flatten", "rleu", "linear"], (1, 8, 8), 10)
    with pytest.raises(DlrunError, match=r"last layer gives outputs of shape \(4, 8, 10\) but the dataset needs \(10,\)"):
        seq(["conv2d:4:3:1:same", "linear"], (1, 8, 8), 10)
    with pytest.raises(DlrunError, match=r"model.layers\[0\] \(lstm\).*\(steps, features\), got \(1, 8, 8\)"):
        seq(["lstm:8", "linear"], (1, 8, 8), 10)
    with pytest.raises(DlrunError, match=r"model.layers\[0\] \(linear\) needs its width"):
        seq(["linear", "relu", "linear"], (64,), 10)
    with pytest.raises(DlrunError, match=r"model.layers\[0\] \(conv2d\): bad arguments.*conv2d takes: out, kernel"):
        seq([{"conv2d": {"out": 4, "kernal": 3}}, "flatten", "linear"], (1, 8, 8), 10)


def test_sequential_from_the_command_line_syntax(tmp_path):
    """The list as one types it after `dlrun model=sequential`, through Hydra's parser, trains on digits."""
    result = dlrun.run(["logger=quiet", "model=sequential", "model.layers=[conv2d:32:3:1:same,relu,maxpool2d:2,"
                        "{conv2d:{out:64,kernel:3,padding:same,activation:relu}},maxpool2d:2,flatten,linear:128,relu,linear]",
                        "trainer.epochs=5", "trainer.batch_size=32"], run_dir=str(tmp_path / "seq"))
    assert result["summary"]["params"] == count_params(preset("cnn_seed2x", (1, 8, 8))) == 53_002
    assert result["summary"]["test_accuracy"] >= 0.95


# ---- every vision model learns digits (>= 0.95 test accuracy) -------------------------------------------
DIGITS = {  # model -> overrides: a few epochs each (the cnn builder trains in the sequential test's twin, cnn_seed2x)
    "perceptron": ["trainer.epochs=12", "optimizer.lr=0.02", "scheduler=cosine", "trainer.batch_size=32"],
    "lenet5": ["trainer.epochs=8", "optimizer.lr=0.003", "scheduler=cosine", "trainer.batch_size=32"],
    "vgg": ["trainer.epochs=2", "trainer.batch_size=32"],
    "sequential_seed_conv": ["trainer.epochs=4", "trainer.batch_size=32"],
}
SLOW_DIGITS = {  # more than a few seconds on 2 CPU cores
    "resnet": ["trainer.epochs=3", "trainer.batch_size=32"],
    "cnn_seed3x": ["trainer.epochs=8", "optimizer.lr=0.003", "scheduler=cosine", "trainer.batch_size=32"],
    "inception": ["trainer.epochs=3", "trainer.batch_size=32"],
    "tv": ["trainer.epochs=5", "trainer.batch_size=64"],
}


@pytest.mark.parametrize("model", list(DIGITS) + [pytest.param(m, marks=pytest.mark.slow) for m in SLOW_DIGITS])
def test_every_vision_model_learns_digits(model, tmp_path):
    result = dlrun.run(["logger=quiet", f"model={model}", "seed=0", *{**DIGITS, **SLOW_DIGITS}[model]],
                       run_dir=str(tmp_path / model))
    assert result["summary"]["status"] == "completed"
    assert result["summary"]["test_accuracy"] >= 0.95, result["history"]


# ---- transfer learning with model=tv --------------------------------------------------------------------
def test_tv_freezing_and_learning_rates():
    model = create_model("tv", input_shape=(1, 8, 8), num_outputs=10, arch="resnet18", freeze="backbone",
                         head_lr=0.1, backbone_lr=0.001)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["net.fc.weight", "net.fc.bias"] and count_params(model) == 512 * 10 + 10
    assert count_params(model, False) == 11_176_512
    groups = model.param_groups(0.01)
    assert [(g["name"], g["lr"], sum(p.numel() for p in g["params"])) for g in groups] == [("head", 0.1, 5130)]
    model.train()
    assert not model.net.bn1.training and model.net.fc.training  # frozen BN keeps its running statistics

    model = create_model("tv", input_shape=(1, 8, 8), num_outputs=10, arch="resnet18", freeze=2)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["net.conv1.weight", "net.bn1.weight", "net.bn1.bias"]  # the first two layers with weights
    groups = model.param_groups(0.01)
    assert [(g["name"], g["lr"]) for g in groups] == [("head", 0.01), ("backbone", 0.01)]
    assert sum(p.numel() for g in groups for p in g["params"]) == count_params(model)
    with pytest.raises(DlrunError, match="model.freeze='some'"):
        create_model("tv", input_shape=(1, 8, 8), num_outputs=10, freeze="some")


def test_tv_errors_are_clear(tmp_path):
    with pytest.raises(DlrunError, match="Did you mean 'resnet18'"):
        create_model("tv", input_shape=(1, 8, 8), num_outputs=10, arch="resnet81")
    with pytest.raises(DlrunError, match="no such file. dlrun never downloads weights") as err:
        create_model("tv", input_shape=(1, 8, 8), num_outputs=10, weights=str(tmp_path / "resnet18.pth"))
    assert err.value.exit_code == 3
    torch.save(create_model("tv", input_shape=(1, 8, 8), num_outputs=10, arch="resnet34").net.state_dict(),
               tmp_path / "r34.pth")
    with pytest.raises(DlrunError, match="does not fit torchvision's resnet18; unexpected: layer1.2"):
        create_model("tv", input_shape=(1, 8, 8), num_outputs=10, weights=str(tmp_path / "r34.pth"))


def test_tv_loads_a_torchvision_state_dict_and_replaces_the_head(tmp_path):
    from torchvision.models import get_model

    torch.manual_seed(1)
    source = get_model("resnet18", weights=None)  # stands for an ImageNet file: 1000 classes
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    model = create_model("tv", input_shape=(3, 32, 32), num_outputs=4, weights=str(tmp_path / "resnet18.pth"))
    for name, value in source.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(model.net.state_dict()[name], value), name
    assert model.net.fc.out_features == 4


def test_training_leaves_a_frozen_backbone_bit_for_bit_unchanged(tmp_path):
    """Quick version of the test below: weights from a file, backbone frozen, two epochs of digits."""
    torch.manual_seed(3)
    source = create_model("tv", input_shape=(1, 8, 8), num_outputs=10, arch="resnet18")
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    fine = dlrun.run(["logger=quiet", "model=tv", f"model.weights={tmp_path / 'weights.pt'}", "model.freeze=backbone",
                      "model.head_lr=0.01", "trainer.epochs=2", "trainer.batch_size=64"], run_dir=str(tmp_path / "run"))
    after = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    backbone = [k for k in source.state_dict() if not k.startswith("net.fc.")]
    assert len(backbone) == 120 and all(torch.equal(source.state_dict()[k], after[k]) for k in backbone)
    assert fine["summary"]["params"] == 5130  # only the head trains ...
    rows = fine["history"]
    assert rows[1]["train_loss"] < rows[0]["train_loss"] and fine["summary"]["test_accuracy"] > 0.3  # ... and learns


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.exists(), reason="needs Debian's dataset-fashion-mnist (CI installs it)")
def test_transfer_learning_fashion_backbone_to_digits_keeps_frozen_weights(tmp_path):
    """Train a resnet18 backbone with dlrun on Fashion-MNIST, then fine-tune only a new head on digits."""
    common = ["logger=quiet", "model=tv", "model.arch=resnet18", "model.resize=16", "seed=0"]  # 16 px: CPU-cheap
    pre = dlrun.run([*common, "dataset=fashion_mnist", "trainer.epochs=1", "trainer.limit_batches=15",
                     "trainer.batch_size=32"], run_dir=str(tmp_path / "fashion"))
    assert pre["summary"]["status"] == "completed" and pre["summary"]["params"] == 11_181_642
    weights = tmp_path / "fashion" / "checkpoints" / "best.pt"
    fine = dlrun.run([*common, "dataset=digits", f"model.weights={weights}", "model.freeze=backbone",
                      "model.head_lr=0.01", "trainer.epochs=4", "trainer.batch_size=64"], run_dir=str(tmp_path / "digits"))
    before = torch.load(weights, weights_only=True)["model"]
    after = torch.load(tmp_path / "digits" / "checkpoints" / "last.pt", weights_only=True)["model"]
    backbone = [k for k in before if not k.startswith("net.fc.")]
    assert len(backbone) == 120  # every tensor of the backbone: weights and BN statistics
    assert all(torch.equal(before[k], after[k]) for k in backbone), "a frozen tensor changed"
    assert fine["summary"]["params"] == 512 * 10 + 10  # only the new head trains
    rows = fine["history"]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] * 0.7  # the head learned ...
    assert fine["summary"]["test_accuracy"] >= 0.7  # ... on frozen features: chance is 0.1


# ---- the CLI: one smoke sweep over every vision model, and `dlrun summary` ------------------------------
def test_every_vision_model_trains_from_the_cli_in_one_sweep(tmp_path):
    models = ["lenet5", "cnn_seed2x", "cnn_seed3x", "vgg", "resnet", "inception", "airbench", "sequential", "tv"]
    proc = run_dlrun("-m", f"model={','.join(models)}", "debug=smoke", "trainer.batch_size=16",
                     f"hydra.sweep.dir={tmp_path}", timeout=400)
    assert proc.returncode == 0, proc.stderr
    for job, model in enumerate(models):
        summary = read_json(tmp_path / str(job) / "summary.json")
        assert summary["status"] == "completed" and summary["epochs_completed"] == 1, model
    params = {m: read_json(tmp_path / str(j) / "summary.json")["params"] for j, m in enumerate(models)}
    assert params["resnet"] == 272_186 and params["cnn_seed2x"] == 53_002 and params["lenet5"] == 21_386
    assert params["airbench"] == 1_963_320


def test_dlrun_summary_prints_without_training_and_knows_offline_shapes(tmp_path, capsys):
    proc = run_dlrun("summary", "model=resnet", "dataset=cifar10", f"dataset.root={tmp_path}", env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())
    assert "input (3, 32, 32) -> 10 outputs" in out and "Total params: 272,474" in out
    assert "fc (Linear)" in out and "('N', 64, 8, 8)" in out
    assert not any(tmp_path.rglob("*.tar.gz"))  # nothing downloaded
    assert not (ROOT / "outputs" / "summary").exists()

    from dlrun.cli.summary import summary_command

    assert summary_command(["model=tv", "model.freeze=backbone", "dataset=cifar100", f"dataset.root={tmp_path}"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Trainable: 51,300" in out and "Non-trainable: 11,176,512" in out and "-> 100 outputs" in out
    assert summary_command(["model=sequential", "model.layers=[lstm:8,linear]"]) == 2
    assert "model.layers[0] (lstm)" in capsys.readouterr().err
