"""The OCI image store: references, blobs, layers, import/export, registry client, bootstrap."""
