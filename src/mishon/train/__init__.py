"""Training: the optimisation loop and run directories."""
