"""geoinv inside other frameworks (pyGIMLi)."""

from .pygimli import GeoinvModelling, LatentModelling, quiet_pygimli, solutions_to_mesh

__all__ = ["GeoinvModelling", "LatentModelling", "quiet_pygimli", "solutions_to_mesh"]
