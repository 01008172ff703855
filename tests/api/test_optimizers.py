"""fastmlp.optim.optimizers: hand-worked first steps of the NumPy oracle, Nesterov against the
notes' look-ahead form, convergence on a convex quadratic and on Rosenbrock, clipping,
the finite-gradient check, state_dict/load_state_dict (bit-for-bit resumes, also through
fit), argument checks and fit's optimizer= contract (docs/conventions.md).

The native kernels against the oracle, per ISA and dtype: tests/kernels/test_optimizers.py.
"""
import math

import numpy as np
import pytest

import fastmlp
from fastmlp import Dense, Sequential
from fastmlp.backends import get_backend
from fastmlp.optim.optimizers import (OPTIMIZERS, SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov,
                                RMSProp, get_optimizer)
from fastmlp.optim.schedules import ExponentialDecay, InverseTimeDecay
from helpers import assert_close, make_data

NAMES = list(OPTIMIZERS)


def numpy_backend():
    return get_backend("numpy")


# --------------------------------------------------------------------------------------
# The oracle's first two steps, by hand. p0 = (1, -2); g1 = (0.5, 0.25); g2 = (-0.5, 1).
# Each row: optimizer, then p after step 1 and after step 2 with the arithmetic.
# --------------------------------------------------------------------------------------
P0, G1, G2 = [1.0, -2.0], [0.5, 0.25], [-0.5, 1.0]
HAND_WORKED = [
    # p -= 0.1 g: (1 - 0.05, -2 - 0.025); then (0.95 + 0.05, -2.025 - 0.1)
    (SGD(0.1), [0.95, -2.025], [1.0, -2.125]),
    # v = -0.1 g1 = (-0.05, -0.025), p += v; v = 0.9 v - 0.1 g2 = (-0.045 + 0.05,
    # -0.0225 - 0.1) = (0.005, -0.1225), p = (0.95 + 0.005, -2.025 - 0.1225)
    (Momentum(0.1), [0.95, -2.025], [0.955, -2.1475]),
    # v = (-0.05, -0.025); p += -0.9*0 + 1.9 v = (-0.095, -0.0475).
    # v_prev = (-0.05, -0.025), v = (0.005, -0.1225); p += -0.9 v_prev + 1.9 v
    # = (0.045 + 0.0095, 0.0225 - 0.23275) = (0.0545, -0.21025)
    (Nesterov(0.1), [0.905, -2.0475], [0.9595, -2.25775]),
    # h = (0.25, 0.0625); p -= 0.1 g / (sqrt h + 1e-8) = (0.05 / 0.50000001,
    # 0.025 / 0.25000001) = (0.099999998, 0.099999996) -> (0.900000002, -2.099999996).
    # h = (0.5, 1.0625), sqrt h = (0.70710678118654752, 1.03077640640441513);
    # steps (-0.05 / 0.70710679118654752, 0.1 / 1.03077641640441513)
    # = (-0.0707106771186547, 0.0970142490733569)
    (AdaGrad(0.1), [0.900000002, -2.099999996], [0.9707106791186547, -2.197014245073357]),
    # h = 0.1 g^2 = (0.025, 0.00625), sqrt h = (0.158113883008419, 0.0790569415042095);
    # steps 0.01 g / (sqrt h + 1e-8) = (0.0316227746016839, 0.0316227726016843).
    # h = 0.9 h + 0.1 g2^2 = (0.0475, 0.105625), sqrt h = (0.217944947177034,
    # 0.325000000000000 (0.325^2 = 0.105625)); steps (-0.005 / 0.217944957177034,
    # 0.01 / 0.32500001) = (-0.0229415722, 0.0307692298)
    (RMSProp(0.01), [0.968377225398316, -2.0316227726016844],
     [0.9913187977327407, -2.0623920024241698]),
    # m = 0.1 g, v = 0.001 g^2, so m/(1-0.9) = g and v/(1-0.999) = g^2: the step is
    # 0.1 g / (|g| + 1e-8), as AdaGrad's first. Step 2: m = 0.9 m + 0.1 g2 = (-0.005,
    # 0.1225), v = 0.999 v + 0.001 g2^2 = (0.00049975, 0.0010624375); 1 - 0.9^2 = 0.19,
    # 1 - 0.999^2 = 0.001999: m_hat = (-0.0263157894736842, 0.644736842105263),
    # v_hat = (0.25, 0.531484492246123), sqrt = (0.5, 0.729029829181048);
    # steps 0.1 m_hat / (sqrt + 1e-8) = (-0.00526315778947368, 0.0884376478445128)
    (Adam(0.1), [0.900000002, -2.099999996], [0.9052631597894737, -2.188437643844513]),
    # first p -= 0.1 * 0.01 p = 0.999 p = (0.999, -1.998), then Adam's step:
    # (0.999 - 0.099999998, -1.998 - 0.099999996). Step 2: 0.999 p = (0.898101001998,
    # -2.095901996004), minus Adam's step 2 from above.
    (AdamW(0.1), [0.899000002, -2.097999996], [0.9033641597874736, -2.1843396438485128]),
]


