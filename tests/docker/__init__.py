"""Helpers for tests/test_docker.py: the Docker engine, the images, and a site to check through HTTP and WebSocket."""
