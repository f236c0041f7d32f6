# Hardware behind small interfaces, each with a simulated twin alongside; imports nothing of station/ or calib/.
