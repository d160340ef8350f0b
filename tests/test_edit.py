"""Editing (geninf.edit) against exact retraining, closed forms and hand-built validation scores."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, hessian
from torch.utils.data import DataLoader, Dataset

from geninf import InputError, ParameterSubset
from geninf.edit import (
    HVP_COST,
    ClassRemovalValidation,
    ComputeUsed,
    EditMethod,
    EditRecord,
    EditResult,
    Schedule,
    f1_score,
    relabel,
    remove,
    second_order_terms,
)
from geninf.edit.baselines import _ModuleForward
from geninf.objective import SupervisedObjective
from geninf.params import ParameterLayout, trainable_parameters

from .conftest import make_problem

EXACT = dict(rtol=1e-9, atol=1e-11)


def flat(model: nn.Module) -> torch.Tensor:
    return ParameterLayout.from_model(model).flatten(trainable_parameters(model)).detach().clone()


def set_flat(model: nn.Module, theta: torch.Tensor) -> None:
    layout = ParameterLayout.from_model(model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, t in layout.unflatten(theta).items():
            params[name].copy_(t)


# ------------------------------------------------------------ ℓ2-regularized linear regression
LAM = 0.1


def ridge(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """argmin (1/N) Σ (wᵀx + b − y)² + λ/2 ‖(w, b)‖², as the flat (w, b) of nn.Linear(d, 1)."""
    a = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    n = len(x)
    lhs = 2.0 / n * a.T @ a + LAM * torch.eye(a.shape[1], dtype=x.dtype)
    return torch.linalg.solve(lhs, 2.0 / n * a.T @ y).reshape(-1)


@pytest.fixture
def linreg():
    p = make_problem("linreg")
    x, y = p.train
    set_flat(p.model, ridge(x, y))
    obj = SupervisedObjective(F.mse_loss, weight_decay=LAM)
    return p.model, obj, x, y


@pytest.mark.parametrize(
    "method, extra",
    [("original", {}), ("gif", {"criterion": "all"}), ("freezing", {"criterion": "all"})],
)
def test_newton_removal_equals_exact_retraining_on_linear_regression(linreg, method, extra):
    model, obj, x, y = linreg
    res = remove(model, obj, (x[8:], y[8:]), (x[:8], y[:8]), method=method, damping=0, **extra)
    torch.testing.assert_close(flat(res.model), ridge(x[8:], y[8:]), **EXACT)
    assert res.record.scale == pytest.approx(8 / 32)
    assert res.record.subset["selected"] == res.record.subset["total"] == 6


@pytest.mark.parametrize("method", ["original", "gif", "projecting"])
def test_relabel_equals_exact_refit_on_linear_regression(linreg, method):
    model, obj, x, y = linreg
    idx = torch.tensor([0, 3, 5, 17])
    new = y[idx] + torch.tensor([[2.0], [-1.0], [0.5], [3.0]], dtype=torch.float64)
    kw = {} if method == "original" else {"criterion": "all"}
    res = relabel(model, obj, (x, y), (idx, new), method=method, damping=0, solver="dense", **kw)
    y2 = y.clone()
    y2[idx] = new
    torch.testing.assert_close(flat(res.model), ridge(x, y2), **EXACT)
    assert res.record.operation == "relabel" and res.record.scale == 1.0
    assert res.record.num_edited == 4 and res.record.num_train == 40


# ------------------------------------------------------------ ℓ2-regularized logistic regression
def _logreg_data(seed: int, m: int = 200, frac: float = 0.2, d: int = 4):
    """A coherent group U (20%): a tight cluster far from the rest, all labelled 1."""
    g = torch.Generator().manual_seed(seed)
    r = int(frac * m)
    xr = torch.randn(m - r, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    yr = (torch.rand(m - r, generator=g, dtype=torch.float64) < torch.sigmoid(xr @ w)).double()
    mu = torch.tensor([2.0, -2.0] + [0.0] * (d - 2), dtype=torch.float64)
    xu = mu + 0.5 * torch.randn(r, d, generator=g, dtype=torch.float64)
    return (xr, yr[:, None]), (xu, torch.ones(r, 1, dtype=torch.float64))


def _newton_fit(model: nn.Module, lam: float, data, iters: int = 50) -> torch.Tensor:
    """Exact optimum of mean BCE + λ/2‖θ‖² by Newton's method in float64."""
    layout = ParameterLayout.from_model(model)

    def loss(t):
        out = functional_call(model, layout.unflatten(t), (data[0],))
        return F.binary_cross_entropy_with_logits(out, data[1]) + 0.5 * lam * (t * t).sum()

    theta = flat(model)
    for _ in range(iters):
        g = grad(loss)(theta)
        if float(g.norm()) < 1e-14:
            break
        theta = theta - torch.linalg.solve(hessian(loss)(theta), g)
    assert float(grad(loss)(theta).norm()) < 1e-10
    return theta


