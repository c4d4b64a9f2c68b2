"""Helper package for the Smoothed Gradient Ascent (SGA) paper companion."""

__version__ = "0.1.0"
