"""The cache format: the manifest, where each example's targets lie in a block, how targets are
encoded, and the stores (Zarr, HDF5; a folder or an object store) that hold them."""
