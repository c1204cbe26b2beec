"""bench/train_throughput.py's MLP step taken apart: its batched pair step is the two separate steps."""

from __future__ import annotations

import copy
import importlib.util

import torch

from llfc_utils import config, train
from llfc_utils.tools.paths import ROOT

CFG = config.get("smoke", "mlp")


def _bench():
    spec = importlib.util.spec_from_file_location(
        "train_throughput", ROOT / "bench" / "train_throughput.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pair_batched_steps_train_the_same_two_mlps_as_separate_steps():
    """The oracle: plain nn.Linear models under torch.optim.SGD, one step at a time, in float32."""
    bench = _bench()
    models = [train.build_model(CFG, s) for s in (1, 2)]
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(3, 2, 16, 784, generator=gen)
    ys = torch.randint(0, 10, (3, 2, 16), generator=gen)

    def sgd(params):
        return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)

    separate = [copy.deepcopy(m) for m in models]
    for k, m in enumerate(separate):
        bench._steps(m, sgd(m.parameters()), xs[:, k], ys[:, k], None)
    params = bench._stacked(models)
    bench._pair_steps(params, sgd(params), xs, ys, None)
    for k, m in enumerate(separate):
        for i, layer in enumerate(bench._mlp_layers(m)):
            torch.testing.assert_close(params[2 * i][k], layer.weight, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(params[2 * i + 1][k], layer.bias, rtol=1e-5, atol=1e-6)
        assert not torch.equal(params[0][k], models[k].fc1.weight), "the steps moved the weights"


def test_mlp_step_reports_shares_and_ratios():
    bench = _bench()
    x = torch.randn(256, 1, 28, 28)
    y = torch.randint(0, 10, (256,))
    parts = bench.mlp_step(CFG, x, y, repeats=1)
    assert set(parts) == {
        "step_seconds",
        "gemm_seconds",
        "gemm_share",
        "fused_sgd_ratio",
        "pair_batched_ratio",
    }
    assert 0 < parts["gemm_seconds"] and 0 < parts["step_seconds"]
    # the products alone are part of a step: a share above 1 would time more than the step does
    assert 0 < parts["gemm_share"] < 1
    assert parts["fused_sgd_ratio"] > 0 and parts["pair_batched_ratio"] > 0
