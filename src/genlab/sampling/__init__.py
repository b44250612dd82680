"""Samplers: LM decoding (lm.py); diffusion samplers live beside it (ddpm/ddim)."""
