"""Studying a trained network: rebuilding it from a checkpoint, prediction, ensembles, export,
filters, nearest neighbours, and our results beside the papers'."""

from classicnets.study.filter_grid import FilterGrid

__all__ = ["FilterGrid"]
