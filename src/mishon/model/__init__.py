"""The MISHON network: modality attention, heterogeneous GraphSAGE, fusion, the softmax over
hashtags, what it reads (`inputs.py`) and what it computes outside training (`inference.py`)."""
