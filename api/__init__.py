"""FastAPI app: thin routers per resource over the store's plain functions; OpenAPI at /docs."""
