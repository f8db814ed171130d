"""The record stage: the build record, whole, and attested beside the image."""
