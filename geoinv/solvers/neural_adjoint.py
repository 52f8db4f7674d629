"""Neural Adjoint (Ren, Padilla & Malof, seed 001): surrogate forward + gradient search over x."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from ..problem import InverseProblem
from ._learned import LearnedSolver, NetworkConfig, boundary_loss, member_outputs, surrogate_network
from .base import Search

__all__ = ["RANKINGS", "NeuralAdjoint", "NeuralAdjointConfig"]

#: the most surrogates in an ensemble (each costs a network's training and search)
MAX_ENSEMBLE = 64
#: orders of Neural Adjoint's kept candidates (see :class:`NeuralAdjointConfig`)
RANKINGS = ("resimulated", "surrogate")


@dataclass(frozen=True)
class NeuralAdjointConfig:
    """Settings of :class:`NeuralAdjoint`.

    Parameters
    ----------
    forward : NetworkConfig
        Surrogate forward network and its training (MSE, Adam, lr halved on plateau).
    ensemble : int
        Surrogates trained from different initial weights (a deep ensemble, one
        batched network: :class:`~geoinv.solvers.EnsembleMLP`). The search descends
        the misfit of their mean prediction; candidates are ranked by the misfit
        averaged over members, ``(F̄ − y)² + var_k F_k``, so a point where the
        members disagree (where the surrogate is unreliable) ranks lower. 1: one
        surrogate, seed 001's protocol. Costs ``ensemble`` × the training and search.
    n_train : int
        Training pairs drawn from the prior (tasks with a fixed training set use it).
    n_starts : int
        Starting points per target for the gradient search (from the prior).
    search_steps : int
        Adam steps of the search (reference: about 300).
    search_lr : float
        Learning rate of the search, in scaled parameter units ((x − μ)/R).
    boundary_weight : float
        Weight of the boundary loss ``mean ReLU(|x − μ| − R/2)`` (reference 10).
    n_candidates : int
        Candidates kept per target, the best by surrogate loss (T).
    ranking : {'resimulated', 'surrogate'}
        Order of the kept candidates. ``'surrogate'`` is seed 001's protocol: by
        surrogate loss, so ``r_T`` counts T true simulations. ``'resimulated'``
        (default): by the true misfit of the re-simulations that every solve makes
        of its ``n_candidates`` anyway, so the first candidate is the best of
        ``n_candidates`` simulations — what a user who has the forward gets. The
        surrogate's first pick can be wrong in its own favour (misfit ~0 where the
        surrogate errs), so its true error is far above the best of a few.
    target_chunk : int
        Targets searched together (bounds memory: chunk × n_starts rows).
    device : str
        Where the surrogate trains and the search runs (``'cuda'`` on a GPU).
    """

    forward: NetworkConfig = field(default_factory=NetworkConfig)
    ensemble: int = 1
    n_train: int = 10_000
    n_starts: int = 200
    search_steps: int = 300
    search_lr: float = 1e-2
    boundary_weight: float = 10.0
    n_candidates: int = 50
    ranking: str = "resimulated"
    target_chunk: int = 64
    seed: int = 0
    progress: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        if min(self.n_train, self.n_starts, self.search_steps, self.n_candidates, self.target_chunk,
               self.ensemble) < 1:
            raise ConfigError("n_train, n_starts, search_steps, n_candidates, target_chunk and ensemble must be >= 1")
        if self.ensemble > MAX_ENSEMBLE:
            raise ConfigError(f"ensemble must be <= {MAX_ENSEMBLE} surrogates (each is a full network, trained and "
                              f"searched), got {self.ensemble}")
        if self.search_lr <= 0 or self.boundary_weight < 0:
            raise ConfigError("search_lr must be > 0 and boundary_weight >= 0")
        if self.ranking not in RANKINGS:
            raise ConfigError(f"ranking must be one of {RANKINGS} ('surrogate' is seed 001's protocol), "
                              f"got {self.ranking!r}")


class NeuralAdjoint(LearnedSolver):
    """Neural Adjoint: train a surrogate ``F_φ``, then descend ``‖F_φ(x) − y‖² + L_bdy(x)`` over x.

    Notes
    -----
    For each target, ``n_starts`` prior draws are optimised jointly with Adam;
    the best ``n_candidates`` by surrogate loss are re-simulated with the true
    forward and ordered as ``config.ranking`` says. The boundary loss keeps the
    search inside the training data's box, where the surrogate is trustworthy.
    """

    name = "neural-adjoint"
    config_class = NeuralAdjointConfig

    def _build(self, n_parameters: int, n_data: int) -> None:
        self.networks["surrogate"] = surrogate_network(n_parameters, n_data, self.config.forward.hidden,
                                                       self.config.ensemble)

    def _train(self, problem, x, y, generator) -> dict:
        surrogate = self.networks["surrogate"]

        def loss(x_batch, y_batch):  # the members' mean MSE: each member's own loss, averaged
            return (member_outputs(surrogate, x_batch) - y_batch).pow(2).mean()

        return {"forward_loss": self._fit_network(surrogate.parameters(), loss, (x, y), self.config.forward,
                                                  generator, "NA surrogate")}

    def default_starts(self, n_candidates: int | None) -> int:
        """Always ``config.n_starts`` draws: ``n_candidates`` is how many of them are kept."""
        return self.config.n_starts

    def search(self, problem: InverseProblem, target: torch.Tensor, starts: torch.Tensor,
               generator: torch.Generator, n_candidates: int | None) -> Search:
        """Descend the surrogate's misfit from every start; keep the ``n_candidates`` best by surrogate loss."""
        self._require_fitted()
        config = self.config
        target = target.float().cpu()
        n_keep = min(n_candidates or config.n_candidates, starts.shape[1])
        surrogate = self.networks["surrogate"].requires_grad_(False)
        kept, losses = [], []
        for chunk, chunk_starts in zip(target.split(config.target_chunk), starts.split(config.target_chunk)):
            candidates, surrogate_loss = self._descend(surrogate, chunk, chunk_starts, n_keep)
            kept.append(candidates)
            losses.append(surrogate_loss)
        self.networks["surrogate"].requires_grad_(True)
        resorted = n_keep if config.ranking == "resimulated" else 0
        return Search(torch.cat(kept), {"surrogate_loss": torch.cat(losses).numpy()}, ranking="solver",
                      resorted=resorted)

    def _descend(self, surrogate, targets, starts, n_keep):
        scaled = self.scaler.x_in(starts.float().to(self.device)).requires_grad_(True)
        goal = self.scaler.y_in(targets.float().to(self.device))[:, None, :]
        optimizer = torch.optim.Adam([scaled], lr=self.config.search_lr)
        for _ in range(self.config.search_steps):
            misfit = (surrogate(scaled) - goal).pow(2).mean(dim=-1)
            loss = misfit + self.config.boundary_weight * boundary_loss(scaled)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
        with torch.no_grad():  # averaged over members: (F̄ − y)² + the members' variance
            surrogate_loss = (member_outputs(surrogate, scaled) - goal).pow(2).mean(dim=(0, -1))
            order = torch.argsort(surrogate_loss, dim=1)[:, :n_keep]
            best = torch.gather(scaled, 1, order[..., None].expand(-1, -1, scaled.shape[-1]))
            return self.scaler.x_out(best).cpu(), torch.gather(surrogate_loss, 1, order).cpu()

