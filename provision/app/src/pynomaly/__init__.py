"""Pynomaly stand-in used by the reference deployment of the audit suite."""
