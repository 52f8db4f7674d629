"""Batch inversion of HDF5 campaigns on Dask distributed: resumable, isolated, nothing lost.

Flow: the client reads the campaign, submits one task per panel (survey data,
not file handles) to a ``dask.distributed`` cluster (a ``LocalCluster`` by
default, or an existing scheduler), and is the only writer of the output.

Output safety (the scheme, tested by killing workers and the client):

* each finished panel is written at once as its own small file
  ``OUT.h5.parts/<name>.h5``, atomically (temporary file, fsync, rename): a
  crash never leaves a half-written part under its final name;
* ``OUT.h5`` is rebuilt from all parts — every 30 s, at the end, and when
  Ctrl-C or SIGTERM stops the batch — as one atomic file, so it is always a
  complete, readable file (after SIGKILL, the next run rebuilds it);
* a rerun skips panels whose part holds a result made with the same settings
  and the same input (hashes stored in the part); ``overwrite=True`` redoes all.

Panels of different sizes: a prior decodes models of one shape (the shipped
VAE: 129 × 65 cells). Each panel is inverted on the prior's *canvas*: a grid of
the prior's shape and the panel's cell size, anchored at the panel grid's
top-left corner, so the panel (and its sensors) lie inside it and the model
around them is the prior's. A panel larger than the canvas in either
direction, or with another cell size than ``canvas_spacing``, is refused with
both shapes named (train a prior for it). This keeps one prior (loaded once
per worker) for a whole campaign; results hold the canvas grid.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._signals import Interrupted, acknowledge
from ._typing import PathType
from .canvas import place_on_canvas
from .errors import ConfigError, FileFormatError, GeoinvError
from .grid import Grid2D
from .io.batch_results import (
    check_existing_output,
    done_parts,
    merge_parts,
    parts_folder,
    read_batch_results,
    write_part,
)
from .io.campaign import Campaign, CampaignSurvey, read_campaign

if TYPE_CHECKING:
    from .nuisance import FieldUnknowns

__all__ = ["BatchSettings", "BatchSummary", "canvas_grid", "invert_panel", "read_batch_results", "run_batch"]

_MERGE_EVERY_S = 30.0


@dataclass(frozen=True)
class BatchSettings:
    """How every panel of a batch is inverted (part of the resume key).

    Attributes
    ----------
    solver, forward : str
        Registered names.
    n_starts : int
        Starts (latent solvers) or kept candidates.
    seed : int
        Seed of every panel's solve (the same for every panel).
    preset, epochs : optional
        Latent-SGD schedule preset and epochs per stage.
    prior_path : str, optional
        Prior checkpoint (default the shipped VAE).
    refine : bool
        Refine the best models beyond the prior (the core's default refinement).
    canvas_spacing : float
        Cell size (m) the prior was trained for; panels must use it.
    estimate_velocities, estimate_time_zero : bool
        Estimate each panel's facies velocities (starting from its petrophysics, or
        from its picks' apparent velocities) and time zero with its model
        (:class:`geoinv.FieldUnknowns`); the estimates are in each panel's solutions.
    time_zero_by : {'survey', 'source-borehole', 'receiver-borehole'}
        One time-zero shift per panel, or one per transmitter (receiver) borehole.
    search_rounds : int, optional
        Searches of a panel that no candidate fits, for the bent-ray default search (a
        nonlinear forward without ``preset`` or ``epochs``); None keeps its default (3).
    """

    solver: str = "latent-sgd"
    forward: str = "straight-ray"
    n_starts: int = 20
    seed: int = 0
    preset: str | None = None
    epochs: int | None = None
    prior_path: str | None = None
    refine: bool = True
    canvas_spacing: float = 0.1
    estimate_velocities: bool = False
    estimate_time_zero: bool = False
    time_zero_by: str = "survey"
    search_rounds: int | None = None

    def __post_init__(self) -> None:
        if int(self.n_starts) < 1:
            raise ConfigError(f"n_starts must be >= 1, got {self.n_starts!r}")
        if not self.canvas_spacing > 0:
            raise ConfigError(f"canvas_spacing must be > 0 m, got {self.canvas_spacing!r}")
        from .nuisance import TIME_ZERO_GROUPINGS

        if self.time_zero_by not in TIME_ZERO_GROUPINGS:
            raise ConfigError(f"time_zero_by must be one of {TIME_ZERO_GROUPINGS}, got {self.time_zero_by!r}")
        if self.time_zero_by != "survey" and not self.estimate_time_zero:
            raise ConfigError(f"time_zero_by={self.time_zero_by!r} says how to group the time-zero shifts; set "
                              "estimate_time_zero=True as well, or nothing is estimated")
        if self.search_rounds is not None and (self.forward == "straight-ray" or self.preset is not None
                                               or self.epochs is not None or self.solver != "latent-sgd"):
            raise ConfigError(f"search_rounds={self.search_rounds!r} sets the bent-ray default search (latent-sgd, a "
                              "nonlinear forward, no preset or epochs); these settings search once")

    @property
    def unknowns(self) -> FieldUnknowns | None:
        """The :class:`~geoinv.FieldUnknowns` every panel estimates, or None."""
        from .nuisance import FieldUnknowns

        if not (self.estimate_velocities or self.estimate_time_zero):
            return None
        return FieldUnknowns(velocities=self.estimate_velocities, time_zero=self.estimate_time_zero,
                             time_zero_by=self.time_zero_by)

    def key(self, prior_hash: str | None = None) -> str:
        """Hash of the settings and of the prior file's content (``prior_hash`` if already computed)."""
        settings = asdict(self)
        for name in ("estimate_velocities", "estimate_time_zero"):  # keys of earlier batches stay valid
            if not settings[name]:
                del settings[name]
        if settings["time_zero_by"] == "survey":
            del settings["time_zero_by"]
        if settings["search_rounds"] is None:
            del settings["search_rounds"]
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        digest.update((prior_hash or _prior_hash(self.prior_path)).encode())
        return digest.hexdigest()


def _prior_hash(path: str | None) -> str:
    from .prior.data import DEFAULT_VAE

    file = Path(path) if path is not None else DEFAULT_VAE
    return hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else "missing"


@dataclass
class BatchSummary:
    """What a batch did: counts, failures by panel, wall time."""

    inverted: list[str]
    skipped: list[str]
    failed: dict[str, str]
    accepted: dict[str, int]
    seconds: float

    def lines(self) -> list[str]:
        with_accepted = sum(1 for count in self.accepted.values() if count)
        lines = [(f"inverted {len(self.inverted)}, skipped (already done) {len(self.skipped)}, "
                  f"failed {len(self.failed)}, in {self.seconds:.1f} s")]
        if self.accepted:
            lines.append(f"panels inverted in this run with an accepted candidate: "
                         f"{with_accepted}/{len(self.accepted)}")
        elif self.skipped:
            lines.append("no panel was inverted in this run: the skipped panels' results are in the output file "
                         "(--overwrite redoes them)")
        lines += [f"  failed {name}: {message}" for name, message in self.failed.items()]
        return lines


def canvas_grid(panel: CampaignSurvey, model_shape: tuple[int, int], spacing: float) -> Grid2D:
    """The prior's canvas for a panel: ``model_shape`` cells of ``spacing`` at the panel grid's origin.

    Raises
    ------
    GeoinvError
        The panel's grid is larger than the canvas or has another cell size.
    """
    grid = panel.grid or Grid2D.covering(panel.survey, spacing)
    if not np.allclose(grid.spacing, spacing, rtol=1e-6):
        raise ConfigError(f"survey {panel.name!r}: cells of {grid.spacing} m, but the prior was trained for "
                          f"{spacing} m cells; resample the panel's grid or use a prior for its cell size")
    return place_on_canvas(panel.survey, model_shape, spacing, grid, label=f"survey {panel.name!r}")


_PRIORS: dict = {}


def _prior(path: str | None):
    """The prior, loaded once per worker process and kept for every later task."""
    from .prior import load_prior

    if path not in _PRIORS:
        _PRIORS[path] = load_prior(path).frozen()
    return _PRIORS[path]


def invert_panel(panel: CampaignSurvey, settings: BatchSettings) -> dict:
    """Invert one panel (runs on a worker). Never raises: failures come back as a record.

    Returns
    -------
    dict
        ``name``, ``status`` ('done' or 'failed'), ``solutions`` (or None),
        ``grid`` (canvas), ``error``, ``seconds``, ``worker``, ``input_hash``.
    """
    from .core import invert, make_solver
    from .forward import forward as build_forward
    from .workflows import configured

    started = time.perf_counter()
    record: dict[str, Any] = {"name": panel.name, "status": "failed", "solutions": None, "grid": None, "error": "",
              "worker": f"{socket.gethostname()}:{os.getpid()}", "input_hash": panel.input_hash()}
    try:
        prior = _prior(settings.prior_path)
        grid = canvas_grid(panel, tuple(prior.model_shape), settings.canvas_spacing)
        operator = build_forward(settings.forward, grid=grid, survey=panel.survey)
        solver = make_solver(settings.solver, operator, n_starts=settings.n_starts, seed=settings.seed,
                             epochs=settings.epochs, preset=settings.preset)
        if settings.search_rounds is not None:
            solver.config = configured(solver, {"rounds": settings.search_rounds})
        record["solutions"] = invert(panel.survey, prior, operator, solver, panel.petrophysics,
                                     n_candidates=solver.candidates_for(settings.n_starts),
                                     refine="default" if settings.refine else None, unknowns=settings.unknowns)
        record.update(status="done", grid=grid)
    except GeoinvError as exc:
        record["error"] = str(exc)
    except Exception as exc:  # isolation: one panel's crash must not stop the campaign
        record["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    record["seconds"] = time.perf_counter() - started
    return record


# ---------------------------------------------------------------------------------------------- output


def _merge_finished(output: Path, folder: Path, campaign: Campaign) -> None:
    """Ctrl-C or SIGTERM mid-batch: the panels finished so far go into ``output`` before the batch stops
    (a rerun resumes the rest). A second signal during this merge leaves ``output`` as it was."""
    acknowledge()  # the merge's atomic rename checks for pending signals; this one is being handled
    if any(folder.glob("*.h5")):
        merge_parts(output, folder, campaign)


# ---------------------------------------------------------------------------------------------- engine


#: seconds to reach a scheduler (connect and handshake) before the batch gives up with a message
SCHEDULER_TIMEOUT_S = 10


def check_scheduler_address(address: str) -> str:
    """``address`` as ``tcp://HOST:PORT`` (or ``tls://``), or a :class:`ConfigError` naming what is wrong."""
    from urllib.parse import urlsplit

    text = str(address).strip()
    parts = urlsplit(text if "://" in text else f"tcp://{text}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None or not 1 <= port <= 65535 \
            or parts.path not in ("", "/"):
        raise ConfigError(f"--scheduler {address!r} is not a scheduler address; give tcp://HOST:PORT (e.g. "
                          "tcp://10.0.0.5:8786, what 'dask scheduler' prints)")
    return f"{parts.scheme}://{parts.hostname}:{port}" if ":" not in parts.hostname else \
        f"{parts.scheme}://[{parts.hostname}]:{port}"


async def _handshake(address: str) -> None:
    from distributed.comm import connect

    comm = await connect(address, timeout=SCHEDULER_TIMEOUT_S)
    await comm.close()


def _connect(address: str):
    """A Client of the scheduler at ``address``, or a ConfigError within :data:`SCHEDULER_TIMEOUT_S`."""
    import asyncio

    import dask
    from dask.distributed import Client
    from distributed.comm.core import CommClosedError

    address = check_scheduler_address(address)
    timeout = f"{SCHEDULER_TIMEOUT_S}s"
    try:
        # Client's own timeout does not bound the handshake with a peer that accepts and stays silent
        asyncio.run(asyncio.wait_for(_handshake(address), SCHEDULER_TIMEOUT_S))
        with dask.config.set({"distributed.comm.timeouts.connect": timeout}):
            return Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError, CommClosedError) as exc:
        cause = f"{type(exc).__name__}: {exc}" if str(exc) else "no answer"
        raise ConfigError(f"no Dask scheduler answered at {address} within {SCHEDULER_TIMEOUT_S} s "
                          f"({cause}); start one with 'dask scheduler' (and workers with "
                          "'dask worker ADDRESS'), check the address and port, or leave --scheduler out for "
                          "a local cluster") from None


def _client(scheduler: str | None, workers: int, threads_per_worker: int):
    import multiprocessing

    from dask.distributed import Client, LocalCluster

    if scheduler is None and multiprocessing.parent_process() is not None:
        # a worker process started by 'spawn' re-imports the user's script and lands here again
        raise ConfigError("run_batch was called while a worker process imported your script: put the batch "
                          "under  if __name__ == '__main__':  (Dask starts worker processes)")
    if scheduler is not None:
        return _connect(scheduler), None
    # the eikonal forward and pyGIMLi hold the GIL: processes, one thread each by default
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                           dashboard_address=None)
    return Client(cluster), cluster


def run_batch(campaign_path: PathType, output: PathType, settings: BatchSettings = BatchSettings(), *,
              scheduler: str | None = None, workers: int = 2, threads_per_worker: int = 1, overwrite: bool = False,
              replace_output: bool = False, progress: bool = True) -> BatchSummary:
    """Invert every panel of a campaign on Dask; write ``output`` (see the module notes).

    Parameters
    ----------
    campaign_path : path-like
        Campaign file (:mod:`geoinv.io.campaign`) or a single-survey file.
    output : path-like
        Results file (``.h5``); its parts folder ``output.parts`` sits beside it.
    settings : BatchSettings
        Solver, forward, starts, seed, prior.
    scheduler : str, optional
        Address of a running ``dask scheduler`` (e.g. ``tcp://10.0.0.5:8786``);
        default: a ``LocalCluster`` of ``workers`` processes.
    workers, threads_per_worker : int
        Size of the local cluster.
    overwrite : bool
        Redo panels that already have a result with these settings.
    replace_output : bool
        Replace an existing ``output`` that is not this campaign's batch result
        (another campaign's results, any other file); without it that is refused.
        This campaign's own earlier result is resumed, never replaced.
    progress : bool
        Progress bar over panels.
    """
    from dask.distributed import as_completed
    from tqdm.auto import tqdm

    from .workflows import check_output

    started = time.perf_counter()
    output = check_output(Path(output), (".h5", ".hdf5"), inputs=(campaign_path,))
    if settings.prior_path is not None and not Path(settings.prior_path).is_file():
        raise ConfigError(f"prior checkpoint {settings.prior_path!r} does not exist")
    campaign = read_campaign(campaign_path)
    if not campaign.surveys and not campaign.problems:
        raise FileFormatError(f"{Path(campaign_path).name} holds no surveys (its '/surveys' group is empty)")
    check_existing_output(output, campaign, replace_output)
    folder = parts_folder(output)
    folder.mkdir(parents=True, exist_ok=True)
    prior_hash = _prior_hash(settings.prior_path)
    key = settings.key(prior_hash)
    done = set() if overwrite else done_parts(folder, campaign, key)
    todo = [panel for panel in campaign.surveys if panel.name not in done]
    summary = BatchSummary([], sorted(done), dict(campaign.problems), {}, 0.0)
    if todo:
        client, cluster = _client(scheduler, workers, threads_per_worker)
        try:
            futures = {client.submit(invert_panel, panel, settings, key=f"geoinv-{panel.name}-{key[:12]}",
                                     pure=False): panel for panel in todo}
            last_merge = time.perf_counter()
            with tqdm(total=len(todo), desc="panels", unit="panel", disable=not progress) as bar:
                for future in as_completed(futures):
                    panel = futures[future]
                    record = future.result()
                    write_part(folder, panel, record, asdict(settings), key, prior_hash)
                    if record["status"] == "done":
                        summary.inverted.append(panel.name)
                        summary.accepted[panel.name] = int(record["solutions"].accepted[0].sum())
                    else:
                        summary.failed[panel.name] = record["error"].splitlines()[0]
                    bar.update(1)
                    if time.perf_counter() - last_merge > _MERGE_EVERY_S:
                        merge_parts(output, folder, campaign)
                        last_merge = time.perf_counter()
        except Interrupted:
            _merge_finished(output, folder, campaign)
            raise
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    merge_parts(output, folder, campaign)
    summary.seconds = time.perf_counter() - started
    return summary
