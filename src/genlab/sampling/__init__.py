"""Samplers: engine.py (the step engine every sequence sample goes through), constraints.py (patterns its
output must match), diffusion.py (noise schedules, DDPM/DDIM steps)."""