@pytest.mark.parametrize("opt, after_1, after_2", HAND_WORKED,
                         ids=[type(row[0]).__name__ for row in HAND_WORKED])
def test_oracle_first_steps_by_hand(opt, after_1, after_2):
    backend = numpy_backend()
    p = np.array(P0)
    opt.step(backend, p, np.array(G1))
    assert_close(p, after_1, "hand_worked", "float64")
    opt.step(backend, p, np.array(G2))
    assert_close(p, after_2, "hand_worked", "float64")
    assert opt.iterations == 2


def test_hand_worked_state_after_two_steps():
    """The state arrays hold what the comments above say (Adam: m and v of step 2)."""
    opt, backend = Adam(0.1), numpy_backend()
    p = np.array(P0)
    for g in (G1, G2):
        opt.step(backend, p, np.array(g))
    assert_close(opt.m, [-0.005, 0.1225], "hand_worked", "float64")
    assert_close(opt.v, [0.00049975, 0.0010624375], "hand_worked", "float64")
    assert SGD().m is None and SGD().v is None


# --------------------------------------------------------------------------------------
# Nesterov against the look-ahead form of the notes, on a quadratic
# --------------------------------------------------------------------------------------
A = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])   # eigenvalues 0.71..3.6
B = np.array([1.0, -2.0, 0.5])
MINIMUM = np.linalg.solve(A, B)          # of f(x) = x^T A x / 2 - b^T x, gradient A x - b


def quadratic_gradient(p):
    return A @ p - B


def test_nesterov_is_the_look_ahead_form():
    """Notes: v = mu v - lr grad(x + mu v); x += v. Our p is their x + mu v."""
    lr, mu = 0.05, 0.9
    opt, backend = Nesterov(lr, momentum=mu), numpy_backend()
    x, v = np.array([2.0, -1.0, 3.0]), np.zeros(3)
    p = x.copy()                                        # v = 0: x + mu v = x
    for _ in range(50):
        v = mu * v - lr * quadratic_gradient(x + mu * v)
        x = x + v
        opt.step(backend, p, quadratic_gradient(p))
        assert_close(p, x + mu * v, "equivalent_forms", "float64")
        assert_close(opt.m, v, "equivalent_forms", "float64")
    # ... and not the plain momentum iteration, which takes another path
    plain, q = Momentum(lr, momentum=mu), np.array([2.0, -1.0, 3.0])
    for _ in range(50):
        plain.step(backend, q, quadratic_gradient(q))
    assert np.linalg.norm(q - p) > 1e-3


# --------------------------------------------------------------------------------------
# Convergence (float64 arrays driven through the Backend methods, both backends)
# --------------------------------------------------------------------------------------
QUADRATIC_STEPS, QUADRATIC_DISTANCE = 5_000, 1e-6
ROSENBROCK_STEPS, ROSENBROCK_DISTANCE = 50_000, 1e-2

QUADRATIC_TABLE = {   # steps used (numpy backend) in the comment
    "sgd": lambda: SGD(0.3),                        # 62
    "momentum": lambda: Momentum(0.05),             # 262
    "nesterov": lambda: Nesterov(0.05),             # 182
    "adagrad": lambda: AdaGrad(0.5),                # 68
    # A constant rate leaves RMSProp hovering ~lr away (its step is ~lr * g/rms(g)), so
    # the rate decays per step: 0.01 e^(-0.005 t).
    "rmsprop": lambda: RMSProp(ExponentialDecay(0.01, k=0.005, per="step")),   # 1803
    "adam": lambda: Adam(0.01),                     # 790
    "adamw": lambda: AdamW(0.01, weight_decay=0.0),  # 790
}
ROSENBROCK_TABLE = {
    "momentum": lambda: Momentum(1e-4),     # 10413
    "nesterov": lambda: Nesterov(1e-4),     # 10935
    "rmsprop": lambda: RMSProp(1e-3),       # 4959
    "adam": lambda: Adam(1e-2),             # 4914
}


