"""geoinv: structured-model geophysical inversion (VAE priors, traveltime tomography).

The public API is re-exported here; see the README for a tour.
"""

from ._version import __version__
from .errors import CheckpointError, ConfigError, FileFormatError, GeoinvError, GridError, SurveyError
from .forward import Eikonal, ForwardOperator, StraightRay, forward
from .grid import Grid2D
from .petrophysics import FaciesVelocity
from .prior import VAE, VAEConfig, default_training_image, default_vae, load_vae
from .problem import InverseProblem
from .solvers import LatentSGD, LatentSGDConfig, Solutions, Solver, solver
from .survey import Survey
from .units import m_per_ns_to_m_per_s, m_per_s_to_m_per_ns, ns_to_s, s_to_ns

__all__ = [
    "VAE",
    "CheckpointError",
    "ConfigError",
    "Eikonal",
    "FaciesVelocity",
    "FileFormatError",
    "ForwardOperator",
    "GeoinvError",
    "Grid2D",
    "GridError",
    "InverseProblem",
    "LatentSGD",
    "LatentSGDConfig",
    "PyGimliShortestPath",
    "Solutions",
    "Solver",
    "StraightRay",
    "Survey",
    "SurveyError",
    "VAEConfig",
    "__version__",
    "default_training_image",
    "default_vae",
    "forward",
    "load_vae",
    "m_per_ns_to_m_per_s",
    "m_per_s_to_m_per_ns",
    "ns_to_s",
    "s_to_ns",
    "solver",
]


def __getattr__(name: str):
    if name == "PyGimliShortestPath":  # imported lazily: pyGIMLi is slow to import
        from .forward.pygimli import PyGimliShortestPath

        return PyGimliShortestPath
    raise AttributeError(f"module 'geoinv' has no attribute {name!r}")
