"""sBG: Fader & Hardie (2007) estimates on their two cohorts, predictions, recovery."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from custdyn.models import ShiftedBetaGeo

# survivors of 1000 customers per year, Fader & Hardie (2007), "How to project customer retention"
REGULAR = [1000, 631, 468, 382, 326, 289, 262, 241]
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491]


@pytest.mark.parametrize(("surv", "alpha", "beta"), [(REGULAR, 0.704, 1.182), (HIGH_END, 0.668, 3.806)])
def test_reproduces_published_estimates(surv: list[int], alpha: float, beta: float) -> None:
    m = ShiftedBetaGeo().fit(*ShiftedBetaGeo.from_survivors(surv))
    assert f"{m.params_['alpha']:.3g}" == f"{alpha:.3g}"
    assert f"{m.params_['beta']:.3g}" == f"{beta:.3g}"
    assert m.converged_
    # log-likelihood written out by hand
    a, b = m.params_["alpha"], m.params_["beta"]
    lost = -np.diff(surv)
    t = np.arange(1, len(surv))
    ll = (lost * (special.betaln(a + 1, b + t - 1) - special.betaln(a, b))).sum() + surv[-1] * (
        special.betaln(a, b + len(surv) - 1) - special.betaln(a, b)
    )
    assert m.log_likelihood_ == pytest.approx(ll, rel=1e-12)


def test_predictions_consistent() -> None:
    m = ShiftedBetaGeo().set_params(alpha=0.704, beta=1.182)
    t = np.arange(1, 30)
    s = m.survival(np.arange(0, 30))
    np.testing.assert_allclose(-np.diff(s), m.churn_probability(t), rtol=1e-10)
    np.testing.assert_allclose(s[1:] / s[:-1], m.retention_rate(t), rtol=1e-10)
    assert m.p_alive(5, 3)[0] == pytest.approx(s[8] / s[5])
    # discounted residual payments: closed form equals the direct sum
    d = 0.1
    direct = sum(s[5 + k] / s[5] / (1 + d) ** k for k in range(1, 25)) + sum(
        m.survival(5 + k)[0] / s[5] / (1 + d) ** k for k in range(25, 2000)
    )
    assert m.expected_residual_payments(5, d)[0] == pytest.approx(direct, rel=1e-8)
    assert m.expected_residual_payments(5, d, horizon=24)[0] == pytest.approx(
        sum(s[5 + k] / s[5] / (1 + d) ** k for k in range(1, 25)), rel=1e-10
    )


def test_recovers_simulated_parameters() -> None:
    gen = ShiftedBetaGeo().set_params(alpha=0.7, beta=1.2)
    periods, churned = gen.sample(1_000_000, 12, seed=3)
    m = ShiftedBetaGeo().fit(periods, churned)
    for k, v in {"alpha": 0.7, "beta": 1.2}.items():
        assert abs(m.params_[k] - v) < 3 * m.standard_errors_[k]
