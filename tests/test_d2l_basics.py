"""d2l basics (d2l_notes/basics.py) proven against PyTorch: blocks and parameters, convolution and pooling from
scratch, batch norm in train and eval mode, save/load; and the idx/dataset helpers of dl_utils."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import dl_utils
import rl_utils
from d2l_notes import basics as B


@pytest.fixture(autouse=True)
def _one_thread():
    # On the shared 2-core machine two torch threads can run 20x slower than one (they spin against other jobs).
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

# ----------------------------------------------------------------------------------------------------------------
# Blocks and parameters
# ----------------------------------------------------------------------------------------------------------------


def test_blocks_forward_and_my_sequential_equals_nn_sequential():
    torch.manual_seed(0)
    x = torch.rand(3, 20)
    assert B.MLP()(x).shape == (3, 10)
    layers = [nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10)]
    mine, ref = B.MySequential(*layers), nn.Sequential(*layers)
    torch.testing.assert_close(mine(x), ref(x))
    assert len(list(mine.parameters())) == 4  # registered through _modules, so parameters() finds them


def test_fixed_hidden_mlp_constant_weight_is_not_a_parameter_and_output_is_bounded():
    net = B.FixedHiddenMLP()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["linear.weight", "linear.bias"]  # the reused layer counts once; rand_weight is a buffer
    assert "rand_weight" in net.state_dict()
    out = net(torch.rand(2, 20))
    assert out.dim() == 0
    out.backward()
    assert net.linear.weight.grad is not None


def test_parameter_access_and_initialisers():
    torch.manual_seed(0)
    net = B.make_net()
    assert B.named_shapes(net) == [("0.weight", (8, 4)), ("0.bias", (8,)), ("2.weight", (1, 8)), ("2.bias", (1,))]
    net.apply(B.init_normal)
    assert abs(net[0].weight.std().item() - 0.01) < 0.006 and torch.all(net[0].bias == 0)
    net.apply(B.init_constant)
    assert torch.all(net[0].weight == 42) and torch.all(net[2].weight == 42)
    big = nn.Linear(100, 100)
    B.my_init(big)
    w = big.weight.detach()
    assert torch.all((w == 0) | (w.abs() >= 5)) and w.abs().max() <= 10
    assert 0.4 < (w == 0).float().mean().item() < 0.6  # zero with probability 1/2
    lin = nn.Linear(300, 100)
    B.init_xavier(lin)
    bound = (6 / (300 + 100)) ** 0.5
    assert lin.weight.abs().max() <= bound and lin.weight.abs().max() > 0.9 * bound


def test_lazy_layers_and_tied_parameters():
    net = B.lazy_net()
    assert isinstance(net[0].weight, nn.parameter.UninitializedParameter)
    net(torch.rand(2, 20))
    assert net[0].weight.shape == (256, 20)
    tied, shared = B.tied_net()
    assert tied[2].weight is tied[4].weight is shared.weight
    tied(torch.rand(5, 4)).sum().backward()
    grad_both = shared.weight.grad.clone()
    # The gradient of a tied weight is the sum over its uses: remove one use and the gradient changes.
    assert grad_both.abs().sum() > 0
    with torch.no_grad():
        tied[2].weight[0, 0] = 7.0
    assert tied[4].weight[0, 0] == 7.0


def test_custom_layers():
    y = B.CenteredLayer()(torch.tensor([1.0, 2, 3, 4, 5]))
    assert abs(y.mean().item()) < 1e-6
    layer = B.MyLinear(5, 3)
    x = torch.rand(2, 5)
    torch.testing.assert_close(layer(x), F.relu(x @ layer.weight + layer.bias))
    layer(x).sum().backward()
    assert layer.weight.grad is not None  # the notes' `.data` version got no gradient


def test_save_then_load_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    net = B.MLP()
    x = torch.rand(4, 20)
    path = B.save_params(net, tmp_path / "mlp.params")
    clone = B.load_params(B.MLP(), path)
    assert torch.equal(clone(x), net(x))
    bn_net = nn.Sequential(nn.Linear(20, 8), B.BatchNorm(8, num_dims=2))
    bn_net(torch.rand(16, 20))  # moves the moving averages away from their init
    clone = B.load_params(nn.Sequential(nn.Linear(20, 8), B.BatchNorm(8, num_dims=2)),
                          B.save_params(bn_net, tmp_path / "bn.params"))
    assert torch.equal(clone(x), bn_net.eval()(x))  # moving stats are buffers, so they were saved too


# ----------------------------------------------------------------------------------------------------------------
# Convolution and pooling from scratch == torch
# ----------------------------------------------------------------------------------------------------------------


def test_corr2d_d2l_example_and_edge_detection():
    x = torch.arange(9.0).reshape(3, 3)
    k = torch.arange(4.0).reshape(2, 2)
    assert B.corr2d(x, k).tolist() == [[19.0, 25.0], [37.0, 43.0]]  # d2l's printed output
    _, _, y = B.edge_image()
    assert y[:, 1].eq(1).all() and y[:, 5].eq(-1).all() and y.abs().sum() == 12


@settings(max_examples=25, deadline=None)
@given(h=st.integers(3, 9), w=st.integers(3, 9), kh=st.integers(1, 3), kw=st.integers(1, 3),
       ci=st.integers(1, 3), co=st.integers(1, 3), seed=st.integers(0, 1000))
def test_corr2d_and_multichannel_equal_f_conv2d(h, w, kh, kw, ci, co, seed):
    g = torch.Generator().manual_seed(seed)
    x, k = torch.randn(ci, h, w, generator=g), torch.randn(co, ci, kh, kw, generator=g)
    ref = F.conv2d(x[None], k)[0]  # [co, h-kh+1, w-kw+1]
    torch.testing.assert_close(B.corr2d(x[0], k[0, 0]), F.conv2d(x[None, :1], k[:1, :1])[0, 0])
    torch.testing.assert_close(B.corr2d_multi_in(x, k[0]), ref[0])
    torch.testing.assert_close(B.corr2d_multi_in_out(x, k), ref)


def test_1x1_conv_equals_matmul_form_and_f_conv2d():
    torch.manual_seed(0)
    x, k = torch.normal(0, 1, (3, 3, 3)), torch.normal(0, 1, (2, 3, 1, 1))
    y1 = B.corr2d_multi_in_out_1x1(x, k)
    torch.testing.assert_close(y1, B.corr2d_multi_in_out(x, k))
    torch.testing.assert_close(y1, F.conv2d(x[None], k)[0])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(4, 20), k=st.integers(1, 4), p=st.integers(0, 2), s=st.integers(1, 3))
def test_padding_stride_output_shape_rule(n, k, p, s):
    conv = nn.Conv2d(1, 1, kernel_size=k, padding=p, stride=s)
    assert B.comp_conv2d(conv, torch.rand(n, n)).shape == (B.conv_output_size(n, k, p, s),) * 2


def test_learnable_conv2d_learns_the_edge_kernel():
    kernel, losses = B.learn_edge_kernel(steps=30)
    assert losses[-1] < 0.01 * losses[0]
    torch.testing.assert_close(kernel, torch.tensor([[1.0, -1.0]]), atol=0.05, rtol=0)


@pytest.mark.parametrize("mode,ref", [("max", F.max_pool2d), ("avg", F.avg_pool2d)])
@pytest.mark.parametrize("size,stride,padding", [(2, 1, 0), (3, 1, 0), (2, 2, 0), (3, 2, 1), (3, 3, 1)])
def test_pooling_equals_torch(mode, ref, size, stride, padding):
    torch.manual_seed(0)
    x = torch.randn(7, 9)
    expected = ref(x[None, None], kernel_size=size, stride=stride, padding=padding)[0, 0]
    torch.testing.assert_close(B.pool2d(x, (size, size), mode, stride=stride, padding=padding), expected)


# ----------------------------------------------------------------------------------------------------------------
# Batch normalisation == nn.BatchNorm1d / 2d
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dims,shape", [(2, (16, 5)), (4, (8, 3, 5, 4))])
def test_batchnorm_matches_torch_in_train_and_eval_mode(dims, shape):
    torch.manual_seed(0)
    ours = B.BatchNorm(shape[1], num_dims=dims)
    ref = (nn.BatchNorm1d if dims == 2 else nn.BatchNorm2d)(shape[1])  # momentum 0.1 == d2l's 0.9
    with torch.no_grad():
        ours.gamma.copy_(torch.rand_like(ours.gamma) + 0.5)
        ours.beta.copy_(torch.randn_like(ours.beta))
        ref.weight.copy_(ours.gamma.flatten())
        ref.bias.copy_(ours.beta.flatten())
    for step in range(4):  # a few training steps: outputs, gradients and running statistics agree
        x = torch.randn(shape) * (step + 1) + step
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = ours(xa), ref(xb)
        torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-5)
        (ya * torch.arange(ya.numel()).view_as(ya)).sum().backward()
        (yb * torch.arange(yb.numel()).view_as(yb)).sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours.moving_mean.flatten(), ref.running_mean)
        torch.testing.assert_close(ours.moving_var.flatten(), ref.running_var)
    torch.testing.assert_close(ours.gamma.grad.flatten(), ref.weight.grad, atol=1e-3, rtol=1e-4)
    ours.eval()
    ref.eval()
    x = torch.randn(shape)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)  # eval: moving averages, not the batch
    assert not torch.allclose(ours(x), ours.train()(x))


def test_batchnorm_d2l_biased_moving_variance_option():
    x = torch.randn(10, 4)
    bn = B.BatchNorm(4, num_dims=2, unbiased_moving_var=False)
    bn(x)
    torch.testing.assert_close(bn.moving_var.flatten(), 0.9 + 0.1 * x.var(dim=0, unbiased=False))


# ----------------------------------------------------------------------------------------------------------------
# dl_utils: idx files, datasets, loader
# ----------------------------------------------------------------------------------------------------------------


def _write_fake_fashion(folder, n_train=12, n_test=5, gz=False):
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8)}
    for name, arr in arrays.items():
        dl_utils.write_idx(folder / (name + (".gz" if gz else "")), arr)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_in_the_official_format_are_read_back(tmp_path, gz):
    arrays = _write_fake_fashion(tmp_path, gz=gz)
    raw = (tmp_path / "train-images-idx3-ubyte").read_bytes() if not gz else None
    if raw is not None:  # the official header: magic 2051 then N, rows, cols as big-endian int32
        assert int.from_bytes(raw[:4], "big") == 2051 and int.from_bytes(raw[4:8], "big") == 12
        assert int.from_bytes(raw[8:12], "big") == 28 and len(raw) == 16 + 12 * 28 * 28
        assert int.from_bytes((tmp_path / "t10k-labels-idx1-ubyte").read_bytes()[:4], "big") == 2049
    data = dl_utils.load_dataset("fashion-mnist", str(tmp_path))
    assert data.train_x.shape == (12, 1, 28, 28) and data.test_x.shape == (5, 1, 28, 28)
    assert np.array_equal(data.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(data.test_y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert data.classes[9] == "ankle boot"


def test_idx_errors_are_one_line_usage_errors(tmp_path):
    with pytest.raises(rl_utils.UsageError, match="data folder not found"):
        dl_utils.load_dataset("mnist", str(tmp_path / "nope"))
    with pytest.raises(rl_utils.UsageError, match="train-images-idx3-ubyte"):
        dl_utils.load_dataset("mnist", str(tmp_path))
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(rl_utils.UsageError, match="magic"):
        dl_utils.read_idx(tmp_path / "bad")
    with pytest.raises(rl_utils.UsageError, match="choose one of: mnist5k, digits, mnist, fashion-mnist"):
        dl_utils.load_dataset("cifar")


def test_inconsistent_data_is_refused_in_one_line(tmp_path):
    """Labels that do not match the images, files in each other's slots, a corrupt image: one UsageError, never
    a silent truncation or a traceback from deep inside."""
    for name in ("short", "swapped"):
        (tmp_path / name).mkdir()
    arrays = _write_fake_fashion(tmp_path / "short")
    dl_utils.write_idx(tmp_path / "short" / "train-labels-idx1-ubyte", arrays["train-labels-idx1-ubyte"][:-1])
    with pytest.raises(rl_utils.UsageError, match="holds 12 images but its labels file 11 labels"):
        dl_utils.load_dataset("mnist", str(tmp_path / "short"))
    arrays = _write_fake_fashion(tmp_path / "swapped")
    dl_utils.write_idx(tmp_path / "swapped" / "train-labels-idx1-ubyte", arrays["train-images-idx3-ubyte"])
    with pytest.raises(rl_utils.UsageError, match="not labels .N.: are the files swapped"):
        dl_utils.load_dataset("mnist", str(tmp_path / "swapped"))
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / "tree" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "tree" / name / "ok.png")
    (tmp_path / "tree" / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(rl_utils.UsageError, match="cannot read image .*broken.png"):
        dl_utils.load_imagefolder(tmp_path / "tree", size=8)


def test_offline_datasets_split_and_loader():
    data = dl_utils.load_dataset("mnist5k")
    assert data.train_x.shape == (4000, 1, 28, 28) and data.test_x.shape == (1000, 1, 28, 28)
    assert data.train_x.dtype == torch.uint8 and set(data.test_y.unique().tolist()) == set(range(10))
    again = dl_utils.load_dataset("mnist5k")
    assert torch.equal(data.test_x, again.test_x)  # fixed split, independent of any training seed
    digits = dl_utils.load_dataset("digits")
    assert digits.train_x.shape == (1437, 1, 8, 8) and digits.test_x.shape == (360, 1, 8, 8)
    loader = dl_utils.ImageLoader(data.train_x[:100], data.train_y[:100], 32, shuffle=True, resize=32, seed=3)
    batches = list(loader)
    assert len(batches) == len(loader) == 4 and batches[0][0].shape == (32, 1, 32, 32)
    assert batches[0][0].min() >= 0.0 and batches[0][0].max() <= 1.0
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == sorted(data.train_y[:100].tolist())
    second = list(loader)  # a new permutation each epoch, reproducible from (seed, epoch)
    assert not torch.equal(batches[0][1], second[0][1])
    replay = dl_utils.ImageLoader(data.train_x[:100], data.train_y[:100], 32, shuffle=True, resize=32, seed=3)
    assert torch.equal(next(iter(replay))[0], batches[0][0])


def test_speed_ratio_pairs_interleaved_repetitions():
    # repetition 2 ran on a loaded machine (both sides slow): paired, it still reads 2x; a ratio of medians of
    # unpaired timings would mix repetitions
    ratio = dl_utils.speed_ratio(ours=[1.0, 1.0, 3.0], theirs=[2.0, 1.5, 6.0])
    assert (ratio.median, ratio.low, ratio.high) == (2.0, 1.5, 2.0) and str(ratio) == "2.00x (range 1.50-2.00x)"
    with pytest.raises(ValueError):
        dl_utils.speed_ratio([1.0], [1.0, 2.0])