@pytest.fixture(scope="module")
def logreg():
    lam = 1e-2
    retain, forget = _logreg_data(0)
    torch.manual_seed(0)
    model = nn.Linear(4, 1).double()
    full = (torch.cat([retain[0], forget[0]]), torch.cat([retain[1], forget[1]]))
    set_flat(model, _newton_fit(model, lam, full))
    obj = SupervisedObjective(F.binary_cross_entropy_with_logits, weight_decay=lam)
    return model, obj, retain, forget, _newton_fit(model, lam, retain)


def test_logistic_regression_removal_close_to_retraining(logreg):
    model, obj, retain, forget, theta_r = logreg
    theta = flat(model)
    moved = float((theta_r - theta).norm())  # 0.251
    for method in ("original", "gif"):
        kw = {"criterion": "all"} if method == "gif" else {}
        res = remove(model, obj, retain, forget, method=method, solver="dense", damping=0, **kw)
        err = float((flat(res.model) - theta_r).norm())  # 0.0217: one Newton step
        assert err < 0.15 * moved, (method, err, moved)


def test_second_order_closer_to_retraining_than_first_order(logreg):
    model, obj, retain, forget, theta_r = logreg
    theta = flat(model)
    terms = second_order_terms(
        model, obj, retain, forget, num_retain=160, num_forget=40, solver="dense"
    )
    assert terms.p == pytest.approx(0.2)
    d_first = float((theta + terms.first - theta_r).norm())  # 0.117
    d_both = float((theta + terms.total - theta_r).norm())  # 0.0106
    assert d_both < 0.5 * d_first, (d_both, d_first)
    # removal sign: the loss on U rises along Δθ (same direction as the Newton removal step)
    g_u = grad(lambda t: F.binary_cross_entropy_with_logits(
        functional_call(model, ParameterLayout.from_model(model).unflatten(t), (forget[0],)),
        forget[1]))(theta)  # fmt: skip
    assert float(g_u @ terms.total) > 0
    res = remove(model, obj, retain, forget, method="second_order", solver="dense", damping=0)
    torch.testing.assert_close(flat(res.model), theta + terms.total, **EXACT)
    rec = res.record
    assert set(rec.solver) == {"first", "second"} and rec.extra["p"] == pytest.approx(0.2)
    # cost: gradient over U, dense solves over S (n products each, 2·200 per product), one H_U
    n = theta.numel()
    assert rec.compute.example_gradients == 40 + HVP_COST * (2 * n * 200 + 40)


