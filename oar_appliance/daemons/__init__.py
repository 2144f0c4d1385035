"""The server process and its modules."""
