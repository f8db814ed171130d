"""The build stage: native, buildah, docker and base backends, and the base image factory."""
