"""Objectives: what a training step minimizes, one module each.

An objective has `modules` (name -> nn.Module; what gets saved) and
`players` (optimizer name -> module whose parameters it updates; one player
for most objectives, two for adversarial ones), and
`losses(batch)`: a generator of (player, loss, logs). The trainer backpropagates
and steps each player's loss as it is yielded, so an adversarial objective can
compute the generator's loss after the discriminator has stepped.
"""
