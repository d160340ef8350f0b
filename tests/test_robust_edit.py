"""Robust editing defaults: one source of defaults, scale-free damping chosen on validation, the
bracketing step search, its saturation warning, the did-not-work warning, and the Hessian
sample — each against a reference that could disagree (closed forms on linear regression,
quadratic scores whose best step and damping are known)."""

from __future__ import annotations

import inspect
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from geninf import EditWarning, InputError, SupervisedObjective
from geninf.cli.parser import build_parser
from geninf.defaults import EDIT_DEFAULTS
from geninf.demo import run_demo
from geninf.edit import LabelChangeValidation, relabel, remove
from geninf.edit.damping import DampingSpec, curvature_scale, parse_damping, parse_path
from geninf.edit.search import bracket, refine
from geninf.linalg import MatrixOperator
from geninf.params import ParameterLayout
from geninf.report.jobs.edit import relabel_run, remove_run


def flat(model: nn.Module) -> torch.Tensor:
    return ParameterLayout.from_model(model).flatten(dict(model.named_parameters())).detach()


@pytest.fixture
def linreg():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = x @ torch.randn(5, 1, generator=g, dtype=torch.float64) + 0.1 * torch.randn(
        40, 1, generator=g, dtype=torch.float64
    )
    model = nn.Linear(5, 1).double()
    with torch.no_grad():  # the exact ridge fit, so the model is at the optimum
        xa = torch.cat([x, torch.ones(40, 1, dtype=torch.float64)], 1)
        w = torch.linalg.solve(xa.T @ xa / 40 + 0.1 * torch.eye(6, dtype=torch.float64) / 1,
                               xa.T @ y / 40)  # fmt: skip
        model.weight.copy_(w[:5].T)
        model.bias.copy_(w[5])
    obj = SupervisedObjective(F.mse_loss, weight_decay=0.1)
    return model, obj, (x[8:], y[8:]), (x[:8], y[:8])


# ------------------------------------------------------------------------ one set of defaults
def test_library_cli_and_demo_read_one_set_of_defaults():
    d = EDIT_DEFAULTS
    for fn in (remove, relabel, remove_run, relabel_run):
        sig = inspect.signature(fn).parameters
        for name in ("method", "criterion", "ratio", "schedule", "solver", "damping"):
            assert sig[name].default == getattr(d, name), (fn.__name__, name)
    parser = build_parser()
    for command in ("remove", "relabel"):
        args = parser.parse_args([command, "--checkpoint", "c", "--out", "o", *_target(command)])
        for name in ("method", "criterion", "ratio", "schedule", "solver", "damping"):
            assert getattr(args, name) == getattr(d, name), (command, name)
    demo = parser.parse_args(["demo"])
    assert (demo.ratio, demo.damping) == (d.ratio, d.damping)
    sig = inspect.signature(run_demo).parameters
    assert (sig["ratio"].default, sig["damping"].default) == (d.ratio, d.damping)


def _target(command: str) -> list[str]:
    return ["--forget", "class:1"] if command == "remove" else ["--changes", "c.csv"]


# ---------------------------------------------------------------------------- step search
@pytest.mark.parametrize("t_star", [2.0**3.3, 2.0**-2.6, 1.0])
def test_step_search_finds_the_peak_of_a_quadratic_in_log_step(t_star):
    calls = []

    def score(t: float) -> float:
        calls.append(t)
        return -((math.log2(t) - math.log2(t_star)) ** 2)

    state = bracket(score, growth=2.0, patience=2, t_min=2**-10, t_max=2**16, max_evaluations=30)
    refine(state, score, growth=2.0, rounds=2, t_min=2**-10, t_max=2**16)
    assert abs(math.log2(state.best) - math.log2(t_star)) <= 0.125 + 1e-12
    assert state.saturated is None
    assert state.evaluations == len(calls) <= 14  # against 90 of the old 3 × 30 grid


def test_step_search_reports_saturation_at_its_cap():
    state = bracket(lambda t: t, growth=2.0, patience=2, t_min=2**-4, t_max=2**5,
                    max_evaluations=50)  # fmt: skip
    refine(state, lambda t: t, growth=2.0, rounds=2, t_min=2**-4, t_max=2**5)
    assert state.best == 2**5 and state.saturated == "upper"
    state = bracket(lambda t: -t, growth=2.0, patience=2, t_min=2**-4, t_max=2**5,
                    max_evaluations=50)  # fmt: skip
    assert state.best == 2**-4 and state.saturated == "lower"


