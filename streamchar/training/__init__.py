"""Training: windows from the latent cache, the pretraining stages, checkpoints."""
