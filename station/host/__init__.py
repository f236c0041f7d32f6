# The Pi underneath: clock and boot counter, durable files, systemd notifications.
