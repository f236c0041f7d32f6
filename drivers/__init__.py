# Hardware behind small interfaces, each with a simulated twin shipped alongside (like gpiozero's MockFactory).
