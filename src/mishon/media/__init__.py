"""Media I/O with PyAV (FFmpeg inside the wheel): writing clips and probing files."""
