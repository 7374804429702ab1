"""Raw folders -> datasets on disk (installed as `pairforge.prep`).

Roles: a *source* (`datasets/`, `combine.py`) finds pairs and rejects what cannot pair; a *builder* turns one pair
into two arrays (using `transforms/`); *layouts* (`writers.py`) place them on disk; the *runner* executes every
pair in parallel, resumes, and fills the manifest (`manifest.py`).
"""
