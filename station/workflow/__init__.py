# One sample from press to shown result: its job, the tray and its deadlines, and the rules for retakes.