def minimize(opt, backend_name, start, gradient, target, distance, steps):
    """Steps until within ``distance`` of ``target``; returns the steps taken (or None)."""
    backend = get_backend(backend_name)
    p, g = np.array(start, dtype=np.float64), np.empty(len(start))
    for step in range(1, steps + 1):
        g[:] = gradient(p)
        opt.step(backend, p, g)
        if np.linalg.norm(p - target) < distance:
            return step
    return None


@pytest.mark.parametrize("name", NAMES)
def test_every_optimizer_reaches_a_quadratic_minimum(name, backend_name):
    steps = minimize(QUADRATIC_TABLE[name](), backend_name, [0.0, 0.0, 0.0],
                     quadratic_gradient, MINIMUM, QUADRATIC_DISTANCE, QUADRATIC_STEPS)
    assert steps is not None, f"{name} not within {QUADRATIC_DISTANCE} in {QUADRATIC_STEPS}"
    assert steps > 10       # it had to travel: the start is not already at the minimum


def rosenbrock_gradient(p):
    """f = (1 - x)^2 + 100 (y - x^2)^2, minimum at (1, 1)."""
    x, y = p
    return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


@pytest.mark.parametrize("name", list(ROSENBROCK_TABLE))
def test_rosenbrock_from_1_5(name, backend_name):
    steps = minimize(ROSENBROCK_TABLE[name](), backend_name, [1.5, 1.5], rosenbrock_gradient,
                     np.ones(2), ROSENBROCK_DISTANCE, ROSENBROCK_STEPS)
    assert steps is not None, f"{name} not within {ROSENBROCK_DISTANCE} of (1, 1)"


def test_adamw_decayed_fixed_point(backend_name):
    """A linear loss g . p (constant gradient g): Adam's bias-corrected step is exactly
    lr g/(|g| + eps) every step, so AdamW iterates p <- (1 - lr wd) p - lr g/(|g| + eps),
    whose fixed point is p* = -g / (wd (|g| + eps)). With g = (2, -0.5), wd = 0.1:
    p* = (-10 * 2/2.00000001, 10 * 0.5/0.50000001) = (-9.99999995, 9.9999998). (Decay
    coupled into the gradient, g + wd p = 0, would stop at (-20, 5) instead.)"""
    opt, backend = AdamW(0.1, weight_decay=0.1), get_backend(backend_name)
    p, g = np.zeros(2), np.array([2.0, -0.5])
    for _ in range(5_000):                   # contraction 0.99 per step: 0.99^5000 ~ 1e-22
        opt.step(backend, p, g)
    np.testing.assert_allclose(p, [-9.99999995, 9.9999998], rtol=1e-12)


# --------------------------------------------------------------------------------------
# Clipping and the finite-gradient check
# --------------------------------------------------------------------------------------
def update_of(opt, backend, p, g, steps=3):
    """The parameter change over ``steps`` steps with the same gradient g."""
    q = p.copy()
    for _ in range(steps):
        opt.step(backend, q, g.copy())
    return q - p


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_clipping_scales_a_long_gradient_and_leaves_a_short_one(name, dtype, backend_name):
    backend = get_backend(backend_name)
    rng = np.random.default_rng(4)
    p = rng.normal(size=50).astype(dtype)
    g = rng.normal(size=50).astype(dtype)
    norm = math.sqrt(float(np.sum(g.astype(np.float64) ** 2)))
    cls = OPTIMIZERS[name]
    # above the threshold: the update of g * (max_norm / ||g||) without clipping
    clipped = update_of(cls(0.01, clipnorm=0.5 * norm), backend, p, g)
    expected = update_of(cls(0.01), backend, p, (g * (0.5 * norm / norm)).astype(dtype))
    assert_close(clipped, expected, "same_math", dtype)
    if name not in ("adagrad", "rmsprop", "adam", "adamw"):   # scale-invariant ones
        assert not np.allclose(clipped, update_of(cls(0.01), backend, p, g))
    # below it: bit for bit the unclipped update
    np.testing.assert_array_equal(update_of(cls(0.01, clipnorm=2 * norm), backend, p, g),
                                  update_of(cls(0.01), backend, p, g))


