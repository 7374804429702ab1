"""pairforge: raw image collections -> aligned image-to-image datasets -> pix2pix/CycleGAN models."""

__version__ = "0.1.0"
