"""Latent codecs: video and audio VAEs at paper scale, trained tiny codecs, streaming decode."""
