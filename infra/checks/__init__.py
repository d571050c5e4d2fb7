"""Checks run by make targets: deployment files, the mutation score."""
