"""Recommending for new posts and users from a trained run."""
