"""Dataset layer: schema, on-disk store, importers, synthetic corpus and splits."""
