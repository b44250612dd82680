"""Reinforcement learning: Q-learning and DQN on CartPole (cartpole.py); REINFORCE fine-tuning of a sequence
run against a reward (finetune.py, with the shipped rewards in rewards.py)."""
