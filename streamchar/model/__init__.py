"""The model: LLM orchestrator, joint audio-video DiT, progress-aware pointer."""
