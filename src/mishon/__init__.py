"""MISHON: hybrid graph-based hashtag recommendation for micro-videos."""

__version__ = "0.1.0"
