"""Dates as the reports show them: ISO order, 24-hour clock, UTC (TIME_ZONE).

English's own "Nov. 10, 2026, 7:08 a.m." is 23 characters that never wrap; a report of
sessions has three such columns and overflowed a 1280 px screen.
"""

DATETIME_FORMAT = "Y-m-d H:i:s"
DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
SHORT_DATE_FORMAT = "Y-m-d"
