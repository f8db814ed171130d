"""The sign stage: the image signed by digest, and its evidence attested beside it."""
