"""What people read: one formatter for numbers (percentages, money, counts, intervals, durations)
and the pages built from the weekly job's output."""
