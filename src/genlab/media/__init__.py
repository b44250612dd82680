"""What genlab writes for people to look at and listen to: plots (loss curves), image grids, MIDI and audio."""
