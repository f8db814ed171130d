"""OCI helpers: image references now; layouts, descriptors and layers as the build stage lands."""
