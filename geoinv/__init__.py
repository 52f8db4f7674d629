"""geoinv: structured-model geophysical inversion (VAE priors, traveltime tomography).

The public API is re-exported here; see the README for a tour.
"""

from . import sampling as sampling
from ._version import __version__
from .batch import BatchSettings, run_batch
from .core import build_problem, default_latent_sgd, default_refinement, invert, make_solver
from .errors import (
    CheckpointError,
    ConfigError,
    FileFormatError,
    GeoinvError,
    GeoinvWarning,
    GridError,
    SolverError,
    SurveyError,
)
from .forward import Eikonal, ForwardOperator, NumpyKernelOperator, StraightRay, SweepingEikonal, forward
from .grid import Grid2D
from .interop import GeoinvModelling, LatentModelling, solutions_to_mesh
from .io import read_column_survey, read_survey, write_column_survey, write_survey
from .io.campaign import CampaignSurvey, read_campaign, write_campaign
from .latent_tomography import LatentTomography
from .nuisance import FieldUnknowns, start_velocities
from .petrophysics import FaciesVelocity
from .prior import (
    VAE,
    Prior,
    PriorReport,
    StandardNormalPrior,
    VAEConfig,
    default_training_image,
    default_vae,
    load_prior,
    load_vae,
    prior_report,
)
from .problem import InverseProblem
from .solvers import (
    ACCEPTANCE,
    Callback,
    EarlyStopping,
    LatentMCMC,
    LatentMCMCConfig,
    LatentSGD,
    LatentSGDConfig,
    ProgressBar,
    RefineConfig,
    Solutions,
    Solver,
    Stage,
    solver,
)
from .survey import Survey
from .units import m_per_ns_to_m_per_s, m_per_s_to_m_per_ns, ns_to_s, s_to_ns

__all__ = [
    "ACCEPTANCE",
    "VAE",
    "BatchSettings",
    "Callback",
    "CampaignSurvey",
    "CheckpointError",
    "ConfigError",
    "EarlyStopping",
    "Eikonal",
    "FaciesVelocity",
    "FieldUnknowns",
    "FileFormatError",
    "ForwardOperator",
    "GeoinvError",
    "GeoinvModelling",
    "GeoinvWarning",
    "Grid2D",
    "GridError",
    "InverseProblem",
    "LatentMCMC",
    "LatentMCMCConfig",
    "LatentModelling",
    "LatentSGD",
    "LatentSGDConfig",
    "LatentTomography",
    "NumpyKernelOperator",
    "Prior",
    "PriorReport",
    "ProgressBar",
    "PyGimliShortestPath",
    "RefineConfig",
    "Solutions",
    "Solver",
    "SolverError",
    "Stage",
    "StandardNormalPrior",
    "StraightRay",
    "Survey",
    "SurveyError",
    "SweepingEikonal",
    "VAEConfig",
    "__version__",
    "build_problem",
    "default_latent_sgd",
    "default_refinement",
    "default_training_image",
    "default_vae",
    "forward",
    "invert",
    "load_prior",
    "load_vae",
    "m_per_ns_to_m_per_s",
    "m_per_s_to_m_per_ns",
    "make_solver",
    "ns_to_s",
    "prior_report",
    "read_campaign",
    "read_column_survey",
    "read_survey",
    "run_batch",
    "s_to_ns",
    "solutions_to_mesh",
    "solver",
    "start_velocities",
    "write_campaign",
    "write_column_survey",
    "write_survey",
]


def __getattr__(name: str):
    if name == "PyGimliShortestPath":  # imported lazily: pyGIMLi is slow to import
        from .forward.pygimli import PyGimliShortestPath

        return PyGimliShortestPath
    raise AttributeError(f"module 'geoinv' has no attribute {name!r}")
