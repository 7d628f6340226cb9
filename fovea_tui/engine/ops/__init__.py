"""Running the install day to day: status and its verdicts, the nightly run, schedule, notifications, metrics."""