def test_clipping_changes_a_scale_invariant_optimizer_through_its_history():
    """Adam normalizes g, but a clipped large gradient followed by an unclipped small
    one weighs differently in m and v than without clipping."""
    backend = numpy_backend()
    p0, big, small = np.zeros(2), np.array([30.0, 40.0]), np.array([0.3, -0.1])
    runs = []
    for clipnorm in (None, 1.0):
        p = p0.copy()
        opt = Adam(0.1, clipnorm=clipnorm)
        opt.step(backend, p, big)
        opt.step(backend, p, small)
        runs.append(p)
    assert not np.allclose(runs[0], runs[1])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", NAMES)
def test_non_finite_gradient_raises_before_any_change(name, bad, backend_name):
    backend = get_backend(backend_name)
    opt = get_optimizer(name)
    p, g = np.linspace(-1, 1, 40), np.linspace(0.5, -0.3, 40)
    for _ in range(2):                            # some state to keep
        opt.step(backend, p, g)
    before = opt.state_dict()
    params = p.copy()
    g[17] = bad
    with pytest.raises(fastmlp.DivergenceError, match=r"the gradient is not finite .* at "
                       r"optimizer step 3 .* unchanged"):
        opt.step(backend, p, g)
    np.testing.assert_array_equal(p, params)
    after = opt.state_dict()
    for key in before:
        if isinstance(before[key], np.ndarray):
            np.testing.assert_array_equal(after[key], before[key])
        else:
            assert after[key] == before[key], key


def test_fit_stops_on_a_non_finite_gradient_with_finite_loss(backend_name):
    """float32: w = 1e-20, x = 1e30 gives z = 1e10 and a finite loss, but dL/dw = 2 z x
    = 2e40 overflows. The optimizer's check stops fit with the weights unchanged."""
    m = Sequential([Dense(1)], input_dim=1, loss="mse", backend=backend_name,
                   dtype="float32", seed=0)
    m.set_weights([np.array([[1e-20]]), np.array([0.0])])
    before = m._params.copy()
    X, y = np.full((4, 1), 1e30), np.zeros(4)
    with pytest.raises(fastmlp.DivergenceError, match=r"training diverged at epoch 1, step 1 "
                       r"of 1: the gradient is not finite"), pytest.warns(fastmlp.DataScaleWarning):
        m.fit(X, y, epochs=1, batch_size=None)
    np.testing.assert_array_equal(m._params, before)
    assert m.optimizer.iterations == 0


# --------------------------------------------------------------------------------------
# state_dict / load_state_dict
# --------------------------------------------------------------------------------------
SCHEDULED = {   # every optimizer with a per-step schedule and clipping: all of the state
    name: (lambda cls=cls: cls(ExponentialDecay(0.01, k=0.1, every=3, staircase=True,
                                                per="step"), clipnorm=0.8))
    for name, cls in OPTIMIZERS.items()}


def gradient_sequence(n, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=n) for _ in range(steps)]


@pytest.mark.parametrize("name", NAMES)
def test_resume_from_state_dict_is_bitwise(name, backend_name):
    backend = get_backend(backend_name)
    grads = gradient_sequence(30, 20)
    opt, p = SCHEDULED[name](), np.linspace(-1, 1, 30)
    for g in grads[:10]:
        opt.step(backend, p, g, samples=4)
    saved, saved_p = opt.state_dict(), p.copy()
    for g in grads[10:]:
        opt.step(backend, p, g, samples=4)
    resumed = OPTIMIZERS[name]()                 # default config: load restores it all
    resumed.load_state_dict(saved)
    assert resumed.get_config() == SCHEDULED[name]().get_config()
    q = saved_p.copy()
    for g in grads[10:]:
        resumed.step(backend, q, g, samples=4)
    np.testing.assert_array_equal(q, p)
    final, again = opt.state_dict(), resumed.state_dict()
    assert final.keys() == again.keys()
    for key in final:
        if isinstance(final[key], np.ndarray):
            np.testing.assert_array_equal(again[key], final[key])
        else:
            assert again[key] == final[key], key
    assert again["iterations"] == 20 and again["samples"] == 80


