"""The lock stage: requirements resolved, with hashes, for the base image's Python and platform."""
