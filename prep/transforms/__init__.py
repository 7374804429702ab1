"""Dataset-agnostic array transforms: resizing and fitting, edges, background, depth encoding, pose rendering."""
