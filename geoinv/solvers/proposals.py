"""Amortized proposals: a data → latent network that seeds a local search near the right basin.

A nonlinear forward's basins in the latent space are narrow (on eikonal data
about one latent unit, where a prior draw lies ~4.4 units from the truth), so
local searches from prior draws land in the true basin rarely. A network
trained once per survey geometry and prior, on prior draws and their simulated
data, predicts from the observed data a Gaussian over the latent vector; draws
from it start the local finish (Gauss-Newton) close to the truth.

The training pairs are simulated chunk by chunk, each chunk from its own seed,
and cached on disk under a key of the problem (forward, geometry, prior,
petrophysics, data unit), so that an interrupted simulation resumes, several
processes can fill one cache (``part``), and a changed geometry is never
served the old pairs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock, Timeout
from torch import nn
from tqdm.auto import tqdm

from .._atomic import atomic_path, atomic_torch_save
from .._paths import cache_dir
from .._typing import PathType, TensorLike
from ..errors import ConfigError
from ..problem import InverseProblem
from .base import Solutions, Solver, check_n_starts

__all__ = ["ProposalConfig", "ProposalNetwork", "Proposals", "ProposalsConfig", "default_cache", "problem_key",
           "proposal_network", "simulate_pairs"]


def _digest(*arrays) -> str:
    sha = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(np.asarray(array))
        sha.update(str(array.dtype).encode() + str(array.shape).encode())
        sha.update(array.tobytes())
    return sha.hexdigest()


def problem_key(problem: InverseProblem) -> str:
    """A key (hex) of what a latent-tomography problem's simulated pairs depend on.

    The forward operator's type and settings, its grid and survey geometry, the
    prior decoder's weights, the petrophysics, the field unknowns and the data unit; observed data
    and noise do not enter (pairs are noise-free).
    """
    operator, prior = problem.operator, problem.prior
    if operator is None or prior is None:
        raise ConfigError("proposal training pairs are keyed by a latent tomography problem (with an operator "
                          "and a prior, e.g. geoinv.build_problem); this problem has neither")
    grid, survey = operator.grid, operator.survey
    weights = [tensor.detach().cpu().numpy() for tensor in prior.state_dict().values()] \
        if isinstance(prior, nn.Module) else []
    petrophysics = problem.petrophysics
    settings = {"operator": type(operator).__name__, "operator_settings": operator.extra_repr(),
                "grid": [list(grid.shape), list(grid.spacing), list(grid.origin)], "data_unit": problem.data_unit,
                "velocities": [petrophysics.channel_velocity, petrophysics.matrix_velocity] if petrophysics else None,
                "prior": type(prior).__name__, "latent_dim": problem.n_parameters}
    unknowns = getattr(problem, "unknowns", None)
    if unknowns is not None:  # the pairs' data depend on the unknowns' priors too
        settings["unknowns"] = repr(unknowns)
    geometry = _digest(survey.sources, survey.receivers, survey.pairs)
    return _digest(np.frombuffer(json.dumps(settings, sort_keys=True).encode(), dtype=np.uint8),
                   np.frombuffer(geometry.encode(), dtype=np.uint8), *weights)[:24]


def simulate_pairs(problem: InverseProblem, n: int, cache: str | Path, *, seed: int = 0, chunk: int = 64,
                   part: tuple[int, int] = (0, 1), progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Prior draws and their simulated data ``(x, F(x))``, cached chunk by chunk.

    Parameters
    ----------
    problem : InverseProblem
        A latent tomography problem (:func:`problem_key` names its cache).
    n : int
        Pairs wanted (rounded up to whole chunks).
    cache : path
        Folder of the cache; pairs go to ``cache/<problem_key>/chunk_<k>.npz``.
    seed : int
        Chunk k draws from a generator seeded with ``(seed, k)``: the same pairs
        whichever process simulates them, in whatever order.
    chunk : int
        Pairs per chunk (one file, written atomically).
    part : (int, int)
        ``(i, m)``: simulate only chunks ``k ≡ i (mod m)`` (m processes fill one
        cache); the pairs are returned only when every chunk exists. Without
        parts, processes that fill one cache at the same time share the work
        anyway: each chunk is simulated under a file lock by whichever process
        takes it first, and the others wait for the chunks still being simulated
        (or simulate them, if the process that took one was stopped).
    progress : bool
        Show a progress bar over the chunks.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        Parameters ``(n_pairs, n_parameters)`` and data ``(n_pairs, n_data)``, float32;
        empty tensors while chunks of other parts are missing.
    """
    check_n_starts(n, "n (training pairs)")
    index, parts = part
    if not (isinstance(parts, int) and parts >= 1 and isinstance(index, int) and 0 <= index < parts):
        raise ConfigError(f"part must be (i, m) with 0 <= i < m, got {part!r}")
    folder = Path(cache) / problem_key(problem)
    folder.mkdir(parents=True, exist_ok=True)
    n_chunks = -(-n // chunk)
    paths = [folder / f"chunk_{seed}_{chunk}_{k:05d}.npz" for k in range(n_chunks)]
    todo = [k for k in range(index, n_chunks, parts) if not paths[k].exists()]
    bar = tqdm(total=len(todo) * chunk, desc="simulating proposal training pairs", unit="pair",
               disable=not progress or not todo)
    # first the chunks no other process is simulating; then wait for those that were taken
    counted: set[int] = set()
    for wait in (False, True):
        for k in todo:
            if k in counted:
                continue
            with _chunk_lock(paths[k], wait) as held:
                if held and not paths[k].exists():
                    _simulate_chunk(problem, paths[k], chunk, seed * 1_000_003 + k)
                if held:  # simulated here, or by the process that held it
                    counted.add(k)
                    bar.update(chunk)
    bar.close()
    if not all(path.exists() for path in paths):
        return torch.empty(0, problem.n_parameters), torch.empty(0, problem.n_data)
    loaded = [np.load(path) for path in paths]
    return (torch.as_tensor(np.concatenate([item["parameters"] for item in loaded])),
            torch.as_tensor(np.concatenate([item["data"] for item in loaded])))


@contextmanager
def _chunk_lock(path: Path, wait: bool) -> Iterator[bool]:
    """Hold ``path``'s lock (an OS lock: a stopped process releases it); yields False if another process
    holds it and ``wait`` is False."""
    lock = FileLock(str(path) + ".lock", timeout=-1 if wait else 0)
    try:
        lock.acquire()
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _simulate_chunk(problem: InverseProblem, path: Path, chunk: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    parameters = problem.sample_prior(chunk, generator).float()
    with torch.no_grad():
        data = problem.forward(parameters).float()
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, parameters=parameters.cpu().numpy(), data=data.cpu().numpy())


@dataclass(frozen=True)
class ProposalConfig:
    """Training settings of :class:`ProposalNetwork`.

    Parameters
    ----------
    hidden : tuple of int
        Widths of the hidden layers.
    epochs : int
        Passes over the training pairs.
    batch_size : int
        Pairs per step.
    lr : float
        Adam's learning rate (halved on plateaus).
    members : int
        Networks in the ensemble (each from its own initial weights and noise).
    seed : int
        Seeds the weights and the noise added to the data.
    """

    hidden: tuple = (512, 512)
    epochs: int = 60
    batch_size: int = 128
    lr: float = 1e-3
    members: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.members < 1 or not self.lr > 0:
            raise ConfigError("epochs, batch_size and members must be >= 1 and lr > 0")


class _GaussianHead(nn.Module):
    def __init__(self, n_data: int, n_parameters: int, hidden: tuple) -> None:
        super().__init__()
        widths = (n_data, *hidden)
        layers: list[nn.Module] = []
        for width_in, width_out in itertools.pairwise(widths):
            layers += [nn.Linear(width_in, width_out), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(widths[-1], 2 * n_parameters)

    def forward(self, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.out(self.body(data)).chunk(2, dim=-1)
        return mean, log_std.clamp(-6.0, 2.0)


class ProposalNetwork(nn.Module):
    """A data → latent Gaussian ``N(μ(d), diag σ(d)²)`` (an ensemble of them), trained by Gaussian NLL.

    Parameters
    ----------
    n_data, n_parameters : int
        Sizes of the data and of the latent (parameter) vector.
    config : ProposalConfig, optional

    Notes
    -----
    Trained on prior draws ``x`` and noisy simulated data ``F(x) + ε`` (fresh
    noise each epoch at the problem's noise level), it approximates the
    posterior's mean and spread per latent coordinate; where the data do not
    constrain a coordinate it returns the prior's.
    """

    data_mean: torch.Tensor
    data_std: torch.Tensor

    def __init__(self, n_data: int, n_parameters: int, config: ProposalConfig | None = None) -> None:
        super().__init__()
        self.config = config or ProposalConfig()
        self.shape = (int(n_data), int(n_parameters))
        self.metadata: dict = {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self.heads: list[_GaussianHead] = [_GaussianHead(n_data, n_parameters, tuple(self.config.hidden))
                                               for _ in range(self.config.members)]
        self.members = nn.ModuleList(self.heads)
        self.register_buffer("data_mean", torch.zeros(n_data))
        self.register_buffer("data_std", torch.ones(n_data))
        self.history: list[float] = []

    def fit(self, parameters: torch.Tensor, data: torch.Tensor, noise_std: TensorLike, progress: bool = False
            ) -> ProposalNetwork:
        """Train on pairs ``(x, F(x))`` with Gaussian noise of standard deviation ``noise_std`` (data unit)."""
        config = self.config
        parameters, data = parameters.float(), data.float()
        noise = torch.as_tensor(noise_std, dtype=torch.float32).to(data.device).expand(data.shape[1])
        self.data_mean.copy_(data.mean(dim=0))
        self.data_std.copy_((data.std(dim=0).pow(2) + noise.pow(2)).sqrt().clamp_min(1e-12))
        generator = torch.Generator().manual_seed(config.seed)
        optimizer = torch.optim.Adam(self.parameters(), lr=config.lr)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=4)
        n = parameters.shape[0]
        bar = tqdm(total=config.epochs, desc="training the proposal network", unit="epoch", disable=not progress)
        for _ in range(config.epochs):
            total = 0.0
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, config.batch_size):
                index = order[start:start + config.batch_size]
                # drawn on the CPU (the generator's), so a run on a GPU draws the same noise
                draws = torch.randn(len(index), data.shape[1], generator=generator).to(data.device)
                index = index.to(data.device)
                noisy = data[index] + noise * draws
                loss = torch.stack([self._nll(head, noisy, parameters[index]) for head in self.heads]).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(index)
            self.history.append(total / n / len(self.members))
            scheduler.step(self.history[-1])
            bar.set_postfix(nll=f"{self.history[-1]:.3f}")
            bar.update()
        bar.close()
        return self

    def _nll(self, member: _GaussianHead, data: torch.Tensor, parameters: torch.Tensor) -> torch.Tensor:
        mean, log_std = member((data - self.data_mean) / self.data_std)
        return (0.5 * ((parameters - mean) / log_std.exp()).pow(2) + log_std).sum(dim=1).mean()

    @torch.no_grad()
    def predict(self, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and standard deviations per member, each ``(members, S, n_parameters)``."""
        scaled = (torch.as_tensor(data, dtype=torch.float32).to(self.data_mean.device).reshape(
            -1, self.data_mean.numel()) - self.data_mean) / self.data_std
        means, log_stds = zip(*(head(scaled) for head in self.heads))
        return torch.stack(means), torch.stack(log_stds).exp()

    @torch.no_grad()
    def propose(self, data: torch.Tensor, n: int, generator: torch.Generator | None = None,
                spread: float = 1.0) -> torch.Tensor:
        """``n`` latent proposals per data set, ``(S, n, n_parameters)``: the members' means first, then
        draws from their Gaussians with standard deviations times ``spread``, members in turn."""
        means, stds = self.predict(data)
        members, n_surveys, n_parameters = means.shape
        member = torch.arange(n, device=means.device) % members
        noise = torch.randn(n_surveys, n, n_parameters, generator=generator).to(means.device)
        noise[:, :members] = 0.0  # each member's mean is proposed as it is
        return means[member].transpose(0, 1) + spread * stds[member].transpose(0, 1) * noise

    def save(self, path: PathType, metadata: dict | None = None) -> None:
        """Weights, settings and provenance in one torch file, written atomically."""
        atomic_torch_save({"format": "geoinv-proposals/1", "config": asdict(self.config), "shape": self.shape,
                           "state": self.state_dict(), "history": self.history, "metadata": metadata or {}}, path)

    @classmethod
    def load(cls, path: PathType) -> ProposalNetwork:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(payload, dict) or payload.get("format") != "geoinv-proposals/1":
            raise ConfigError(f"{path} is not a geoinv proposal network (save one with ProposalNetwork.save)")
        config = payload["config"]
        n_data, n_parameters = payload["shape"]
        network = cls(n_data, n_parameters, ProposalConfig(**{**config, "hidden": tuple(config["hidden"])}))
        network.load_state_dict(payload["state"])
        network.history = list(payload["history"])
        network.metadata = payload["metadata"]
        return network


def default_cache() -> Path:
    """Where proposal pairs and networks are cached: ``$GEOINV_CACHE/proposals`` (default ``~/.cache/geoinv``)."""
    return cache_dir() / "proposals"


def proposal_network(problem: InverseProblem, n_pairs: int = 8192, config: ProposalConfig | None = None, *,
                     cache: str | Path | None = None, seed: int = 0, chunk: int = 32,
                     progress: bool = False) -> tuple[ProposalNetwork, dict]:
    """The proposal network of a problem: loaded from the cache, or simulated, trained and cached.

    Parameters
    ----------
    problem : InverseProblem
        Latent tomography with a noise level (the network is trained on data with that noise).
    n_pairs : int
        Simulated training pairs (one forward solve each: ~0.07 s for the eikonal on the reference grid).
    config : ProposalConfig, optional
        Network settings (default four members).
    cache : path, optional
        Cache folder (default :func:`default_cache`): pairs under ``pairs/``, networks under ``networks/``.
    seed, chunk : int
        Seed and chunk size of the simulated pairs (see :func:`simulate_pairs`).
    progress : bool
        Print what is simulated and trained.

    Returns
    -------
    (ProposalNetwork, dict)
        The network and its one-off cost: ``cached`` (loaded as it was), ``simulate_s``, ``train_s``, ``pairs``.
    """
    if problem.noise_std is None:
        raise ConfigError("proposals are trained on data with the problem's noise: build the problem with noise_std")
    config = config or ProposalConfig(members=4)
    folder = Path(cache) if cache is not None else default_cache()
    noise = float(problem.noise_std.mean())
    settings = json.dumps({"pairs": n_pairs, "seed": seed, "chunk": chunk, "noise": round(noise, 6),
                           "network": asdict(config)}, sort_keys=True, default=str)
    name = f"{problem_key(problem)}_{hashlib.sha256(settings.encode()).hexdigest()[:12]}.pt"
    path = folder / "networks" / name
    cached = {"cached": True, "simulate_s": 0.0, "train_s": 0.0, "pairs": n_pairs, "path": str(path)}
    if path.exists():
        return ProposalNetwork.load(path), cached
    started = time.perf_counter()
    parameters, data = simulate_pairs(problem, n_pairs, folder / "pairs", seed=seed, chunk=chunk, progress=progress)
    simulated = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):  # one process trains; the others wait and load its network
        if path.exists():
            return ProposalNetwork.load(path), {**cached, "simulate_s": simulated - started}
        network = ProposalNetwork(problem.n_data, problem.n_parameters, config).fit(parameters, data, noise, progress)
        trained = time.perf_counter()
        from .._version import __version__

        network.save(path, {"problem_key": problem_key(problem), "settings": json.loads(settings),
                            "geoinv_version": __version__, "torch_version": str(torch.__version__)})
    return network, {"cached": False, "simulate_s": simulated - started, "train_s": trained - simulated,
                     "pairs": len(parameters), "path": str(path)}


@dataclass(frozen=True)
class ProposalsConfig:
    """Settings of :class:`Proposals`.

    Parameters
    ----------
    n_starts : int
        Candidates kept per data set.
    draws_per_start : int
        Proposals per kept candidate (the best are kept after the finish).
    screen : int
        Proposals drawn per one that is finished: ``screen × draws_per_start × n`` are
        simulated once (no gradient, in batches) and only the ``draws_per_start × n``
        with the lowest misfit go on to the finish. 1: no screening.
    spread : float
        Factor on the network's standard deviations when drawing proposals.
    seed : int
        Seeds the proposals (and the wrapped solver's randomness after them).
    n_pairs : int
        Simulated training pairs when the network is built (:func:`proposal_network`).
    network_config : ProposalConfig
        Settings of a network that is built.
    cache : str, optional
        Cache folder (default :func:`default_cache`).
    progress : bool
        Print what building the network does.
    """

    n_starts: int = 20
    draws_per_start: int = 1
    screen: int = 1
    spread: float = 1.0
    seed: int = 0
    n_pairs: int = 8192
    network_config: ProposalConfig = field(default_factory=lambda: ProposalConfig(members=4))
    cache: str | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        check_n_starts(self.n_starts)
        check_n_starts(self.n_pairs, "n_pairs")
        if self.draws_per_start < 1 or self.screen < 1 or not self.spread >= 0:
            raise ConfigError("draws_per_start and screen must be >= 1 and spread >= 0")
        if isinstance(self.network_config, dict):
            object.__setattr__(self, "network_config", ProposalConfig(**self.network_config))


#: proposals simulated per forward call while screening
SCREEN_BATCH = 64


def _screened(problem: InverseProblem, target: torch.Tensor, starts: torch.Tensor, keep: int) -> torch.Tensor:
    """The ``keep`` proposals per data set ``(S, keep, n)`` with the lowest misfit, simulated without gradient."""
    chosen = []
    with torch.no_grad():
        for rows, proposals in zip(target, starts, strict=True):
            flat = proposals.to(problem.device)
            data = torch.cat([problem.forward(chunk) for chunk in flat.split(SCREEN_BATCH)])
            misfit = problem.misfits(data, rows)[0]
            chosen.append(proposals[misfit.argsort()[:keep].cpu()])
    return torch.stack(chosen)


class Proposals(Solver):
    """Start a solver from a proposal network's predictions instead of prior draws.

    Parameters
    ----------
    then : Solver
        A solver that starts from points (``initial=``), e.g. a Gauss-Newton latent-SGD schedule.
    network : ProposalNetwork, optional
        Trained for the problem's geometry and prior; default: :meth:`fit` loads it from the cache
        or builds it (a one-off cost, reported in ``solutions.config['proposals']['network']``).
    config : ProposalsConfig, optional
    **overrides
        Replace single settings of ``config``.

    Notes
    -----
    ``draws_per_start × n`` proposals run through ``then``; the ``n`` with the
    lowest misfit are kept (all when ``draws_per_start`` is 1).
    """

    name = "proposals"
    config_class = ProposalsConfig

    def __init__(self, then: Solver, network: ProposalNetwork | None = None, config: ProposalsConfig | None = None,
                 callbacks: Sequence[Any] = (), **overrides: Any) -> None:
        super().__init__(config, callbacks, **overrides)
        if network is not None and not isinstance(network, ProposalNetwork):
            raise ConfigError(f"network must be a ProposalNetwork, got {type(network).__name__}")
        if not isinstance(then, Solver) or not then.takes_starts:
            raise ConfigError("proposals seed a solver that starts from points (initial=), e.g. latent-sgd")
        self.network, self.then = network, then
        self.network_info: dict = {"cached": True, "simulate_s": 0.0, "train_s": 0.0} if network else {}

    @property
    def is_fitted(self) -> bool:
        return self.network is not None

    def fit(self, problem: InverseProblem, **kwargs: Any) -> Proposals:
        """Load or build the network for ``problem`` (cached by its geometry, prior and noise)."""
        config = self.config
        self.network, self.network_info = proposal_network(problem, config.n_pairs, config.network_config,
                                                           cache=config.cache, progress=config.progress)
        self.then.fit(problem, **kwargs)
        return self

    def describe(self) -> dict:
        return {**super().describe(), "then": self.then.describe(), "network": self.network_info}

    def solve(self, problem: InverseProblem, observed: TensorLike | None = None, n_candidates: int | None = None,
              generator: torch.Generator | None = None, initial: torch.Tensor | None = None) -> Solutions:
        from .searches import keep_best

        if initial is not None:
            raise ConfigError("proposals make their own starts from the data; leave initial out")
        if self.network is None:
            raise ConfigError("proposals need a network: call fit(problem) first (it loads or builds one)")
        started = time.perf_counter()
        n_keep = check_n_starts(n_candidates or self.config.n_starts)
        generator = generator or torch.Generator().manual_seed(self.config.seed)
        target = problem.targets(observed)
        n_finish = n_keep * self.config.draws_per_start
        starts = self.network.propose(target.cpu(), n_finish * self.config.screen, generator, self.config.spread)
        if self.config.screen > 1:
            starts = _screened(problem, target, starts, n_finish)
        proposed = time.perf_counter() - started
        solutions = self.then.solve(problem, observed, generator=generator, initial=starts)
        solutions = replace(solutions, wall_time=solutions.wall_time + proposed,
                            config={**solutions.config, "proposals": self.describe()})
        return solutions if self.config.draws_per_start == 1 else keep_best(solutions, n_keep)
