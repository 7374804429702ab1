"""pix2pix training, testing and translation on datasets prepared by `pairforge.prep` (or any ab/split folder)."""
