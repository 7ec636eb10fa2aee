"""The HTTP service: FastAPI app, service layer, post records."""
