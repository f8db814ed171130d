"""The publish stage: the built image into the registry, by digest first, then its tags."""
