"""Convergence diagnostics of a sampler's chains, through ArviZ (rank-normalised split R-hat, ESS).

The chains live in a :class:`~geoinv.solvers.Solutions`' history (``chain_latent``,
``(draws, S, chains, n)``); :func:`inference_data` turns them into an ArviZ
``InferenceData`` (NetCDF with ``.to_netcdf``) and :func:`mixing` into the numbers a
user checks before trusting the maps.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError, GeoinvWarning

if TYPE_CHECKING:
    from ..solvers.base import Solutions

__all__ = ["RHAT_LIMIT", "MixingReport", "MixingWarning", "PrincipalMixing", "inference_data", "mixing",
           "principal_mixing"]

#: split R-hat above this on any coordinate means the chains disagree (Vehtari et al. 2021 advise 1.01
#: for final results; 1.05 is the issue's bar for a 10-minute run)
RHAT_LIMIT = 1.05
#: bulk ESS below this per data set means too few independent draws for stable 5–95 % quantiles
ESS_LIMIT = 100


class MixingWarning(GeoinvWarning):
    """The chains have not mixed (R-hat too high or ESS too low): the maps are not yet posterior maps."""


def _arviz():
    with warnings.catch_warnings():
        # ArviZ 0.2x announces its 1.0 refactor on import; geoinv pins below 1.0
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def inference_data(solutions: Solutions) -> Any:
    """The sampler's chains as an ArviZ ``InferenceData``.

    Groups: ``posterior`` (``latent``, dims ``survey``, ``latent_dim``) and
    ``sample_stats`` (``lp``: log posterior up to a constant, ``chi2``: the χ²
    misfit, ``acceptance_rate``); chains and draws are ArviZ's ``chain`` and ``draw``.

    Parameters
    ----------
    solutions : Solutions
        From a sampling solver (``latent-mcmc``).

    Returns
    -------
    arviz.InferenceData
        Save it with ``.to_netcdf(path)``.
    """
    history = solutions.history
    if "chain_latent" not in history:
        raise ConfigError("these solutions hold no chains: they come from an optimiser, not a sampler "
                          "(use the latent-mcmc solver)")
    az = _arviz()

    def chains_first(values: npt.ArrayLike) -> np.ndarray:  # (D, S, C, ...) → (C, D, S, ...)
        values = np.asarray(values)
        return np.moveaxis(values, 2, 0)

    stats = {"lp": chains_first(history["chain_log_posterior"]),
             "chi2": -2 * chains_first(history["chain_log_likelihood"]),
             "acceptance_rate": chains_first(history["chain_acceptance"])}
    return az.from_dict(posterior={"latent": chains_first(history["chain_latent"])}, sample_stats=stats,
                        dims={"latent": ["survey", "latent_dim"], **{name: ["survey"] for name in stats}},
                        attrs={"sampler": str(solutions.config.get("solver", "")),
                               "inference_library": "geoinv"})


@dataclass
class MixingReport:
    """Convergence numbers per data set.

    Attributes
    ----------
    rhat, ess_bulk, ess_tail : ndarray, shape (S, n)
        Per latent coordinate.
    acceptance : ndarray, shape (S,)
        Mean MALA acceptance of the β = 1 chains.
    swap_rate : ndarray, shape (S, K − 1)
        Accepted fraction of swaps between neighbouring temperatures.
    """

    rhat: np.ndarray
    ess_bulk: np.ndarray
    ess_tail: np.ndarray
    acceptance: np.ndarray
    swap_rate: np.ndarray

    @property
    def mixed(self) -> np.ndarray:
        """Per data set: max R-hat ≤ :data:`RHAT_LIMIT` and min bulk ESS ≥ ``ESS_LIMIT``."""
        return (self.rhat.max(axis=1) <= RHAT_LIMIT) & (self.ess_bulk.min(axis=1) >= ESS_LIMIT)

    def summary(self) -> str:
        lines = []
        for survey in range(self.rhat.shape[0]):
            swap = ", ".join(f"{rate:.2f}" for rate in self.swap_rate[survey]) or "none"
            lines.append(f"survey {survey}: R-hat max {self.rhat[survey].max():.3f}, bulk ESS min "
                         f"{self.ess_bulk[survey].min():.0f}, tail ESS min {self.ess_tail[survey].min():.0f}, "
                         f"acceptance {self.acceptance[survey]:.2f}, swap rates {swap}"
                         + ("" if self.mixed[survey] else "  ← not mixed"))
        return "\n".join(lines)


def mixing(solutions: Solutions, warn: bool = True) -> MixingReport:
    """Split R-hat and bulk/tail ESS of every latent coordinate, and warn when chains have not mixed.

    Parameters
    ----------
    solutions : Solutions
        From a sampling solver.
    warn : bool
        Issue a :class:`MixingWarning` naming the data sets that have not mixed.
    """
    az = _arviz()
    data = inference_data(solutions)
    if data.posterior.sizes["chain"] < 2:
        raise ConfigError("R-hat compares chains: sample with n_chains >= 2")
    report = MixingReport(rhat=az.rhat(data, var_names=["latent"])["latent"].values,
                          ess_bulk=az.ess(data, var_names=["latent"], method="bulk")["latent"].values,
                          ess_tail=az.ess(data, var_names=["latent"], method="tail")["latent"].values,
                          acceptance=np.asarray(solutions.history["chain_acceptance"]).mean(axis=(0, 2)),
                          swap_rate=np.asarray(solutions.history.get("swap_rate", np.zeros((1, 0)))))
    if warn and not report.mixed.all():
        bad = np.flatnonzero(~report.mixed).tolist()
        warnings.warn(f"the chains of data set(s) {bad} have not mixed (R-hat > {RHAT_LIMIT} or bulk ESS < "
                      f"{ESS_LIMIT}): run longer (n_draws, n_warmup), add chains or temperatures, or start from "
                      "an optimiser's candidates (initial=)", MixingWarning, stacklevel=2)
    return report


@dataclass
class PrincipalMixing:
    """How well the chains mixed along the posterior's principal directions, widest first.

    Attributes
    ----------
    variance : ndarray, shape (S, n)
        The pooled draws' variance along each direction (latent units squared), descending.
    directions : ndarray, shape (S, n, n)
        ``directions[s, k]``: the unit latent vector of the k-th widest direction of data set s.
    mean : ndarray, shape (S, n)
        The pooled draws' mean (the directions pass through it).
    rhat, ess_bulk : ndarray, shape (S, n)
        Split R-hat and bulk ESS of the draws' coordinate along each direction.
    """

    variance: np.ndarray
    directions: np.ndarray
    mean: np.ndarray
    rhat: np.ndarray
    ess_bulk: np.ndarray

    @property
    def slowest(self) -> np.ndarray:
        """Per data set, the index of the direction with the lowest bulk ESS, shape (S,)."""
        return self.ess_bulk.argmin(axis=1)

    def summary(self, n_directions: int = 5) -> str:
        lines = []
        for survey in range(self.variance.shape[0]):
            cells = ", ".join(f"{self.variance[survey, k]:.3g} ({self.ess_bulk[survey, k]:.0f})"
                              for k in range(min(n_directions, self.variance.shape[1])))
            lines.append(f"survey {survey}: variance (bulk ESS) along the widest directions: {cells}")
        return "\n".join(lines)


def principal_mixing(solutions: Solutions | Any) -> PrincipalMixing:
    """Split R-hat and bulk ESS along the eigenvectors of the pooled draws' covariance.

    Mixing per latent coordinate says *that* chains are slow; along the principal
    directions it says *where*. When the low ESS sits on the widest one or two
    directions, the posterior is broad along a ridge that local (Langevin) moves
    random-walk along, and more draws or moves along that ridge help; when it is
    spread over many directions, the step size or preconditioner is the limit.
    Decode ``mean + t · sqrt(variance[k]) · directions[k]`` for a few ``t`` to see
    which cells the slow direction moves.

    Parameters
    ----------
    solutions : Solutions or arviz.InferenceData
        From a sampling solver with at least 2 chains, or its chains as :func:`inference_data`
        made them (e.g. read back with ``arviz.from_netcdf``).

    Returns
    -------
    PrincipalMixing
    """
    az = _arviz()
    data = solutions if isinstance(solutions, az.InferenceData) else inference_data(solutions)
    draws = np.asarray(data.posterior["latent"].values, dtype=np.float64)  # (C, D, S, n)
    if draws.shape[0] < 2:
        raise ConfigError("R-hat compares chains: sample with n_chains >= 2")
    n_surveys, n_latent = draws.shape[2], draws.shape[3]
    result = {name: np.empty((n_surveys, n_latent)) for name in ("variance", "mean", "rhat", "ess_bulk")}
    directions = np.empty((n_surveys, n_latent, n_latent))
    for survey in range(n_surveys):  # a loop over data sets: each has its own eigenbasis
        pooled = draws[:, :, survey].reshape(-1, n_latent)
        mean = pooled.mean(axis=0)
        variance, vectors = np.linalg.eigh(np.cov(pooled, rowvar=False).reshape(n_latent, n_latent))
        order = np.argsort(variance)[::-1]
        projected = az.convert_to_dataset((draws[:, :, survey] - mean) @ vectors[:, order])
        result["variance"][survey], result["mean"][survey] = variance[order], mean
        directions[survey] = vectors[:, order].T
        result["rhat"][survey] = az.rhat(projected)["x"].values
        result["ess_bulk"][survey] = az.ess(projected, method="bulk")["x"].values
    return PrincipalMixing(directions=directions, **result)
