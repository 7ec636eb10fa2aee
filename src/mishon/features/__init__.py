"""Content features: one extractor per modality, a resumable float16 feature store."""
