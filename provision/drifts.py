"""Drift registry (placeholder until written)."""


def print_list():
    pass
