# Calibration for technicians: cutoffs per strip type and lot, stored apart from the hand-written config.
