# One way to write a moment in the admin and on the dashboard (static/js/dashboard.js): to the
# second, year first, so staff comparing the two read the same thing.
DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
