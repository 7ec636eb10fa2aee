"""Recommending for new posts from a trained run: its featurizer and the ranker, loaded once."""
