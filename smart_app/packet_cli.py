"""Placeholder until its helper fills it in."""

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments."""


def run(args: argparse.Namespace) -> int:
    raise SystemExit("not implemented yet")