def test_second_order_with_samples_keeps_each_sets_weight(logreg):
    """With a sample of R and of U (hessian_examples / forget_examples), H stays
    (1 − p)·H_R + p·H_U with p = r/m from the full counts (each mean Hessian from its sample),
    g the mean gradient of the U sample; and the compute counts the examples actually used."""
    model, obj, retain, forget, _ = logreg
    theta = flat(model)
    layout = ParameterLayout.from_model(model)
    rs, fs = (retain[0][:50], retain[1][:50]), (forget[0][:10], forget[1][:10])

    def loss(t, data):
        out = functional_call(model, layout.unflatten(t), (data[0],))
        return F.binary_cross_entropy_with_logits(out, data[1]) + 0.5 * 1e-2 * (t * t).sum()

    p = 40 / 200
    H = (1 - p) * hessian(loss)(theta, rs) + p * hessian(loss)(theta, fs)
    g = grad(loss)(theta, fs)
    s = torch.linalg.solve(H, g)
    first = (1 - 2 * p) / (1 - p) ** 2 * p * s
    second = p**2 / (1 - p) ** 2 * torch.linalg.solve(H, hessian(loss)(theta, fs) @ s)
    compute = ComputeUsed()
    terms = second_order_terms(
        model, obj, rs, fs, num_retain=160, num_forget=40, solver="dense", compute=compute
    )
    torch.testing.assert_close(terms.first, first, **EXACT)
    torch.testing.assert_close(terms.second, second, **EXACT)
    n = theta.numel()  # two dense solves over R's and U's samples, one H_U product, g over fs
    assert compute.example_gradients == 10 + HVP_COST * (2 * n * 60 + 10)


# ------------------------------------------------------------------ subsets and immutability
@pytest.mark.parametrize("method", ["gif", "freezing", "projecting"])
def test_subset_methods_move_only_the_subset(method):
    p = make_problem("mlp")
    n = flat(p.model).numel()
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(1))[:12]
    subset = ParameterSubset.from_flat_indices(p.model, idx)
    before = flat(p.model)
    retain, forget = (p.train[0][7:], p.train[1][7:]), p.target
    res = remove(p.model, p.loss_fn, retain, forget, method=method, subset=subset, damping=0.1)
    moved = flat(res.model) - before
    outside = torch.ones(n, dtype=torch.bool)
    outside[idx] = False
    assert bool((moved[outside] == 0).all())
    assert float(moved[idx].abs().max()) > 0
    assert res.record.subset["selected"] == 12 and res.record.subset["source"] == "given"
    torch.testing.assert_close(flat(p.model), before, rtol=0, atol=0)


def test_selected_subset_is_recorded_per_tensor():
    p = make_problem("mlp")
    retain, forget = (p.train[0][7:], p.train[1][7:]), p.target
    res = remove(p.model, p.loss_fn, retain, forget, criterion="highest_gradients", ratio=0.3)
    sub = res.record.subset
    assert sub["selection"]["criterion"] == "highest_gradients"
    assert sum(v["selected"] for v in sub["per_tensor"].values()) == sub["selected"]
    assert sum(v["total"] for v in sub["per_tensor"].values()) == sub["total"] == 51
    changed = int((flat(res.model) != flat(p.model)).sum())
    assert 0 < changed <= sub["selected"]


# ------------------------------------------------------------------ class removal on 2-D blobs
def _blobs(n_per: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]], dtype=torch.float64)
    x = torch.cat(
        [c + 0.8 * torch.randn(n_per, 2, generator=g, dtype=torch.float64) for c in centers]
    )
    return x, torch.arange(3).repeat_interleave(n_per)


@pytest.fixture(scope="module")
def blobs():
    """A trained 2-8-3 tanh MLP, its objective and train/validation/test splits; class 2 goes."""
    splits = {"train": _blobs(40, 0), "val": _blobs(20, 1), "test": _blobs(20, 2)}
    obj = SupervisedObjective(F.cross_entropy, weight_decay=1e-3)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    opt = torch.optim.LBFGS(model.parameters(), max_iter=200, line_search_fn="strong_wolfe")
    fwd = _ModuleForward(model)

    def closure():
        opt.zero_grad()
        loss = obj.loss(fwd, splits["train"])
        loss.backward()
        return loss

    opt.step(closure)
    model.eval()
    x, y = splits["train"]
    keep = y != 2
    return model, obj, (x[keep], y[keep]), (x[~keep], y[~keep]), splits


