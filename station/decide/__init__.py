# Measured lines -> verdict: control validity, T/C ratios, cutoffs, and the calibrations that set them.
