"""Data: SynthTalk (the project's generated talking-character set), real-data folders, loaders."""