def _accuracy(model: nn.Module, data) -> float:
    with torch.no_grad():
        return float((model(data[0]).argmax(-1) == data[1]).double().mean())


@pytest.mark.parametrize("method", [m.value for m in EditMethod])
def test_every_method_returns_a_copy_and_a_json_record(blobs, method):
    model, obj, retain, forget, splits = blobs
    state = {k: v.clone() for k, v in model.state_dict().items()}
    kw = {"lr": 0.05, "budget": 300} if EditMethod(method).is_baseline else {}
    res = remove(model, obj, retain, forget, method=method, ratio=0.3, damping=0.01, **kw)
    assert isinstance(res, EditResult) and isinstance(res.record, EditRecord)
    assert res.model is not model
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    assert not torch.equal(flat(res.model), flat(model))
    d = json.loads(json.dumps(res.record.to_dict(), allow_nan=False))
    assert d["method"] == method and d["schedule"] == "newton" and d["seed"] == 0
    assert d["compute"]["example_gradients"] > 0 and d["wall_time"] > 0
    assert d["options"]["damping"] == 0.01 and d["options"]["ratio"] == 0.3


def test_paper_schedule_picks_the_step_count_by_validation(linreg):
    model, obj, x, y = linreg
    theta = flat(model)
    target = 0.7  # ‖θ_k − θ̂‖ = k·γ: the score peaks at γ = 0.1, k = 7

    def score(m: nn.Module) -> float:
        return -((float((flat(m) - theta).norm()) - target) ** 2)

    res = remove(model, obj, (x[8:], y[8:]), (x[:8], y[:8]), method="original",
                 schedule="paper", validation=score, max_steps=12, damping=0)  # fmt: skip
    rec = res.record
    assert (rec.steps, rec.gamma) == (7, 0.1)
    assert set(rec.schedule_scores) == {"0.03", "0.1", "0.3"}
    assert all(len(v) == 12 for v in rec.schedule_scores.values())
    assert rec.compute.validation_evaluations == 36 + 1  # the grid and the unedited model
    # the returned model is θ̂ + 7 · 0.1 · x/‖x‖ along the Newton direction
    newton = remove(model, obj, (x[8:], y[8:]), (x[:8], y[:8]), method="original", damping=0)
    newton = flat(newton.model)
    step = flat(res.model) - theta
    torch.testing.assert_close(step, 0.7 * (newton - theta) / (newton - theta).norm(), **EXACT)
    one = remove(model, obj, (x[8:], y[8:]), (x[:8], y[:8]), method="original",
                 schedule="paper", validation=score, gammas=(0.05,), max_steps=20,
                 damping=0)  # fmt: skip
    assert (one.record.steps, one.record.gamma) == (14, 0.05)


class RecordingSplit(Dataset):
    """A data split that logs every access (length, item) to ``log``."""

    def __init__(self, data, log: list[str], name: str):
        self._data, self._log, self._name = data, log, name

    def __len__(self) -> int:
        self._log.append(f"{self._name}:len")
        return len(self._data[1])

    def __getitem__(self, i):
        self._log.append(f"{self._name}:item")
        return self._data[0][i], self._data[1][i]


def class_removal_run(model, obj, splits, forget_class: int, log: list[str], **kw):
    """Edit on train + validation, then (only then) evaluate on the test split."""
    x, y = splits["train"]
    keep = y != forget_class
    res = remove(model, obj, (x[keep], y[keep]), (x[~keep], y[~keep]), schedule="paper",
                 validation=ClassRemovalValidation(splits["val"], forget_class), **kw)  # fmt: skip
    log.append("edit returned")
    correct = {"self": [], "other": []}
    with torch.no_grad():
        for xb, yb in DataLoader(splits["test"], batch_size=16):
            ok = res.model(xb).argmax(-1) == yb
            correct["self"].append(ok[yb == forget_class])
            correct["other"].append(ok[yb != forget_class])
    s, t = (float(torch.cat(v).double().mean()) for v in correct.values())
    return res, s, t


