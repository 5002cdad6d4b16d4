"""The defstate quickstart project."""