def test_state_dict_is_plain_data_and_a_copy():
    opt, backend = Adam(), numpy_backend()
    p = np.ones(3)
    opt.step(backend, p, np.ones(3))
    state = opt.state_dict()
    assert state["optimizer"] == "adam" and state["scale"] == 1.0
    assert state["config"] == {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
                               "eps": 1e-8, "eps_placement": "after_correction",
                               "clipnorm": None}
    state["m"][:] = 7.0
    assert not (opt.m == 7.0).any()
    scheduled = SGD(InverseTimeDecay(0.1, k=0.5, per="step")).state_dict()
    assert scheduled["config"]["learning_rate"] == {
        "class": "InverseTimeDecay",
        "config": {"initial_learning_rate": 0.1, "k": 0.5, "every": 1, "staircase": False,
                   "per": "step"}}
    assert scheduled["m"] is None and scheduled["v"] is None


def good_state():
    opt = Adam()
    opt.step(numpy_backend(), np.ones(3), np.ones(3))
    return opt.state_dict()


@pytest.mark.parametrize("change, error, match", [
    (dict(optimizer="sgd"), ValueError, r"state is of a 'sgd' optimizer; this one is 'adam'"),
    (dict(m=np.ones(3, np.int64)), TypeError, r"state\['m'\] must be a 1-D float32 or float64"),
    (dict(v=np.ones(4)), ValueError, r"state\['m'\] and state\['v'\] must have one shape"),
    (dict(m=None), ValueError, r"state\['m'\] is None after 1 steps"),
    (dict(iterations=-1), ValueError, r"state\['iterations'\] must be an integer >= 0"),
    (dict(scale=0.0), ValueError, r"state\['scale'\] must be a positive finite number"),
    (dict(epoch_start_samples=5), ValueError, r"epoch_start_samples'\] must be <="),
    (dict(config={"learning_rate": -1.0}), ValueError, r"learning_rate must be a positive"),
    (dict(extra=1), ValueError, r"unexpected \['extra'\]"),
])
def test_load_state_dict_checks_and_changes_nothing_on_error(change, error, match):
    opt = Adam(0.5)
    opt.step(numpy_backend(), np.zeros(3), np.full(3, 2.0))
    before = opt.state_dict()
    with pytest.raises(error, match=match):
        opt.load_state_dict({**good_state(), **change})
    after = opt.state_dict()
    assert after["config"] == before["config"] and after["iterations"] == 1
    np.testing.assert_array_equal(after["m"], before["m"])


def test_a_state_dict_without_eps_placement_restores_the_default():
    """State saved before Adam had eps_placement continues with "after_correction"."""
    state = Adam(0.01).state_dict()
    del state["config"]["eps_placement"]
    opt = Adam(0.01, eps_placement="before_correction")
    opt.load_state_dict(state)
    assert opt.eps_placement == "after_correction"


# mu = 1 (scikit-learn's upper end): the velocity never decays, v = v - lr*g. From
# p = 1, g = 2 then 4, lr = 0.1: Momentum v = -0.2, p = 0.8; v = -0.6, p = 0.2. Nesterov
# p += -v_prev + 2 v: p = 1 - 0.4 = 0.6; then v = -0.6, p = 0.6 + 0.2 - 1.2 = -0.4.
@pytest.mark.parametrize("opt, after", [(Momentum(0.1, momentum=1.0), [0.8, 0.2]),
                                        (Nesterov(0.1, momentum=1.0), [0.6, -0.4])],
                         ids=["momentum", "nesterov"])
def test_momentum_one_by_hand(opt, after):
    backend, p = numpy_backend(), np.ones(1)
    for g, want in zip((2.0, 4.0), after):
        opt.step(backend, p, np.array([g]))
        assert_close(p, [want], "hand_worked", "float64")


def test_beta_zero_is_adam_without_a_moment():
    """beta_1 = 0: m = g; beta_2 = 0: v = g^2 (no correction: 1 - 0^t = 1). The step is
    lr * g / (|g| + eps) in either placement."""
    for placement in ("after_correction", "before_correction"):
        opt, p = Adam(0.1, beta_1=0.0, beta_2=0.0, eps=1.0, eps_placement=placement), np.ones(2)
        opt.step(numpy_backend(), p, np.array([3.0, -1.0]))
        assert_close(p, [1 - 0.3 / 4, 1 + 0.1 / 2], "hand_worked", "float64")
        np.testing.assert_array_equal(opt.m, [3.0, -1.0])
        np.testing.assert_array_equal(opt.v, [9.0, 1.0])


