"""streamchar: real-time streaming generation of a talking character's speech and video from text."""

__version__ = "0.1.0"
