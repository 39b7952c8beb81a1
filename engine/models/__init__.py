"""Model code written for PoseGen (the DiT); Wan's VAE, T5 and CLIP come from diffsynth."""