def test_the_test_split_is_never_read_during_editing(blobs):
    model, obj, _, _, splits = blobs
    for fn in (remove, relabel):  # the API has no way to receive test data
        assert not [p for p in inspect.signature(fn).parameters if "test" in p.lower()]
    log: list[str] = []
    guarded = {**splits, "test": RecordingSplit(splits["test"], log, "test")}
    res, s, t = class_removal_run(model, obj, guarded, 2, log, ratio=0.3, damping=0.01)
    first_test = min(i for i, e in enumerate(log) if e.startswith("test:"))
    assert log.index("edit returned") < first_test
    assert log.count("test:item") == 60  # evaluated once, after the edit
    # and the edit did its job: the class is forgotten, the others kept (test split, reported)
    assert _accuracy(model, splits["test"]) == 1.0
    assert s <= 0.2 and t >= 0.95, (s, t)
    assert res.record.validation["kind"] == "class_removal_f1"
    assert res.record.validation_score > 0.9 and res.record.steps >= 1


def test_baselines_spend_exactly_their_budget(blobs):
    model, obj, retain, forget, _ = blobs
    # epochs of 80 (retain: 5×16) or 40 (forget: 16, 16, 8) examples; the last batch is cut
    for method, steps in (("finetune", 7), ("gradient_ascent", 8)):
        res = remove(model, obj, retain, forget, method=method, budget=100,
                     train_batch_size=16, lr=0.01)  # fmt: skip
        c = res.record.compute
        assert c.example_gradients == c.budget == 100 and c.budget_source == "given"
        assert c.optimizer_steps == steps and c.hvps == 0
    # more budget: both forget class 2 on the training examples being removed
    forget_acc = _accuracy(model, forget)
    for method in ("finetune", "gradient_ascent"):
        res = remove(model, obj, retain, forget, method=method, budget=4000, lr=0.05)
        assert _accuracy(res.model, forget) < forget_acc - 0.5, method


def test_default_baseline_budget_is_what_gif_spends(blobs):
    model, obj, retain, forget, _ = blobs
    kw = dict(ratio=0.3, damping=0.01)
    gif = remove(model, obj, retain, forget, **kw).record.compute
    ft = remove(model, obj, retain, forget, method="finetune", **kw).record.compute
    assert ft.budget_source == "gif" and ft.budget == gif.example_gradients
    assert ft.example_gradients == gif.example_gradients
    # gif: selection gradients over U + gradient over U + 2·|R| per HVP
    assert gif.example_gradients == 40 + 40 + HVP_COST * 80 * gif.hvps


def test_baseline_paper_schedule_keeps_the_best_checkpoint(blobs):
    model, obj, retain, forget, splits = blobs
    val = ClassRemovalValidation(splits["val"], 2)
    res = remove(model, obj, retain, forget, method="gradient_ascent", schedule="paper",
                 validation=val, budget=2000, lr=0.05, checkpoints=10)  # fmt: skip
    rec = res.record
    scores = rec.schedule_scores
    assert len(scores["step"]) == len(scores["score"]) >= 10
    assert rec.validation_score == max(scores["score"])
    assert rec.steps == scores["step"][scores["score"].index(max(scores["score"]))]
    assert val(res.model) == pytest.approx(rec.validation_score)


def test_relabel_finetune_trains_on_corrected_labels(blobs):
    model, obj, _, _, splits = blobs
    x, y = splits["train"]
    idx = torch.arange(0, 40, 4)  # 10 examples of class 0 → class 1
    new = torch.ones(10, dtype=torch.long)
    res = relabel(model, obj, (x, y), (idx, new), method="finetune", budget=3000, lr=0.05)
    assert _accuracy(res.model, (x[idx], new)) > _accuracy(model, (x[idx], new))
    assert res.record.compute.budget == 3000
    gif = relabel(model, obj, (x, y), (idx, new), ratio=0.3, damping=0.01)
    # cost: selection + two gradient passes over the 10 changes, 2·120 per HVP
    assert (
        gif.record.compute.example_gradients == 10 + 20 + HVP_COST * 120 * gif.record.compute.hvps
    )


