"""retina-lightning: the published retinal vessel segmentation methods, the public datasets and
one evaluation protocol, as a PyTorch Lightning experiment suite."""

__version__ = "0.1.0"