def test_search_schedule_moves_along_the_newton_update(linreg):
    """The score peaks at θ̂ + 3·Δ_newton: the search returns that model (within 2^(1/8))."""
    model, obj, retain, forget = linreg
    newton = remove(model, obj, retain, forget, method="original", damping=0.0)
    theta, step = flat(model), flat(newton.model) - flat(model)

    def score(m: nn.Module) -> float:
        return -float((flat(m) - (theta + 3.0 * step)).norm())

    res = remove(model, obj, retain, forget, method="original", damping=0.0, validation=score)
    rec = res.record
    assert rec.schedule == "search" and rec.step_search["saturated"] is None
    assert abs(math.log2(rec.step_search["best"]) - math.log2(3.0)) <= 0.125
    assert rec.improved is True and rec.baseline_score < rec.validation_score
    # bracket + refine + the unedited model: far fewer than the 90 of the old grid
    assert rec.compute.validation_evaluations == rec.step_search["evaluations"] + 1 <= 15


def test_saturated_search_warns_and_records(linreg):
    model, obj, retain, forget = linreg
    theta = flat(model)

    def far(m: nn.Module) -> float:  # always better further away: no finite best step
        return float((flat(m) - theta).norm())

    with pytest.warns(EditWarning, match="largest step"):
        res = remove(model, obj, retain, forget, method="original", damping=0.0,
                     validation=far)  # fmt: skip
    assert res.record.step_search["saturated"] == "upper"
    assert res.record.step_search["best"] == EDIT_DEFAULTS.step_max or (
        res.record.step_search["evaluations"] >= res.record.options["max_evaluations"]
    )


def test_edit_that_does_not_improve_validation_warns(linreg):
    model, obj, retain, forget = linreg
    theta = flat(model)

    def stay(m: nn.Module) -> float:  # the unedited model is the best there is
        return -float((flat(m) - theta).norm())

    with pytest.warns(EditWarning, match="did not improve the validation score"):
        res = remove(model, obj, retain, forget, method="original", damping=0.0, validation=stay)
    assert res.record.improved is False and res.record.baseline_score == 0.0


# -------------------------------------------------------------------------- damping path
def test_curvature_scale_estimates_the_spectral_norm():
    g = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64))
    eig = torch.cat([torch.tensor([-5.0, 2.0]), torch.rand(28, generator=g).double()])
    H = MatrixOperator(q @ torch.diag(eig) @ q.T)
    scale, used = curvature_scale(H, iterations=60, seed=0)
    assert used == 60 and scale == pytest.approx(5.0, rel=1e-3)


def test_relative_damping_is_invariant_to_the_loss_scale(linreg):
    """λ = ρ·‖H‖: scaling the loss by c scales H and g by c, so the edit is the same."""
    model, obj, retain, forget = linreg
    scaled = SupervisedObjective(lambda o, t: 7.0 * F.mse_loss(o, t), weight_decay=0.7)
    a = remove(model, obj, retain, forget, method="original", damping="rel:0.05")
    b = remove(model, scaled, retain, forget, method="original", damping="rel:0.05")
    torch.testing.assert_close(flat(a.model), flat(b.model), rtol=1e-9, atol=1e-12)
    assert b.record.damping["scale"] == pytest.approx(7.0 * a.record.damping["scale"])
    c = remove(model, scaled, retain, forget, method="original", damping=0.05)  # absolute
    assert not torch.allclose(flat(a.model), flat(c.model))


def test_auto_damping_picks_the_path_value_the_score_prefers(linreg):
    """The score is the distance to the Newton edit at ρ* = 1e-2: auto damping must pick ρ*."""
    model, obj, retain, forget = linreg
    path = (1.0, 1e-1, 1e-2, 1e-3)
    kw = {"method": "original", "solver": "dense"}
    target = flat(remove(model, obj, retain, forget, damping="rel:1e-2", **kw).model)

    def score(m: nn.Module) -> float:
        return -float((flat(m) - target).norm())

    res = remove(model, obj, retain, forget, validation=score, damping_path=path,
                 schedule="newton", **kw)  # fmt: skip
    d = res.record.damping
    assert d["spec"] == "auto" and d["path"] == list(path) and len(d["scores"]) == 4
    assert d["chosen_relative"] == pytest.approx(1e-2)
    assert int(torch.tensor(d["scores"]).argmax()) == 2
    torch.testing.assert_close(flat(res.model), target, rtol=1e-9, atol=1e-12)
    # one scale estimate, one solve per path value: all of it charged
    assert res.record.compute.hvps >= d["scale_products"] + 4


