"""Command-line entry points (installed as ``ase_electra.cli``); one click command per module."""
