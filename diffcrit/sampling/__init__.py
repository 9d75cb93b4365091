"""Sampling: steppers that follow each scheduler in the one frame, clones, the per-step state writers."""
