# Proof and demo tools (rig, chaos, demo, attacks, private broker, photogen, assay metrics); need a checkout.
