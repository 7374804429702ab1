"""`pairforge eval`: FCN-score, FID/KID/IS, LPIPS and pixel metrics of a run's test outputs or of two folders."""
