"""PCA with T^2 and Q limits: the classic anchor for process fault detection, numpy only.

The method of Russell, Chiang and Braatz (2000), as the Tennessee Eastman literature runs it:
autoscale every variable on normal training rows (their mean and standard deviation), keep the
first k principal components of the scaled training rows, and for each row measure

- T^2, the squared distance inside the kept components, each component scaled by its variance
  (how far the row lies from normal along the directions normal data vary in), and
- Q (the squared prediction error), the squared norm of the part of the scaled row the kept
  components do not explain (how far the row breaks the correlations of normal data).

Each limit is the statistic's 99% quantile on the training rows themselves (an empirical
limit, not the F or chi-squared approximations), and a row is flagged when T^2 or Q exceeds its
limit: row by row, no persistence rule. The benchmark fits it on the same training rows as the
product's model, so the anchor is measured in the same run as the product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

COMPONENTS = 9
QUANTILE = 0.99


@dataclass(frozen=True)
class Pca:
    """A PCA monitor fitted on normal rows: scaling, kept components, and the two limits."""

    mean: FloatArray  # (variables,)
    std: FloatArray  # (variables,), 1 where a variable is constant in training
    loadings: FloatArray  # (variables, components), orthonormal columns
    variances: FloatArray  # (components,), the kept components' variances on training rows
    t2_limit: float
    q_limit: float

    @classmethod
    def fit(
        cls, train: FloatArray, components: int = COMPONENTS, quantile: float = QUANTILE
    ) -> Pca:
        """Fit on normal rows (rows x variables). Raises ValueError unless some variables
        are left out of the components (Q measures what they do not explain) and there are
        rows enough to estimate a covariance."""
        rows, variables = train.shape
        if not 0 < components < variables:
            raise ValueError(f"{components} components for {variables} variables: Q needs "
                             "fewer components than variables")  # fmt: skip
        if rows < 2:
            raise ValueError(f"{rows} training rows: at least 2 are needed")
        mean = train.mean(axis=0)
        std = train.std(axis=0, ddof=1)
        std = np.where(std > 0, std, 1.0)  # a constant variable carries nothing: leave it 0
        scaled = (train - mean) / std
        # right singular vectors of the scaled rows = eigenvectors of their covariance
        _, singular, vt = np.linalg.svd(scaled, full_matrices=False)
        variances = singular[:components] ** 2 / (rows - 1)
        loadings = vt[:components].T
        variances = np.where(variances > 0, variances, np.finfo(np.float64).tiny)
        unfitted = cls(mean, std, loadings, variances, np.inf, np.inf)
        t2, q = unfitted.statistics(train)
        return cls(
            mean, std, loadings, variances,
            float(np.quantile(t2, quantile)), float(np.quantile(q, quantile)),
        )  # fmt: skip

    def statistics(self, rows: FloatArray) -> tuple[FloatArray, FloatArray]:
        """T^2 and Q of each row (rows x variables, the training variables in their order)."""
        scaled = (rows - self.mean) / self.std
        scores = scaled @ self.loadings
        t2 = (scores**2 / self.variances).sum(axis=1)
        residual = scaled - scores @ self.loadings.T
        q = (residual**2).sum(axis=1)
        return t2, q

    def flags(self, rows: FloatArray) -> BoolArray:
        """True for each row whose T^2 or Q exceeds its limit."""
        t2, q = self.statistics(rows)
        flagged: BoolArray = (t2 > self.t2_limit) | (q > self.q_limit)
        return flagged
