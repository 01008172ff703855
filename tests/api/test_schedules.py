"""fastmlp.optim.schedules: values against numbers computed by hand (literals, not the
schedule's own formula), argument checks, configs, and schedules inside fit: the counter
starts at 0, counts epochs or steps (PowerDecay: samples), carries across fits, and
History's "lr" is the rate of each epoch's last step (docs/conventions.md)."""
import numpy as np
import pytest

import fastmlp
from fastmlp import Dense, Sequential
from fastmlp.optim.optimizers import SGD, Adam
from fastmlp.optim.schedules import (ExponentialDecay, InverseTimeDecay, PowerDecay, StepDecay,
                               from_config, to_config)
from helpers import assert_close, make_data

# e^-x to 17 digits (30-digit decimal exp): e^-0.25, e^-0.5, e^-1
E_QUARTER, E_HALF, E_ONE = 0.77880078307140487, 0.60653065971263342, 0.36787944117144232

CASES = [
    # StepDecay(0.1, factor=0.5, every=3): 0.1 * 0.5^floor(t/3)
    (StepDecay(0.1, 0.5, every=3), {0: 0.1, 2: 0.1, 3: 0.05, 5: 0.05, 6: 0.025, 10: 0.0125}),
    (StepDecay(2.0, 0.1), {0: 2.0, 1: 0.2, 3: 0.002}),
    # ExponentialDecay(0.1, k=0.5): 0.1 e^(-t/2)
    (ExponentialDecay(0.1, k=0.5), {0: 0.1, 1: 0.1 * E_HALF, 2: 0.1 * E_ONE}),
    # every=2: s = t/2, so t = 1 gives 0.1 e^-0.25
    (ExponentialDecay(0.1, k=0.5, every=2), {1: 0.1 * E_QUARTER, 4: 0.1 * E_ONE}),
    # staircase: s = floor(t/2): t = 1 -> 0, t = 3 -> 1 (0.1 e^-0.5)
    (ExponentialDecay(0.1, k=0.5, every=2, staircase=True),
     {0: 0.1, 1: 0.1, 2: 0.1 * E_HALF, 3: 0.1 * E_HALF, 4: 0.1 * E_ONE}),
    (ExponentialDecay(0.3, k=0.0), {0: 0.3, 1000: 0.3}),
    # InverseTimeDecay(0.1, k=0.5): 0.1 / (1 + t/2): t = 2 -> 0.05, t = 6 -> 0.025
    (InverseTimeDecay(0.1, k=0.5), {0: 0.1, 2: 0.05, 6: 0.025}),
    # every=4: 0.1 / (1 + t/8): t = 2 -> 0.1/1.25 = 0.08, t = 8 -> 0.1/2
    (InverseTimeDecay(0.1, k=0.5, every=4), {2: 0.08, 4: 0.1 / 1.5, 8: 0.05}),
    # staircase: s = floor(t/4): t = 7 -> 1 -> 0.1/1.5; t = 8 -> 2 -> 0.05
    (InverseTimeDecay(0.1, k=0.5, every=4, staircase=True), {3: 0.1, 7: 0.1 / 1.5, 8: 0.05}),
    # PowerDecay(0.01): 0.01 / sqrt(t + 1): t = 3 -> 0.005, t = 99 -> 0.001
    (PowerDecay(0.01), {0: 0.01, 3: 0.005, 24: 0.002, 99: 0.001}),
    # power_t = 0.25: 0.01 / (t + 1)^(1/4): t = 15 -> 0.005, t = 80 -> 0.01/3
    (PowerDecay(0.01, power_t=0.25), {15: 0.005, 80: 0.01 / 3}),
]


@pytest.mark.parametrize("schedule, values", CASES, ids=[repr(c[0]) for c in CASES])
def test_values_by_hand(schedule, values):
    for t, expected in values.items():
        assert_close(schedule(t), expected, "literal", "float64")


def test_every_docstring_states_its_formula():
    assert "lr0 * factor ** floor(t / every)" in StepDecay.__doc__
    assert "lr0 * exp(-k * s)" in ExponentialDecay.__doc__
    assert "lr0 / (1 + k * s)" in InverseTimeDecay.__doc__
    assert "lr0 / (t + 1) ** power_t" in PowerDecay.__doc__


