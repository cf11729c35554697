"""Evaluation: transcript fidelity and the other metrics of paper §5.3."""