# ------------------------------------------------------------------ validation scores
def test_f1_score():
    assert f1_score(0.0, 1.0) == 1.0 and f1_score(1.0, 1.0) == 0.0 and f1_score(1.0, 0.0) == 0.0
    assert f1_score(0.5, 0.5) == pytest.approx(0.5)
    assert f1_score(0.0026, 0.9013) == pytest.approx(0.9469, abs=1e-4)  # paper Table 1, GIF
    assert f1_score(0.0, 0.9179) == pytest.approx(0.9572, abs=1e-4)  # retrain
    with pytest.raises(InputError, match="fraction"):
        f1_score(0.26, 90.13)


def test_class_removal_validation(blobs):
    model, _, _, _, splits = blobs
    val = ClassRemovalValidation(splits["val"], 2)
    assert val.accuracies(model) == (1.0, pytest.approx(39 / 40))
    assert val(model) == 0.0 and val.describe()["num_forget_class"] == 20
    x, y = splits["val"]
    with pytest.raises(InputError, match="examples of class 2 and of other"):
        ClassRemovalValidation((x[y == 2], y[y == 2]), 2)


# ------------------------------------------------------------------ bad inputs
def _bad_calls(model, obj, retain, forget):
    x, y = retain
    empty = (x[:0], y[:0])
    return {
        "unknown method": (lambda: remove(model, obj, retain, forget, method="magic"),
                           "unknown edit method"),
        "unknown schedule": (lambda: remove(model, obj, retain, forget, schedule="cosine"),
                             "unknown schedule"),
        "empty forget set": (lambda: remove(model, obj, retain, empty), "forget_data is empty"),
        "everything removed": (lambda: remove(model, obj, empty, forget),
                               "the forget set is the whole training set"),
        "same data": (lambda: remove(model, obj, retain, retain), "are the same data"),
        "paper without validation": (lambda: remove(model, obj, retain, forget, schedule="paper"),
                                     "pass validation"),
        "ratio zero": (lambda: remove(model, obj, retain, forget, ratio=0.0), r"ratio must be in"),
        "ratio above one": (lambda: remove(model, obj, retain, forget, ratio=1.5),
                            r"ratio must be in"),
        "budget for gif": (lambda: remove(model, obj, retain, forget, budget=10),
                           "budget applies to"),
        "unknown option": (lambda: remove(model, obj, retain, forget, learning_rate=0.1),
                           "unknown option"),
        "subset for original": (
            lambda: remove(model, obj, retain, forget, method="original",
                           subset=ParameterSubset.from_names(model, ["0.bias"])),
            "moves every parameter"),
        "second order relabel": (
            lambda: relabel(model, obj, retain, (torch.tensor([0]), torch.tensor([1])),
                            method="second_order"), "removal only"),
        "relabel index range": (
            lambda: relabel(model, obj, retain, (torch.tensor([999]), torch.tensor([1]))),
            "distinct indices"),
    }  # fmt: skip


BAD_CASES = [
    "unknown method", "unknown schedule", "empty forget set", "everything removed", "same data",
    "paper without validation", "ratio zero", "ratio above one", "budget for gif",
    "unknown option", "subset for original", "second order relabel", "relabel index range",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_inputs_raise_clear_one_line_errors(blobs, case):
    model, obj, retain, forget, _ = blobs
    calls = _bad_calls(model, obj, retain, forget)
    assert set(calls) == set(BAD_CASES)
    call, pattern = calls[case]
    with pytest.raises(InputError, match=pattern) as info:
        call()
    assert "\n" not in str(info.value)


def test_enums_parse_strings():
    assert EditMethod.parse("GIF") is EditMethod.GIF and Schedule.parse(" paper ") is Schedule.PAPER
    assert EditMethod.SECOND_ORDER.is_influence is False and EditMethod.FINETUNE.is_baseline
