"""gan2shape: unsupervised 3D shape reconstruction from pretrained 2D StyleGAN2s (GAN2Shape)."""

__version__ = "0.1.0"
