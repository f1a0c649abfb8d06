"""Route handlers, one module per group of Hub endpoints."""
