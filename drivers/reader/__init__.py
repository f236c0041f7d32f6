# Serial strip readers and testers: one driver (port + reader thread) speaking pluggable dialects.
