"""Web views and REST API."""
