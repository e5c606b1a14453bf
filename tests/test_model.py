"""The model (docs/science.md): parameter counts, linear attention, q/k/v routing, config errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tune_selcopy.errors import UserError
from tune_selcopy.science.model import (
    ConvTextModel,
    Layer,
    LinearAttention,
    ModelConfig,
    SoftmaxAttention,
    dpfp,
    elu_plus_one,
    format_attention,
    parse_attention,
)


def params(attention, invention="QK", **kwargs) -> int:
    config = ModelConfig(num_layers=3, channels=64, kernel_size=13, attention=attention, invention=invention, **kwargs)
    return ConvTextModel(config).num_params()


# --- parameter counts: the published table, exactly -----------------------------------


@pytest.mark.parametrize("activation", ["gelu", "relu"])
@pytest.mark.parametrize("invention", ["QK", "QV", "KV", "QKV"])
def test_no_attention_row(activation, invention):
    # without attention the invention setting has no effect
    assert params((0, 0, 0), invention, activation=activation) == 176_320


@pytest.mark.parametrize("attnact", ["elu+1", "dpfp"])
@pytest.mark.parametrize("invention", ["QK", "QV", "KV"])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_linear_attention_two_inventions_row(invention, attnact, activation):
    assert params((0, 0, True), invention, attention_activation=attnact, activation=activation) == 229_632


@pytest.mark.parametrize("attnact", ["elu+1", "dpfp"])
def test_linear_attention_qkv_row(attnact):
    assert params((0, 0, True), "QKV", attention_activation=attnact) == 282_944


@pytest.mark.parametrize("heads", [1, 2, 4, 8, 16, 64])
@pytest.mark.parametrize("invention", ["QK", "QV", "KV"])
def test_softmax_attention_two_inventions_row(heads, invention):
    assert params((0, 0, heads), invention) == 246_272


@pytest.mark.parametrize("heads", [1, 4, 8, 32])
def test_softmax_attention_qkv_row(heads):
    assert params((0, 0, heads), "QKV") == 299_584


def test_head_is_tied_and_counted_once():
    model = ConvTextModel(ModelConfig(attention=(0, 0, 0)))
    assert model.head.weight is model.embedding.weight
    assert model.head.bias is None
    assert model.num_params() == 176_320  # 3 x (64*64*13 + 64) + 256*64


# --- feature maps and linear attention -------------------------------------------------


def test_feature_maps_elementwise():
    x = torch.tensor([[[-2.0, -0.5, 0.0, 1.5]]], dtype=torch.float64)
    assert torch.allclose(elu_plus_one(x), torch.tensor([[[torch.e**-2, torch.e**-0.5, 1.0, 2.5]]], dtype=torch.float64))
    # dpfp nu=1: r = [relu(x), relu(-x)] = [0, 0, 0, 1.5, 2, .5, 0, 0]; phi_i = r_i * r_{i-1}
    r = [0.0, 0.0, 0.0, 1.5, 2.0, 0.5, 0.0, 0.0]
    expected = [r[i] * r[i - 1] for i in range(8)]
    assert dpfp(x).squeeze().tolist() == expected
    assert dpfp(torch.randn(2, 3, 7)).shape == (2, 3, 14)


def direct_linear_attention(phi, q, k, v):
    """out[b, l] = sum_m (phi(q[b,l]) . phi(k[b,m])) v[b,m] / (C * L), by explicit loops."""
    batch, length, channels = v.shape
    fq, fk = phi(q), phi(k)
    out = torch.zeros_like(v)
    for b in range(batch):
        for i in range(length):
            for m in range(length):
                out[b, i] += torch.dot(fq[b, i], fk[b, m]) * v[b, m]
    return out / (channels * length)


@pytest.mark.parametrize("name, phi", [("elu+1", elu_plus_one), ("dpfp", dpfp)])
def test_linear_attention_equals_direct_computation(name, phi):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 7, 5, dtype=torch.float64) for _ in range(3))
    got = LinearAttention(name)(q, k, v)
    assert got.shape == (2, 7, 5)
    assert torch.allclose(got, direct_linear_attention(phi, q, k, v), rtol=1e-10, atol=1e-12)
    einsum = torch.einsum("blf,bmf,bmc->blc", phi(q), phi(k), v) / (5 * 7)
    assert torch.allclose(got, einsum, rtol=1e-10, atol=1e-12)
    assert not list(LinearAttention(name).parameters())


@pytest.mark.parametrize("heads", [1, 4, 8])
@pytest.mark.parametrize("invention", ["QK", "KV", "QKV"])
def test_multihead_variants_run(heads, invention):
    torch.manual_seed(0)
    model = ConvTextModel(ModelConfig(attention=(0, heads, heads), invention=invention))
    attention = model.layers[2].attention
    assert isinstance(attention, SoftmaxAttention)
    assert attention.mha.num_heads == heads and attention.mha.batch_first
    tokens = torch.randint(0, 256, (3, 23))
    logits = model(tokens)
    assert logits.shape == (3, 23, 256) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    # SoftmaxAttention is the module's own call without weights or mask
    q, k, v = (torch.randn(2, 9, 64) for _ in range(3))
    expected = attention.mha(q, k, v)[0]
    assert torch.allclose(attention(q, k, v), expected, atol=1e-6)


# --- who invents q, k, v --------------------------------------------------------------------


class Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, q, k, v):
        self.calls.append((q, k, v))
        return q * 2 + k - v  # [B, L, C], any known function


@pytest.mark.parametrize("invention", ["QK", "QV", "KV", "QKV"])
@pytest.mark.parametrize("kind", [True, 4])
def test_invention_routes_q_k_v(invention, kind):
    torch.manual_seed(0)
    config = ModelConfig(attention=(0, 0, kind), invention=invention)
    layer = Layer(config, dilation=2, attention=kind)
    assert layer.conv.out_channels == 64 * len(invention)
    recorder = Recorder()
    layer.attention = recorder
    x = torch.randn(2, 64, 11)
    out = layer(x)
    (q, k, v), = recorder.calls
    chunks = layer.conv(x).split(64, dim=1)  # in the order of the letters in `invention`
    roles = {"Q": q, "K": k, "V": v}
    for role, got in roles.items():
        assert got.shape == (2, 11, 64)
        if role in invention:
            assert torch.equal(got, chunks[invention.index(role)].transpose(1, 2)), role
        else:
            assert torch.equal(got, x.transpose(1, 2)), role
    expected = F.gelu((q * 2 + k - v).transpose(1, 2)) + x
    assert torch.allclose(out, expected, atol=1e-6)


def test_layer_without_attention_is_gelu_conv_plus_residual():
    torch.manual_seed(0)
    layer = Layer(ModelConfig(attention=(0, 0, 0)), dilation=5, attention=0)
    assert layer.attention is None
    assert layer.conv.dilation == (5,) and layer.conv.padding == (30,) and layer.conv.out_channels == 64
    assert isinstance(layer.act, nn.GELU) and layer.act.approximate == "none"
    x = torch.randn(2, 64, 23)
    assert torch.allclose(layer(x), F.gelu(layer.conv(x)) + x)
    assert layer(x).shape == x.shape


def test_model_forward_is_embedding_layers_tied_head():
    torch.manual_seed(0)
    model = ConvTextModel(ModelConfig())
    tokens = torch.randint(0, 256, (2, 19))
    x = model.embedding(tokens).transpose(1, 2)
    for layer in model.layers:
        x = layer(x)
    expected = x.transpose(1, 2) @ model.embedding.weight.T
    assert torch.allclose(model(tokens), expected, atol=1e-5)
    assert [layer.conv.dilation[0] for layer in model.layers] == [3, 5, 1]
    assert [type(layer.attention) for layer in model.layers] == [type(None), type(None), LinearAttention]


# --- config errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(attention=(0, True)), "attention has 2 entries for 3 layers"),
        (dict(invention="QQ"), "unknown invention 'QQ': use QK, QV, KV or QKV"),
        (dict(invention="QKVX"), "unknown invention 'QKVX'"),
        (dict(invention="Q"), "unknown invention 'Q'"),
        (dict(attention=(0, 0, 3)), "3 heads do not divide 64 channels"),
        (dict(activation="tanh"), "unknown activation 'tanh': use gelu or relu"),
        (dict(attention_activation="softmax"), "unknown attention activation 'softmax': use elu+1 or dpfp"),
        (dict(dilation=(1, 2)), "dilation has 2 entries for 3 layers"),
        (dict(kernel_size=4), "kernel_size 4 must be odd"),
        (dict(attention=(0, 0, -1)), "attention entry -1 must be 0, True or a head count"),
    ],
)
def test_config_errors_are_user_errors(kwargs, message):
    with pytest.raises(UserError) as info:
        ModelConfig(**kwargs)
    assert str(info.value).startswith("invalid model config: ")
    assert message in str(info.value)


def test_config_errors_are_all_reported_at_once():
    with pytest.raises(UserError) as info:
        ModelConfig(attention=(0, 5), activation="tanh")
    text = str(info.value)
    assert "attention has 2 entries" in text and "5 heads do not divide 64" in text and "tanh" in text


def test_attention_notation_round_trip():
    assert parse_attention("0,0,T") == (0, 0, True)
    assert parse_attention("0, 4 ,True") == (0, 4, True)
    assert parse_attention("F,0,8") == (0, 0, 8)
    assert format_attention((0, 0, True)) == "0,0,T"
    assert format_attention((0, 1, 8)) == "0,1,8"  # 1 head stays a head count, not T
    assert parse_attention(format_attention((0, 1, True))) == (0, 1, True)
    assert parse_attention("0,1,0")[1] is not True
    with pytest.raises(UserError, match="bad attention entry 'x'"):
        parse_attention("0,x,T")