@pytest.mark.filterwarnings("ignore::geninf.errors.ConvergenceWarning")
def test_projecting_on_every_parameter_is_original_along_a_truncated_damping_path(linreg):
    """projecting = [H⁻¹g]_J; with J = all it is original's solve, warm starts included (it
    started every λ of the path cold before, so truncated solves differed)."""
    model, obj, retain, forget = linreg
    kw = dict(solver="cg", solver_options={"max_iter": 2}, damping_path=(1.0, 1e-2, 1e-4),
              schedule="newton", validation=lambda m: -float(flat(m).norm()))  # fmt: skip
    orig = remove(model, obj, retain, forget, method="original", **kw)
    proj = remove(model, obj, retain, forget, method="projecting", criterion="all", **kw)
    assert orig.record.damping["scores"] == proj.record.damping["scores"]
    torch.testing.assert_close(flat(proj.model), flat(orig.model), rtol=1e-12, atol=1e-14)
    assert orig.record.compute.hvps == proj.record.compute.hvps


@pytest.mark.parametrize(
    ("rho_star", "path", "edge"),
    [(1e-2, (1.0, 1e-1, 1e-2, 1e-3), None), (1e-4, (1.0, 1e-1, 1e-2), "lower"),
     (10.0, (1.0, 1e-1, 1e-2), "upper")],
)  # fmt: skip
def test_auto_damping_records_a_choice_on_the_edge_of_its_path(linreg, rho_star, path, edge):
    """The score prefers the edit at ρ*; a path that does not reach ρ* ends on the edge nearest
    to it, strictly better than its neighbour, and the record says which edge."""
    model, obj, retain, forget = linreg
    kw = {"method": "original", "solver": "dense"}
    target = flat(remove(model, obj, retain, forget, damping=f"rel:{rho_star}", **kw).model)

    def score(m: nn.Module) -> float:
        return -float((flat(m) - target).norm())

    res = remove(model, obj, retain, forget, validation=score, damping_path=path,
                 schedule="newton", **kw)  # fmt: skip
    assert res.record.damping["saturated"] == edge


def test_auto_damping_without_validation_uses_the_documented_fallback(linreg):
    model, obj, retain, forget = linreg
    res = remove(model, obj, retain, forget, method="original")
    d = res.record.damping
    assert res.record.schedule == "newton" and d["path"] == [EDIT_DEFAULTS.damping_fallback]
    assert d["chosen_relative"] == pytest.approx(EDIT_DEFAULTS.damping_fallback)
    assert "fallback" in d


@pytest.mark.parametrize(
    "value, message",
    [
        (-1.0, "finite number >= 0"),
        (float("nan"), "finite number >= 0"),
        ("rel:-0.1", "finite number >= 0"),
        ("banana", "'auto', 'rel:ρ'"),
        (True, "finite number >= 0"),
    ],
)
def test_bad_damping_is_refused(linreg, value, message):
    model, obj, retain, forget = linreg
    with pytest.raises(InputError, match=message):
        remove(model, obj, retain, forget, method="original", damping=value)


def test_bad_damping_path_is_refused(linreg):
    model, obj, retain, forget = linreg
    for path, message in [((), "damping_path is empty"), ((0.1, -1), ">= 0"), ((0.0,), "> 0")]:
        with pytest.raises(InputError, match=message):
            remove(model, obj, retain, forget, method="original", damping_path=path)
    assert parse_path((1e-3, 1e-1, 1e-3)) == (1e-1, 1e-3)
    assert parse_damping("rel:0.5") == DampingSpec.relative(0.5)
    assert parse_damping(0.25) == DampingSpec.absolute(0.25)


# -------------------------------------------------------------------------- hessian sample
def _blobs(n: int = 120, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 4, generator=g, dtype=torch.float64) + 2.0 * F.one_hot(y, 4).double()
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    return net, x, y


