"""Flow matching: the training objective and the samplers."""
