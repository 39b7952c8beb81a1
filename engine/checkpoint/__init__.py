"""Checkpoint layout, loaders for the Wan encoders, and tiny random checkpoints."""
