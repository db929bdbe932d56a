"""SalUn, SCRUB and l1-sparse: each ingredient against its formula, each method against
retraining on a digits class, and the caller's network untouched."""

import copy

import pytest
import torch

import pyro_unlearn as pu
from pyro_unlearn import _rng
from pyro_unlearn import classifiers as unn

pytestmark = pytest.mark.usefixtures("float32")


def test_weight_saliency_keeps_the_largest_forget_gradients(tiny):
    net, x, y = tiny
    masks = unn.weight_saliency(net, x, y, sparsity=0.7, batch_size=5)
    grads = [torch.zeros_like(p) for p in net.parameters()]
    for batch in (slice(0, 5), slice(5, 10), slice(10, 12)):  # summed over minibatches
        step = torch.autograd.grad(
            -torch.nn.functional.cross_entropy(net(x[batch]), y[batch]), list(net.parameters())
        )
        grads = [a + b for a, b in zip(grads, step, strict=True)]
    flat = torch.cat([g.abs().flatten() for g in grads])
    kept = torch.cat([m.flatten() for m in masks.values()]).bool()
    assert int(kept.sum()) == round(0.3 * flat.numel())
    assert flat[kept].min() >= flat[~kept].max()  # one threshold over the whole network
    with pytest.raises(ValueError, match="sparsity"):
        unn.weight_saliency(net, x, y, sparsity=1.0)


def test_random_other_labels_are_never_the_own_label():
    y = torch.arange(1000) % 4
    labels = unn.random_other_labels(y, 4, _rng.generator(0))
    assert bool((labels != y).all())
    for c in range(4):  # each other class drawn, about a third of the time
        counts = torch.bincount(labels[y == c], minlength=4)
        assert counts[c] == 0 and bool((counts[torch.arange(4) != c] > 50).all())


def test_salun_moves_only_the_salient_weights(tiny):
    net, x, y = tiny
    before = copy.deepcopy(net.state_dict())
    new, info = unn.salun(net, x[:4], y[:4], x[4:], y[4:], sparsity=0.6, epochs=2, lr=0.05)
    masks = unn.weight_saliency(net, x[:4], y[:4], sparsity=0.6)
    assert info["frozen"] == sum(int((m == 0).sum()) for m in masks.values())
    for k, p in new.named_parameters():
        frozen = masks[k] == 0
        assert torch.equal(p[frozen], before[k][frozen]), k
        assert not torch.equal(p[~frozen], before[k][~frozen]), k
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    again, _ = unn.salun(net, x[:4], y[:4], x[4:], y[4:], sparsity=0.6, epochs=2, lr=0.05)
    assert all(torch.equal(a, b) for a, b in zip(new.parameters(), again.parameters(), strict=True))


def test_distillation_divergence_is_the_tempered_kl():
    student, teacher = torch.randn(6, 4), torch.randn(6, 4)
    expected = 9 * torch.nn.functional.kl_div(
        (student / 3).log_softmax(-1), (teacher / 3).softmax(-1), reduction="batchmean"
    )
    assert torch.isclose(unn.distillation_divergence(student, teacher, 3.0), expected)


