# The station<->town wire contract: what a town server in any language implements; imports nothing of the firmware.