def test_load_state_dict_refuses_state_for_a_non_momentum_optimizer():
    state = SGD().state_dict()
    with pytest.raises(ValueError, match=r"state\['m'\] must be None: SGD keeps no m"):
        SGD().load_state_dict({**state, "m": np.zeros(3)})
    with pytest.raises(ValueError, match=r"missing \['v'\]"):
        SGD().load_state_dict({k: v for k, v in state.items() if k != "v"})


def test_state_belongs_to_one_model():
    opt, backend = Momentum(), numpy_backend()
    opt.step(backend, np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match=r"state m holds 3 float64 values but the parameters "
                                         r"are 4 float64 values"):
        opt.step(backend, np.zeros(4), np.ones(4))
    with pytest.raises(ValueError, match=r"3 float64 values but the parameters are 3 float32"):
        opt.step(backend, np.zeros(3, np.float32), np.ones(3, np.float32))


def test_fit_refuses_another_models_optimizer_and_keeps_its_own():
    X, y = make_data("softmax_cross_entropy", n=20)
    a, b = model(), Sequential([Dense(3)], input_dim=4, backend="numpy", dtype="float64")
    a.fit(X, y, epochs=1, optimizer="adam")
    b.fit(X, y, epochs=1, optimizer="momentum")
    kept = b.optimizer
    with pytest.raises(ValueError, match=r"Adam's state m holds 51 float64 values but the "
                                         r"parameters are 15 float64 values"):
        b.fit(X, y, epochs=1, optimizer=a.optimizer)
    assert b.optimizer is kept


def model(backend="numpy", dtype="float64", seed=5):
    return Sequential([Dense(6, "tanh"), Dense(3)], input_dim=4, backend=backend, dtype=dtype,
                      seed=seed)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fit_resumes_from_saved_optimizer_state_bitwise(backend_name, dtype):
    """fit 2 epochs == fit 1, save the optimizer, a new model with the same weights
    loads it and fits 1 more (per-epoch schedule, clipping: the counters carry)."""
    X, y = make_data("softmax_cross_entropy", n=40)

    def adam():
        return Adam(ExponentialDecay(0.05, k=0.7), clipnorm=0.5)

    whole = model(backend_name, dtype)
    h = whole.fit(X, y, epochs=2, batch_size=8, shuffle=False, optimizer=adam())
    first = model(backend_name, dtype)
    h1 = first.fit(X, y, epochs=1, batch_size=8, shuffle=False, optimizer=adam())
    state = first.optimizer.state_dict()
    second = model(backend_name, dtype, seed=99)               # other initial weights
    second.set_weights(first.get_weights())
    opt = Adam()
    opt.load_state_dict(state)
    h2 = second.fit(X, y, epochs=1, batch_size=8, shuffle=False, optimizer=opt)
    np.testing.assert_array_equal(second._params, whole._params)
    assert h1.history["loss"] + h2.history["loss"] == h.history["loss"]
    assert h1.history["lr"] + h2.history["lr"] == h.history["lr"]
    assert h.history["lr"][1] == 0.05 * math.exp(-0.7)


# --------------------------------------------------------------------------------------
# fit's optimizer= contract (docs/conventions.md)
# --------------------------------------------------------------------------------------
def test_fit_keeps_reuses_and_replaces_the_optimizer():
    X, y = make_data("softmax_cross_entropy", n=20)
    m = model()
    assert m.optimizer is None
    m.fit(X, y, epochs=1)
    assert type(m.optimizer) is SGD and m.optimizer.learning_rate == 0.01   # default
    opt = Adam()
    m.fit(X, y, epochs=1, optimizer=opt)
    assert m.optimizer is opt and opt.iterations == 1                       # 20 / 32 -> 1 step
    m.fit(X, y, epochs=2)                                                   # reused
    assert m.optimizer is opt and opt.iterations == 3 and opt.epochs == 3
    m.fit(X, y, epochs=1, learning_rate=0.02)                  # a new rate, same state
    assert m.optimizer is opt and opt.learning_rate == 0.02 and opt.iterations == 4
    m.fit(X, y, epochs=1, optimizer="rmsprop")                 # a name: a new instance
    assert type(m.optimizer) is RMSProp and m.optimizer.learning_rate == 0.001
    assert m.optimizer.iterations == 1
    m.fit(X, y, epochs=1, optimizer="nesterov", learning_rate=0.3)
    assert type(m.optimizer) is Nesterov and m.optimizer.learning_rate == 0.3


