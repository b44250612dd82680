"""Model families, one file each. A family module defines a pydantic config class (a subclass of
genlab.core.config.ModelConfig), the model, and its spec (`genlab.core.families.Family`), which genlab.core.families lists by
name and imports only when used, so that `genlab --help` stays fast.

Sequence families follow the protocol of docs/architecture.md:
    forward(idx (B, T)) -> logits (B, T, V)
    init_state(batch_size) -> state;  step(idx (B, T'), state) -> (logits (B, T', V), state)
"""
