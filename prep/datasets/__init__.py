"""One module per public dataset; each defines `register(app)` adding `pairforge prep <name>`.

Modules here must import heavy, optional libraries (rembg, h5py, pycocotools, ...) inside functions, so that
`pairforge --help` stays fast and works without the extras installed.
"""