@pytest.mark.parametrize("make, error, match", [
    (lambda: StepDecay(0, 0.5), ValueError, r"initial_learning_rate must be a positive"),
    (lambda: StepDecay(0.1, 1.5), ValueError, r"factor must be in \(0, 1\]; got 1.5"),
    (lambda: StepDecay(0.1, 0.0), ValueError, r"factor must be a positive finite number"),
    (lambda: StepDecay(0.1, 0.5, every=0), ValueError, r"every must be an integer >= 1; got 0"),
    (lambda: ExponentialDecay(0.1, k=-1), ValueError, r"k must be a finite number >= 0; got -1"),
    (lambda: ExponentialDecay(0.1, k="1"), TypeError, r"k must be .* of type str"),
    (lambda: ExponentialDecay(0.1, k=1, every=2.0), TypeError, r"every must be an integer"),
    (lambda: InverseTimeDecay(0.1, k=1, staircase=1), TypeError,
     r"staircase must be True or False; got 1"),
    (lambda: InverseTimeDecay(0.1, k=1, per="batch"), ValueError,
     r"unknown per 'batch'; expected one of \['epoch', 'step'\]"),
    (lambda: PowerDecay(0.1, power_t=float("inf")), ValueError, r"power_t must be a finite"),
    (lambda: PowerDecay(0.1)(-1), ValueError, r"t must be an integer >= 0; got -1"),
    (lambda: PowerDecay(0.1)(1.5), TypeError, r"t must be an integer >= 0; got 1.5"),
])
def test_arguments_are_checked(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("schedule", [c[0] for c in CASES])
def test_config_round_trip(schedule):
    again = from_config(to_config(schedule))
    assert again == schedule and again is not schedule
    assert type(schedule)(**schedule.get_config()) == schedule
    assert repr(again) == repr(schedule)


def test_from_config_refuses_unknown_classes():
    with pytest.raises(ValueError, match=r"unknown schedule 'CosineDecay'"):
        from_config({"class": "CosineDecay", "config": {}})
    with pytest.raises(ValueError, match=r"keys 'class' and 'config'"):
        from_config({"class": "StepDecay"})


# --------------------------------------------------------------------------------------
# Inside an optimizer and fit
# --------------------------------------------------------------------------------------
X, Y = make_data("softmax_cross_entropy", n=24)


def model():
    return Sequential([Dense(5, "tanh"), Dense(3)], input_dim=4, backend="numpy",
                      dtype="float64", seed=1)


def test_per_epoch_counter_starts_at_0_and_carries_across_fits():
    m = model()
    opt = SGD(StepDecay(0.1, 0.5, every=2))
    # epochs 1..5 train at t = 0..4: 0.1 * 0.5^(0, 0, 1, 1, 2)
    h = m.fit(X, Y, epochs=5, batch_size=8, optimizer=opt)
    assert h.history["lr"] == [0.1, 0.1, 0.05, 0.05, 0.025]
    h = m.fit(X, Y, epochs=2, batch_size=8)                 # t = 5, 6: 0.025, 0.0125
    assert h.history["lr"] == [0.025, 0.0125]
    assert opt.epochs == 7 and opt.iterations == 21


def test_per_step_history_reports_the_epochs_last_step():
    """3 steps per epoch; epoch e's last step is t = 3e - 1: floor(t / 4) = 0, 1, 2."""
    opt = SGD(ExponentialDecay(0.1, k=0.5, every=4, staircase=True, per="step"))
    h = model().fit(X, Y, epochs=3, batch_size=8, optimizer=opt)
    assert_close(h.history["lr"], [0.1, 0.1 * E_HALF, 0.1 * E_ONE], "literal", "float64")
    assert_close(opt.current_learning_rate, 0.1 * E_ONE, "literal", "float64")  # t = 9


def test_power_decay_counts_samples_like_scikit_learn():
    """24 samples per epoch: epoch e trains at 0.01 / sqrt(24 (e - 1) + 1), i.e. 0.01,
    0.01/5, 0.01/7 (scikit-learn's invscaling updates at epoch ends). Per step (batches
    of 8): the epoch's last step has seen 16, 40 samples before it: 0.01/sqrt(17),
    0.01/sqrt(41)."""
    h = model().fit(X, Y, epochs=3, batch_size=8, optimizer=SGD(PowerDecay(0.01)))
    assert_close(h.history["lr"], [0.01, 0.002, 0.01 / 7], "literal", "float64")
    h = model().fit(X, Y, epochs=2, batch_size=8,
                    optimizer=SGD(PowerDecay(0.01, per="step")))
    # sqrt(17) = 4.1231056256176605, sqrt(41) = 6.4031242374328485
    assert_close(h.history["lr"], [0.01 / 4.1231056256176605, 0.01 / 6.4031242374328485],
                 "literal", "float64")


def test_schedule_drives_the_updates():
    """Two epochs of SGD(StepDecay(0.1, 0.5)) == one epoch at 0.1, one at 0.05, bitwise."""
    scheduled, manual = model(), model()
    scheduled.fit(X, Y, epochs=2, batch_size=8, shuffle=False,
                  optimizer=SGD(StepDecay(0.1, 0.5)))
    manual.fit(X, Y, epochs=1, batch_size=8, shuffle=False, learning_rate=0.1)
    manual.fit(X, Y, epochs=1, batch_size=8, shuffle=False, learning_rate=0.05)
    np.testing.assert_array_equal(scheduled._params, manual._params)


def test_scale_multiplies_the_schedule_and_is_saved():
    opt = Adam(StepDecay(0.1, 0.5))
    opt.scale = 0.5                          # what ReduceLROnPlateau will do
    h = model().fit(X, Y, epochs=2, batch_size=24, optimizer=opt)
    assert h.history["lr"] == [0.05, 0.025]
    state = opt.state_dict()
    assert state["scale"] == 0.5
    again = Adam()
    again.load_state_dict(state)
    assert again.scale == 0.5 and again.current_learning_rate == 0.1 * 0.25 * 0.5


def test_fit_accepts_a_schedule_as_learning_rate():
    m = model()
    h = m.fit(X, Y, epochs=2, batch_size=24, optimizer="adam",
              learning_rate=InverseTimeDecay(0.01, k=1.0))
    assert h.history["lr"] == [0.01, 0.005]
    assert isinstance(m.optimizer, fastmlp.Adam)
