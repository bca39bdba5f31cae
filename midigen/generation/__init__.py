"""Generation: sampling new pieces from a checkpoint and writing them as MIDI."""
