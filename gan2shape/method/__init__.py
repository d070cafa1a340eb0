"""The GAN2Shape method (docs/METHOD.md 3): pseudo-sample sampling, latent offsets, the steps and the stage
loop, GAN-refined media. The shape prior it starts from is pure geometry: gan2shape.render.prior."""
