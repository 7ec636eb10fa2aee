"""MISHON: hybrid graph-based hashtag recommendation for micro-videos."""

# The one place of the version (pyproject reads it); raised with every change that alters an
# artefact (Lineage.code records it), noted in CHANGELOG.md.
__version__ = "0.3.0"
