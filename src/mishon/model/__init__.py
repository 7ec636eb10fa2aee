"""Recommenders: the baselines and (later) MISHON, behind one small contract."""
