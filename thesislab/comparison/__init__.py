"""Comparing LR schedules over seeds: the statistics, the verdict, and the comparison's files and figures."""