def test_hessian_examples_draws_a_reproducible_stratified_sample():
    net, x, y = _blobs()
    keep = y != 2
    retain, forget = (x[keep], y[keep]), (x[~keep], y[~keep])
    kw = {"method": "original", "damping": 0.1, "solver": "dense"}
    a = remove(net, None, retain, forget, hessian_examples=20, **kw)
    b = remove(net, None, retain, forget, hessian_examples=20, **kw)
    full = remove(net, None, retain, forget, **kw)
    torch.testing.assert_close(flat(a.model), flat(b.model), rtol=0, atol=0)
    assert not torch.allclose(flat(a.model), flat(full.model))
    rec = a.record
    assert (rec.num_train, rec.num_edited, rec.options["hessian_examples"]) == (120, 40, 20)
    assert rec.scale == pytest.approx(40 / 80)  # r/(m − r) from the full counts
    n = flat(net).numel()
    # dense: n products on the 20-example sample; the gradient over the 40 forgotten examples
    assert rec.compute.example_gradients == 40 + 2 * n * 20
    # the same edit by hand: H over the stratified sample the option draws (10 per class)
    from geninf.data import stratified_sample

    idx = stratified_sample(retain[1], 20, generator=torch.Generator().manual_seed(0))
    assert torch.bincount(retain[1][idx]).tolist() == [10, 10]
    by_hand = remove(net, None, (retain[0][idx], retain[1][idx]), forget, **kw)
    # only the Newton scale differs: r/(m − r) of the full data against that of the sample
    step_a = flat(a.model) - flat(net)
    step_h = flat(by_hand.model) - flat(net)
    torch.testing.assert_close(step_a, step_h * (40 / 80) / (40 / 20), rtol=1e-9, atol=1e-12)
    # asking for every retained example is the full data, in order: the same edit bit for bit
    every = remove(net, None, retain, forget, hessian_examples=80, **kw)
    torch.testing.assert_close(flat(every.model), flat(full.model), rtol=0, atol=0)


@pytest.mark.parametrize(
    "value, message",
    [(1000, "more than the 80 examples"), (0, "positive int"), (1.5, "positive int")],
)
def test_bad_hessian_examples_are_refused(value, message):
    net, x, y = _blobs()
    keep = y != 2
    with pytest.raises(InputError, match=message):
        remove(net, None, (x[keep], y[keep]), (x[~keep], y[~keep]), hessian_examples=value)


def test_label_change_validation_is_the_harmonic_mean():
    net = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(2))
    val = (torch.eye(2), torch.tensor([0, 1]))  # accuracy 1
    changed = (torch.eye(2), torch.tensor([1, 1]))  # accuracy 1/2
    score = LabelChangeValidation(val, changed)
    assert score.accuracies(net) == (1.0, 0.5)
    assert score(net) == pytest.approx(2 * 1.0 * 0.5 / 1.5)


def test_warnings_are_silent_on_a_good_edit(linreg):
    model, obj, retain, forget = linreg
    with warnings.catch_warnings():
        warnings.simplefilter("error", EditWarning)
        remove(model, obj, retain, forget, method="original")


# ------------------------------------------------------------------------------ iterated GIF
def test_iterated_gif_converges_to_the_retrained_optimum_of_a_convex_model():
    """ℓ2-regularized logistic regression: one Newton step from θ̂ lands near the retrained
    optimum θ_R, further re-linearized steps (same H) get closer; the score is −‖θ − θ_R‖."""
    from tests.test_edit import _logreg_data, _newton_fit

    lam = 1e-2
    retain, forget = _logreg_data(0)
    torch.manual_seed(0)
    model = nn.Linear(4, 1).double()
    full = (torch.cat([retain[0], forget[0]]), torch.cat([retain[1], forget[1]]))
    layout = ParameterLayout.from_model(model)
    with torch.no_grad():
        for name, t in layout.unflatten(_newton_fit(model, lam, full)).items():
            dict(model.named_parameters())[name].copy_(t)
    theta_r = _newton_fit(model, lam, retain)
    obj = SupervisedObjective(F.binary_cross_entropy_with_logits, weight_decay=lam)

    def score(m: nn.Module) -> float:
        return -float((flat(m) - theta_r).norm())

    kw = {"method": "original", "damping": 0.0, "solver": "dense", "validation": score}
    one = remove(model, obj, retain, forget, **kw)
    more = remove(model, obj, retain, forget, iterations=4, **kw)
    steps = more.record.extra["iterations"]
    assert 1 <= len(steps) <= 3 and steps[0]["kept"]
    d_one = float((flat(one.model) - theta_r).norm())
    d_more = float((flat(more.model) - theta_r).norm())
    assert d_more < 0.2 * d_one, (d_more, d_one)
    assert more.record.compute.example_gradients > one.record.compute.example_gradients
    assert "iterations" not in one.record.extra


def test_iterations_must_be_a_positive_int(linreg):
    model, obj, retain, forget = linreg
    for bad in (0, 1.5, -2):
        with pytest.raises(InputError, match="iterations must be a positive int"):
            remove(model, obj, retain, forget, iterations=bad)