@pytest.mark.parametrize("name, default", [("sgd", 0.01), ("momentum", 0.01),
                                           ("nesterov", 0.01), ("adagrad", 0.01),
                                           ("rmsprop", 0.001), ("adam", 0.001),
                                           ("adamw", 0.001)])
def test_defaults_of_design_section_4(name, default):
    opt = get_optimizer(name)
    assert opt.learning_rate == default and opt.clipnorm is None and opt.scale == 1.0
    config = opt.get_config()
    for key, value in (("momentum", 0.9), ("rho", 0.9), ("beta_1", 0.9), ("beta_2", 0.999),
                       ("eps", 1e-8), ("weight_decay", 0.01)):
        if key in config:
            assert config[key] == value, key
    assert ("weight_decay" in config) == (name == "adamw")


def test_instance_with_learning_rate_is_a_value_error_and_changes_nothing():
    X, y = make_data("softmax_cross_entropy", n=20)
    m = model()
    m.fit(X, y, epochs=1, learning_rate=0.5)
    kept = m.optimizer
    with pytest.raises(ValueError, match=r"learning_rate=0.1 was given together with an "
                                         r"optimizer instance"):
        m.fit(X, y, epochs=1, optimizer=Adam(), learning_rate=0.1)
    assert m.optimizer is kept and kept.learning_rate == 0.5 and kept.iterations == 1


@pytest.mark.parametrize("optimizer, error, match", [
    ("adamax", ValueError, r"unknown optimizer 'adamax'; expected one of \['sgd', "),
    (Adam, TypeError, r"optimizer must be a name"),
    (3, TypeError, r"optimizer must be a name"),
])
def test_fit_rejects_unknown_optimizers(optimizer, error, match):
    X, y = make_data("softmax_cross_entropy", n=20)
    with pytest.raises(error, match=match):
        model().fit(X, y, epochs=1, optimizer=optimizer)


def test_fit_trains_with_each_optimizer_on_both_backends(backend_name):
    X, y = make_data("softmax_cross_entropy", n=60, seed=3)
    for name in NAMES:
        m = model(backend_name, "float32")
        start = m.evaluate(X, y)["loss"]
        rate = 0.05 if name in ("rmsprop", "adam", "adamw") else 0.3
        m.fit(X, y, epochs=15, batch_size=10, optimizer=name, learning_rate=rate)
        assert m.evaluate(X, y)["loss"] < 0.5 * start, name


