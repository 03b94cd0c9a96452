"""PCA T^2|Q, the benchmark's anchor, on a case worked by hand.

Training rows (2, 2), (-2, -2), (1, -1), (-1, 1): mean 0, both standard deviations
sqrt(10/3) (ddof 1), correlation 0.6 after scaling, so the components are (1, 1)/sqrt 2 with
variance 1.6 and (1, -1)/sqrt 2 with variance 0.4. Keeping one, a row (x, y) has
T^2 = 3 (x + y)^2 / 20 / 1.6 and Q = 3 (x - y)^2 / 20. On the training rows T^2 is 1.5, 1.5,
0, 0 and Q 0, 0, 0.6, 0.6: the 99% quantiles (numpy's linear interpolation) are 1.5 and 0.6.
"""

import numpy as np
import pytest

from benchmarks.pca import Pca

TRAIN = np.array([[2.0, 2.0], [-2.0, -2.0], [1.0, -1.0], [-1.0, 1.0]])


def test_scaling_components_and_limits_match_the_hand_worked_values() -> None:
    pca = Pca.fit(TRAIN, components=1)
    assert pca.mean == pytest.approx([0.0, 0.0])
    assert pca.std == pytest.approx([np.sqrt(10 / 3)] * 2)
    assert pca.variances == pytest.approx([1.6])
    assert np.abs(pca.loadings[:, 0]) == pytest.approx([np.sqrt(0.5)] * 2)
    assert (pca.t2_limit, pca.q_limit) == pytest.approx((1.5, 0.6))


def test_t2_measures_along_the_kept_component_and_q_across_it() -> None:
    rows = np.array([[3.0, 3.0], [1.0, -1.0], [1.0, 1.0], [1.5, -1.5], [0.0, 0.0]])
    t2, q = Pca.fit(TRAIN, components=1).statistics(rows)
    assert t2 == pytest.approx([3.375, 0.0, 0.375, 0.0, 0.0])
    assert q == pytest.approx([0.0, 0.6, 0.0, 1.35, 0.0], abs=1e-12)


def test_a_row_is_flagged_when_t2_or_q_exceeds_its_limit() -> None:
    # (3, 3): T^2 3.375 > 1.5; (1, -1): Q 0.6, at its limit, not above; (1.5, -1.5): Q 1.35.
    rows = np.array([[3.0, 3.0], [1.0, -1.0], [1.0, 1.0], [1.5, -1.5], [0.0, 0.0]])
    assert Pca.fit(TRAIN, components=1).flags(rows).tolist() == [True, False, False, True, False]


def test_the_variables_are_scaled_with_the_training_rows_mean_and_deviation() -> None:
    # The same case shifted by (10, -5) and stretched by (3, 0.5): the same statistics.
    scale, shift = np.array([3.0, 0.5]), np.array([10.0, -5.0])
    pca = Pca.fit(TRAIN * scale + shift, components=1)
    rows = np.array([[3.0, 3.0], [1.5, -1.5]]) * scale + shift
    t2, q = pca.statistics(rows)
    assert t2 == pytest.approx([3.375, 0.0], abs=1e-9)
    assert q == pytest.approx([0.0, 1.35], abs=1e-9)


def test_a_variable_constant_in_training_gives_finite_statistics() -> None:
    train = np.column_stack([TRAIN, np.full(4, 7.0)])
    t2, q = Pca.fit(train, components=1).statistics(np.array([[3.0, 3.0, 7.0], [0, 0, 8.0]]))
    assert np.isfinite(t2).all()
    assert np.isfinite(q).all()
    assert q[1] == pytest.approx(1.0)  # moved by 1 from a constant: 1 in raw units


@pytest.mark.parametrize("components", [0, 2, 3])
def test_q_needs_fewer_components_than_variables(components: int) -> None:
    with pytest.raises(ValueError, match="fewer components than variables"):
        Pca.fit(TRAIN, components=components)


def test_one_training_row_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        Pca.fit(TRAIN[:1], components=1)
