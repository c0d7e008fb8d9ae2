"""Monte Carlo verification of the predictions: real Jacobians over random initialisations."""

from .montecarlo import Estimate, MonteCarloResult, run_monte_carlo, sample_gradients

__all__ = ["Estimate", "MonteCarloResult", "run_monte_carlo", "sample_gradients"]
