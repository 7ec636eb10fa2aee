"""Honest measurement: ranking metrics at K and the evaluation of recommenders on a split."""
