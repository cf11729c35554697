"""The tiny-scale codecs, trained on SynthTalk on two CPU cores.

Why not the diffusers classes at this scale: even small `AutoencoderKLWan` and
`AutoencoderOobleck` models decode far slower than a stream's budget on two cores
(`python benchmarks/codec_alternatives.py` times them), and Oobleck's decoder is non-causal, so
chunked decoding cannot equal whole decoding.

Video (`video.py`): each latent codes a group of four frames with a 2-D convolutional
autoencoder; its decoder may also read the stream's reference image and the latent before each
one, and blend frames across latent boundaries. Audio (`audio.py`): log-magnitude STFT frames
in, a causal decoder of STFT frames out, streamed with a carried state.
"""

from streamchar.codecs.tiny.audio import TinyAudioCodec, TinyAudioConfig
from streamchar.codecs.tiny.video import TinyVideoCodec, TinyVideoConfig

__all__ = ["TinyAudioCodec", "TinyAudioConfig", "TinyVideoCodec", "TinyVideoConfig"]
