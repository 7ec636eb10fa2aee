"""The heterogeneous graph: users and per-post modality nodes; the paper's seven edge types,
stored as ten directed relations (each user-post edge type both ways)."""
