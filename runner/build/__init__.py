"""The image builder: Dockerfile to OCI image, cached and reproducible."""
