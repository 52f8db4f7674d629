"""Unit helpers: field crosshole radar data come in ns and m/ns; geoinv works in SI."""

from __future__ import annotations

NS = 1e-9  #: one nanosecond in s


def ns_to_s(value):
    """Convert times from ns to s."""
    return value * NS


def s_to_ns(value):
    """Convert times from s to ns."""
    return value / NS


def m_per_ns_to_m_per_s(value):
    """Convert velocities from m/ns to m/s."""
    return value / NS


def m_per_s_to_m_per_ns(value):
    """Convert velocities from m/s to m/ns."""
    return value * NS
