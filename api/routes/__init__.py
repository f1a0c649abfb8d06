"""Routers of the API: jobs, health and the web form."""
