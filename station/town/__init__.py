# The reference town server: verifies, stores and acknowledges what stations publish; the firmware never imports it.