def test_scrub_without_max_steps_is_distillation_plus_cross_entropy(tiny):
    """max_epochs=0, alpha=0, gamma=1: SCRUB is fine-tuning on D_r (SGD with momentum 0.9 and
    weight decay 5e-4), step for step."""
    net, x, y = tiny
    new, info = unn.scrub(
        net,
        x[:3],
        y[:3],
        x[3:],
        y[3:],
        epochs=2,
        max_epochs=0,
        alpha=0.0,
        gamma=1.0,
        lr=0.01,
        batch_size=64,
    )
    ref = copy.deepcopy(net)
    optim = torch.optim.SGD(ref.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    g = _rng.generator(0)
    for _ in range(2):
        for batch in _rng.permutation(9, g).split(64):
            optim.zero_grad()
            torch.nn.functional.cross_entropy(ref(x[3:][batch]), y[3:][batch]).backward()
            optim.step()
    assert info["steps"] == 2
    for a, b in zip(new.parameters(), ref.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="max_epochs"):
        unn.scrub(net, x[:3], y[:3], x[3:], y[3:], epochs=1, max_epochs=2)


def test_l1_sparse_shrinks_the_weights_and_never_reads_the_forget_set(tiny):
    net, x, y = tiny
    plain, _ = unn.l1_sparse(net, x, y, alpha=0.0, epochs=3, lr=0.01)
    sparse, _ = unn.l1_sparse(net, x, y, alpha=0.5, epochs=3, lr=0.01)

    def l1(m):
        return float(sum(p.detach().abs().sum() for p in m.parameters()))

    assert l1(sparse) < l1(plain) < l1(net) + 1.0
    with pytest.raises(pu.BadRequestError, match="y_retain holds labels"):
        unn.l1_sparse(net, x, y + 5)


@pytest.mark.parametrize(
    "method, options",
    # SCRUB at its MLP learning rate
    [("salun", {}), ("class_distillation", {}), ("scrub", {"lr": 5e-3, "epochs": 5})],
)
def test_a_class_forgotten_close_to_retraining(trained, method, options):
    """Class 5 of digits (not the benchmark's favourite class 3): forget accuracy at most
    0.02 and retain accuracy within 0.02 of a network retrained without the class."""
    net, data = trained
    x, y = data["x_train"], data["y_train"]
    forget = y == 5
    retrained = unn.retrain(unn.mlp, x[~forget], y[~forget], epochs=20, seed=7)
    result = pu.unlearn(
        unn.ClassifierModel(net),
        net,
        x[forget],
        y[forget],
        method=method,
        x_retain=x[~forget],
        y_retain=y[~forget],
        **options,
    )
    new = result.network
    assert unn.accuracy(new, x[forget], y[forget]) <= 0.02
    gap = unn.accuracy(new, x[~forget], y[~forget]) - unn.accuracy(
        retrained, x[~forget], y[~forget]
    )
    assert abs(gap) <= 0.02, gap
    assert unn.accuracy(net, x[forget], y[forget]) > 0.95  # the caller's network is untouched


def test_l1_sparse_through_unlearn_ignores_the_forget_examples(trained):
    net, data = trained
    x, y = data["x_train"], data["y_train"]
    forget = y == 5
    options = {"x_retain": x[~forget][:200], "y_retain": y[~forget][:200], "epochs": 1}
    a = pu.unlearn(
        unn.ClassifierModel(net), net, x[forget], y[forget], method="l1_sparse", **options
    )
    b = pu.unlearn(unn.ClassifierModel(net), net, x[:3], y[:3], method="l1_sparse", **options)
    assert all(
        torch.equal(p, q)
        for p, q in zip(a.network.parameters(), b.network.parameters(), strict=True)
    )


def test_scrub_at_the_authors_settings_barely_moves_the_mlp(trained):
    """The measured miss the docs report: at lr 5e-4 the student stays near the teacher."""
    net, data = trained
    x, y = data["x_train"], data["y_train"]
    forget = y == 5
    new, info = unn.scrub(net, x[forget], y[forget], x[~forget], y[~forget])
    assert info["steps"] == 2 * 5 + 3 * 11  # 2 max-step passes of 5 batches, 3 min-step passes
    assert unn.accuracy(new, x[forget], y[forget]) > 0.5


def test_salun_takes_a_network_with_an_unused_parameter(tiny):
    net, x, y = tiny
    net = copy.deepcopy(net)
    net.register_parameter("unused", torch.nn.Parameter(torch.ones(3)))
    new, info = unn.salun(net, x[:4], y[:4], x[4:], y[4:], epochs=1)
    assert torch.equal(new.unused, net.unused) and info["steps"] == 1
