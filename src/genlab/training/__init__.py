"""What the training loop (genlab/training/trainer.py) calls: the learning-rate schedule and optimizer, the checkpointer,
the weight average, the stopping rules and the stop signals, one job each."""
