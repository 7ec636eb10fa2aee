"""The heterogeneous graph: users and per-post modality nodes, seven edge types (DESIGN 4-5)."""