# --------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, error, match", [
    (lambda: SGD(0), ValueError, r"learning_rate must be a positive finite number; got 0"),
    (lambda: SGD(float("nan")), ValueError, r"learning_rate .* got nan"),
    (lambda: SGD("0.1"), TypeError, r"learning_rate must be a positive finite number or a "
                                    r"schedule .* got '0.1' of type str"),
    (lambda: SGD(lambda t: 0.1), TypeError, r"learning_rate .* of type function"),
    (lambda: SGD(clipnorm=0), ValueError, r"clipnorm must be a positive finite number; got 0"),
    (lambda: SGD(clipnorm=float("inf")), ValueError, r"clipnorm .* got inf"),
    (lambda: Momentum(momentum=1.5), ValueError, r"momentum must be a number with "
                                                 r"0 <= momentum <= 1; got 1.5"),
    (lambda: Nesterov(momentum=-0.1), ValueError, r"0 <= momentum <= 1; got -0.1"),
    (lambda: Momentum(momentum="0.9"), TypeError, r"momentum must be .* of type str"),
    (lambda: AdaGrad(eps=0), ValueError, r"eps must be a positive finite number; got 0"),
    (lambda: RMSProp(rho=0), ValueError, r"rho must be a number with 0 < rho < 1; got 0.0"),
    (lambda: RMSProp(rho=1), ValueError, r"0 < rho < 1; got 1.0"),
    (lambda: Adam(beta_1=1.0), ValueError, r"0 <= beta_1 < 1; got 1.0"),
    (lambda: Adam(beta_1=-0.1), ValueError, r"0 <= beta_1 < 1; got -0.1"),
    (lambda: Adam(beta_2=float("nan")), ValueError, r"0 <= beta_2 < 1; got nan"),
    (lambda: Adam(eps_placement="before"), ValueError,
     r"eps_placement must be one of \('after_correction', 'before_correction'\); "
     r"got 'before'"),
    (lambda: AdamW(eps_placement=None), ValueError, r"eps_placement must be one of"),
    (lambda: Adam(eps=-1e-8), ValueError, r"eps must be a positive finite number"),
    (lambda: AdamW(weight_decay=-0.01), ValueError, r"weight_decay must be a finite number "
                                                    r">= 0; got -0.01"),
    (lambda: AdamW(weight_decay=True), TypeError, r"weight_decay .* of type bool"),
])
def test_hyperparameters_are_checked(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_learning_rate_setter_is_checked():
    opt = SGD()
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = -1
    assert opt.learning_rate == 0.01


def test_exports():
    assert fastmlp.optim.optimizers.Adam is fastmlp.Adam
    assert fastmlp.train.loop.DivergenceError is fastmlp.DivergenceError
    assert issubclass(fastmlp.DivergenceError, FloatingPointError)
    assert repr(AdamW(clipnorm=1.0)) == ("AdamW(learning_rate=0.001, beta_1=0.9, beta_2=0.999, "
                                        "eps=1e-08, weight_decay=0.01, "
                                        "eps_placement='after_correction', clipnorm=1.0)")


# ------------------------------------------------- no subnormal state over a long run
class _StateWatch(fastmlp.callbacks.Callback):
    """After every epoch: the optimizer state's subnormal entries (must stay 0) and its
    entries that are exactly 0 (the decayed ones end there)."""

    def __init__(self):
        self.subnormal, self.zeros = [], []

    def on_epoch_end(self, epoch, logs=None):
        states = [s for s in (self.model.optimizer.m, self.model.optimizer.v) if s is not None]
        tiny = np.finfo(states[0].dtype).tiny
        self.subnormal.append(sum(int(np.count_nonzero((s != 0) & (np.abs(s) < tiny)))
                                  for s in states))
        self.zeros.append(sum(int(np.count_nonzero(s == 0)) for s in states))


@pytest.mark.parametrize("path", ["numpy", "native-per-op", "native-fused"])
@pytest.mark.parametrize("dtype, optimizer", [
    ("float32", lambda: Adam(1e-3)),                    # m decays by 0.9: subnormal ~ step 800
    ("float32", lambda: Momentum(0.01, momentum=0.9)),
    ("float64", lambda: Adam(1e-3, beta_1=0.45)),       # float64 needs a faster decay
], ids=["float32-adam", "float32-momentum", "float64-adam"])
def test_no_subnormal_state_after_a_thousand_steps(path, dtype, optimizer, monkeypatch):
    """A model built to produce them: inputs whose third column is 0 after the first
    steps, so the state of the weights it feeds decays geometrically through the subnormal
    range (without the rule it would hold subnormals for about a hundred steps before
    underflowing to 0). 1,000 whole-batch steps; after every one no entry is subnormal, and
    the decayed entries did reach exactly 0."""
    if path != "numpy":
        pytest.importorskip("fastmlp.backends.native")
    if path == "native-per-op":
        import fastmlp.train.loop
        monkeypatch.setattr(fastmlp.train.loop, "_FUSED", False)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 3))
    y = (X[:, 0] > 0).astype(int)
    model = Sequential([Dense(4, "tanh"), Dense(2)], input_dim=3, dtype=dtype, seed=0,
                       backend="numpy" if path == "numpy" else "native")
    opt = optimizer()
    model.fit(X, y, epochs=5, batch_size=None, optimizer=opt, shuffle=False, verbose=0)
    X[:, 2] = 0.0                          # its weights' gradients are exactly 0 from now on
    watch = _StateWatch()
    model.fit(X, y, epochs=995, batch_size=None, optimizer=opt, shuffle=False, verbose=0,
              callbacks=[watch])
    assert opt.iterations == 1000
    assert max(watch.subnormal) == 0
    assert watch.zeros[-1] > watch.zeros[0], "no state decayed to 0: the test would not see subnormals"
